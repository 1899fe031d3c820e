"""Timelines (vidfast.deploy.timeline/stream/render): window times and alignment, per-second labels,
smoothing, JSON/CSV, rendering, live sources with drops and a bounded ring, broken sources, the CLI."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import run_cli

from vidfast.data.video_io import write_video
from vidfast.deploy.render import draw_label, text_mask
from vidfast.deploy.stream import StreamError
from vidfast.deploy.timeline import Timeline, WindowResult, per_second, plan_windows, run_timeline

NAMES = ["dark", "dim", "bright", "white"]
LEVEL = 4  # frame i of a gray video has level LEVEL * i


class GrayScorer:
    """A stand-in model: class = gray level // 64 of a clip's first frame; records each clip's frame levels
    (which tell the frames' indices) and sleeps ``delay`` seconds per call (a slow model)."""

    clip = (4, 16, 16)
    frame_step = 2
    class_names = NAMES

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.levels: list[np.ndarray] = []

    def probs(self, clips: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        levels = clips.reshape(*clips.shape[:2], -1).mean(axis=-1)  # [N, T]
        self.levels.extend(levels)
        probs = np.full((len(clips), len(NAMES)), 0.1, np.float32)
        probs[np.arange(len(clips)), np.minimum(levels[:, 0] // 64, 3).astype(int)] = 0.7
        return probs


def gray_frames(n: int, level: int = LEVEL, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.stack([np.full((*size, 3), (level * i) % 256, np.uint8) for i in range(n)])


def frame_of(level: float, per_frame: int = LEVEL) -> int:
    return round(level / per_frame)


@pytest.fixture(scope="module")
def gray_video(tmp_path_factory) -> Path:
    """60 frames at 20 fps (3 s), frame i at gray level 4 i."""
    return write_video(tmp_path_factory.mktemp("timeline") / "gray.mkv", gray_frames(60), fps=20)


def test_window_plan_aligns_to_clips_and_frame_steps() -> None:
    plan = plan_windows(clip_len=8, frame_step=2, fps=25, window="1s", stride="0.5s")
    assert (plan.clips, plan.samples, plan.frames) == (2, 16, 32)  # 25 frames -> 2 clips of 16 frames
    assert (plan.stride, plan.stride_frames) == (6, 12)  # 12.5 frames -> 6 steps of 2
    default = plan_windows(clip_len=8, frame_step=2, fps=25)
    assert (default.frames, default.stride_frames) == (16, 16)
    assert plan_windows(8, 2, 25, window="48f", stride="1").stride == 1  # at least one frame step
    assert plan_windows(8, 2, 25, window="3").clips == 1  # at least one clip
    for bad in ("0", "-2s", "1.5", "2x", ""):
        with pytest.raises(ValueError, match="window or stride|whole"):
            plan_windows(8, 2, 25, window=bad)


def test_windows_times_and_frames(gray_video: Path) -> None:
    scorer = GrayScorer()
    timeline = Timeline(scorer, gray_video, window="0.8s", stride="6", batch=3)
    windows = list(timeline)
    assert timeline.info.fps == 20 and timeline.plan.frames == 16 and timeline.plan.stride_frames == 6
    # starts every 6 frames while a whole window fits, then one more ending at the last frame
    firsts = [w.first_frame for w in windows]
    assert firsts == [0, 6, 12, 18, 24, 30, 36, 42, 44]
    np.testing.assert_allclose([w.start for w in windows], np.array(firsts) / 20, atol=1e-6)
    np.testing.assert_allclose([w.end for w in windows], (np.array(firsts) + 16) / 20, atol=1e-6)
    assert windows[-1].end == pytest.approx(3.0)
    # each window is 2 clips of 4 frames every 2nd frame, from its first frame on
    assert len(scorer.levels) == 2 * len(windows)
    for i, w in enumerate(windows):
        seen = [frame_of(v) for v in np.concatenate(scorer.levels[2 * i:2 * i + 2])]
        assert seen == list(range(w.first_frame, w.first_frame + 16, 2))
    # class from the first clip's gray level: dark up to frame 15, dim from 16 on, ...
    assert [w.top(NAMES, 1)[0][0] for w in windows][:4] == ["dark", "dark", "dark", "dim"]
    assert timeline.stats.windows == len(windows) and timeline.stats.frames_decoded == 60
    assert timeline.stats.frames_dropped == 0 and timeline.stats.media_seconds == pytest.approx(3.0)


def test_short_video_is_one_loop_padded_window(tmp_path: Path) -> None:
    video = write_video(tmp_path / "short.mkv", gray_frames(5), fps=20)
    scorer = GrayScorer()
    (window,) = Timeline(scorer, video, window="8").__iter__()
    assert window.start == 0 and window.end == pytest.approx(0.25)
    assert [frame_of(v) for v in scorer.levels[0]] == [0, 2, 4, 0]


def test_smoothing_is_a_trailing_moving_average(gray_video: Path) -> None:
    windows = list(Timeline(GrayScorer(), gray_video, stride="4", smooth=3))
    raw = np.stack([w.raw for w in windows])
    assert len({tuple(r) for r in raw}) > 1  # the raw scores change over time
    for i, w in enumerate(windows):
        np.testing.assert_allclose(w.probs, raw[max(0, i - 2):i + 1].mean(axis=0), rtol=1e-6)


def _window(start: float, end: float, probs) -> WindowResult:
    p = np.asarray(probs, np.float32)
    return WindowResult(0, 0, start, end, p, p, 0.0)


def test_per_second_weights_windows_by_overlap() -> None:
    a, b = [1.0, 0.0], [0.0, 1.0]
    seconds = per_second([_window(0.0, 0.5, a), _window(0.5, 1.5, b), _window(3.0, 3.2, a)])
    assert [s for s, _ in seconds] == [0, 1, 3]  # no window overlaps second 2
    np.testing.assert_allclose(seconds[0][1], [0.5, 0.5])
    np.testing.assert_allclose(seconds[1][1], b)
    np.testing.assert_allclose(seconds[2][1], a)
    assert per_second([]) == []


def test_drawn_label_and_bar() -> None:
    frame = np.full((90, 160, 3), 128, np.uint8)
    draw_label(frame, "dim", 0.5)
    mask = text_mask("DIM 0.50")
    assert mask.shape == (7, 48) and mask[:, :5].any()  # the D
    assert (frame[2:9, 2:50][mask] == 255).all()  # white text where the font has pixels
    assert (frame[2:9, 2:50][~mask] < 128).all()  # on a dimmed panel
    bar = frame[11:14, 2:50]  # under the text, a pad apart
    assert (bar[:, :24] == [40, 220, 60]).all() and (bar[:, 24:] == 90).all()  # half the bar is filled
    assert (frame[40:] == 128).all()  # the rest of the picture is untouched


def _write_stream(out, frames: np.ndarray, fps: int, pace: float = 0.0, stop_after: int | None = None,
                  hold: threading.Event | None = None) -> None:
    """Encode ``frames`` as MPEG-TS into the binary file object ``out`` (``pace`` s per frame); after
    ``stop_after`` frames wait for ``hold`` (a stalled source) before closing."""
    with av.open(out, "w", format="mpegts", options={"flush_packets": "1"}, buffer_size=4096) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "qp": "0"}  # lossless: exact levels
        for i, rgb in enumerate(frames):
            if stop_after is not None and i == stop_after:
                out.flush()
                hold.wait(30)
                break
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
            out.flush()
            time.sleep(pace)
        for packet in stream.encode(None):
            container.mux(packet)
    out.close()


def _pipe_source(frames: np.ndarray, fps: int, **kw):
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=_write_stream, args=(os.fdopen(write_fd, "wb"), frames, fps), kwargs=kw,
                              daemon=True)
    writer.start()
    return os.fdopen(read_fd, "rb"), writer


def test_live_pipe_drops_frames_when_the_model_is_slow() -> None:
    frames = gray_frames(75, level=3)  # 3 s at 25 fps, frame i at level 3 i
    source, writer = _pipe_source(frames, 25, pace=1 / 25)
    scorer = GrayScorer(delay=0.8)  # a window takes 0.8 s to score and is 0.32 s of video: far behind
    timeline = Timeline(scorer, source, live=True, format="mpegts", timeout=5)
    windows = list(timeline)
    writer.join(10)
    stats = timeline.stats
    assert stats.frames_decoded == 75 and stats.frames_dropped > 0 and stats.windows_skipped > 0
    assert stats.ring_capacity == timeline.plan.samples + timeline.plan.stride == 8
    assert stats.ring_peak <= stats.ring_capacity  # memory bounded by one window and one stride
    assert 2 <= len(windows) < 75 // 8
    for clip in scorer.levels:  # every scored clip still has consecutive frames, frame_step apart
        idx = [frame_of(v, 3) for v in clip]
        assert np.diff(idx).tolist() == [2, 2, 2]
    assert all(w.latency > 0 for w in windows) and stats.to_dict()["latency_max_s"] >= 0.8
    starts = [w.first_frame for w in windows]
    assert starts == sorted(starts) and all(s % 8 == 0 for s in starts[:-1])  # on the stride grid


def test_stalled_pipe_keeps_windows_and_raises() -> None:
    hold = threading.Event()
    source, writer = _pipe_source(gray_frames(200, level=1), 20, stop_after=150, hold=hold)
    timeline = Timeline(GrayScorer(), source, format="mpegts", timeout=1.0, batch=100)
    windows = []
    with pytest.raises(StreamError, match="^pipe: no frame for 1 s"):
        for w in timeline:
            windows.append(w)
    hold.set()
    writer.join(10)
    assert len(windows) >= 10 and timeline.stats.windows == len(windows)  # the windows before the stall


def block_frames(n: int, size: tuple[int, int] = (96, 128), seed: int = 0) -> np.ndarray:
    """Random 16-pixel blocks moving 3 pixels a frame (enough texture for every frame to take bytes)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (size[0] // 16, size[1] // 16, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1)
    return np.stack([np.roll(base, 3 * i, 1) for i in range(n)])


def test_live_file_is_followed_while_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "growing.ts"
    writer = threading.Thread(target=_write_stream, args=(path.open("wb"), gray_frames(60), 20),
                              kwargs={"pace": 0.05}, daemon=True)
    writer.start()
    time.sleep(0.3)
    timeline = Timeline(GrayScorer(), path, live=True, timeout=1.0)
    arrivals = []
    with pytest.raises(StreamError, match="no frame for 1 s"):  # a growing file has no end marker
        for w in timeline:
            arrivals.append((time.monotonic(), w.first_frame))
    writer.join(10)
    assert [f for _, f in arrivals] == list(range(0, 56, 8))  # every window of the 60 frames, none dropped
    assert arrivals[-1][0] - arrivals[2][0] > 1.0  # they came while the file grew (0.4 s of writing apart)


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_broken_file_keeps_windows_one_line_exit_1(tmp_path: Path, onnx_model: Path, damage: str) -> None:
    video = write_video(tmp_path / "blocks.mkv", block_frames(60), fps=20)
    data = bytearray(video.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        middle = len(data) // 2
        data[middle:middle + 600] = np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8).tobytes()
    broken = tmp_path / f"{damage}.mkv"
    broken.write_bytes(bytes(data))
    out = tmp_path / "timeline.csv"
    result = run_cli("predict", broken, "--onnx", onnx_model, "--timeline", "--json", "--timeline-out", out,
                     "--window", "8")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(broken) in errors[0] and "Traceback" not in result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["error"] and entry["timeline"]  # the windows before the damage are kept
    assert entry["timeline"][-1]["end"] < 3.0
    rows = list(csv.DictReader(out.open()))
    assert sum(r["kind"] == "window" for r in rows) == len(entry["timeline"]) * 3  # top-3 of 3 classes


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    """A tiny classifier exported with 3 classes, clip 4x16x16, frame step 2 (float input)."""
    import torch

    from vidfast.export import export_onnx
    from vidfast.models import create_model

    torch.manual_seed(0)
    net = create_model("resnet10", num_classes=3, widen_factor=0.25).eval()
    root = tmp_path_factory.mktemp("timeline-model")
    # the legacy exporter: ~10x faster than dynamo on this tiny net
    return export_onnx(net, root / "float.onnx", exporter="torchscript", opset=17, **_EXPORT).path


_EXPORT = {"clip": (4, 16, 16), "class_names": ["x", "y", "z"], "frame_step": 2, "check": False}


@pytest.fixture(scope="module")
def frames_model(onnx_model: Path) -> Path:
    """The same model taking uint8 frames (``--with-preprocess``; the dynamo exporter: the legacy one fails
    onnx.checker on the preprocessing's Transpose)."""
    import torch

    from vidfast.export import export_onnx
    from vidfast.models import create_model

    torch.manual_seed(0)
    net = create_model("resnet10", num_classes=3, widen_factor=0.25).eval()
    return export_onnx(net, onnx_model.with_name("frames.onnx"), with_preprocess=True, **_EXPORT).path


@pytest.mark.slow
def test_float_and_frames_graphs_give_the_same_timeline(onnx_model: Path, frames_model: Path,
                                                        gray_video: Path) -> None:
    from vidfast.deploy import OnnxClassifier
    from vidfast.deploy.timeline import OnnxClipScorer

    float_run, frames_run = [
        run_timeline(OnnxClipScorer(OnnxClassifier(model)), gray_video, window="0.8s", progress="none")
        for model in (onnx_model, frames_model)]
    assert float_run.error is None and len(float_run.windows) == len(frames_run.windows) == 4
    for a, b in zip(float_run.windows, frames_run.windows, strict=True):
        assert (a.start, a.end) == (b.start, b.end)
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)  # normalisation in numpy == in the graph


@pytest.mark.slow
def test_cli_timeline_json_csv_and_render(onnx_model: Path, tmp_path: Path) -> None:
    video_frames = block_frames(50).astype(int)
    video = write_video(tmp_path / "blocks.mp4", block_frames(50), fps=25)
    out, rendered = tmp_path / "t.csv", tmp_path / "r.mp4"
    result = run_cli("predict", video, "--onnx", onnx_model, "--timeline", "--json", "--window", "0.64s",
                     "--stride", "0.32s", "--smooth", "2", "--topk", "2", "--timeline-out", out,
                     "--render", rendered)
    assert result.exit_code == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["error"] is None and entry["path"] == str(video) and len(entry["labels"]) == 2
    timeline = entry["timeline"]
    assert [(w["start"], w["end"]) for w in timeline] == [(0.0, 0.64), (0.32, 0.96), (0.64, 1.28),
                                                          (0.96, 1.6), (1.28, 1.92), (1.36, 2.0)]
    for w in timeline:
        scores = [label["score"] for label in w["labels"]]
        assert len(scores) == 2 and scores == sorted(scores, reverse=True)
        assert {label["label"] for label in w["labels"]} <= {"x", "y", "z"}
    assert [s["second"] for s in entry["seconds"]] == [0, 1]
    assert entry["stats"]["windows"] == 6 and entry["stats"]["frames_decoded"] == 50
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "kind", "start", "end", "rank", "label", "score"]
    assert len(rows) == (6 + 2) * 2 and rows[0]["label"] == timeline[0]["labels"][0]["label"]
    with av.open(str(rendered)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 50 and frames[0].shape == (96, 128, 3)
    panel = frames[10][:16, :48].astype(int)
    assert (panel.min(axis=-1) > 200).sum() > 20  # white text
    assert ((panel[..., 1] > 170) & (panel[..., 0] < 110)).sum() > 10  # a green score bar
    assert np.abs(frames[10][40:].astype(int) - video_frames[10][40:]).mean() < 8  # below: the video


@pytest.mark.slow
def test_cli_reads_a_stream_from_stdin(onnx_model: Path, tmp_path: Path) -> None:
    ts = tmp_path / "s.ts"
    with ts.open("wb") as f:
        _write_stream(f, gray_frames(40), 20)
    from typer.testing import CliRunner
    from vidfast_cli.app import app

    result = CliRunner().invoke(app, ["predict", "-", "--onnx", str(onnx_model), "--timeline", "--format",
                                      "mpegts", "--window", "8"], input=ts.read_bytes())
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5 and lines[0].startswith("stdin 0.00-0.40s: x ")


def test_render_and_live_need_onnx_and_a_file(tmp_path: Path, gray_video: Path, onnx_model: Path) -> None:
    result = run_cli("predict", gray_video, "--timeline", "--checkpoint", tmp_path / "c.pt")
    assert result.exit_code == 2 and "--onnx" in result.stderr
    result = run_cli("predict", "-", "--onnx", onnx_model, "--render", tmp_path / "r.mp4")
    assert result.exit_code == 1 and "needs a file" in result.stderr
    result = run_cli("predict", gray_video, "--onnx", onnx_model, "--timeline", "--preset", "imagenet")
    assert result.exit_code == 2 and "carries its input convention" in result.stderr
    result = run_cli("predict", tmp_path / "missing.mp4", "--onnx", onnx_model, "--timeline")
    assert result.exit_code == 1 and "error: " in result.stderr and "no such file" in result.stderr


def test_timeline_modules_do_not_import_torch_or_the_training_stack() -> None:
    """Not at module level, not inside functions (the torch-free runtime of issue 19)."""
    import ast

    import vidfast.deploy

    for name in ("stream", "timeline", "render"):
        tree = ast.parse((Path(vidfast.deploy.__file__).parent / f"{name}.py").read_text())
        imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [m for m in imported if m.split(".")[0] == "torch" or m.startswith(("vidfast.engine",
                                                                                        "vidfast.data"))]

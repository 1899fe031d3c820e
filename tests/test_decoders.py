"""Decoding backends: frame counts, pixels and seeking against an independent full PyAV decode."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidfast.data.decoders import open_video, select_backend
from vidfast.data.video_io import write_video
from vidfast.errors import BackendUnavailable, DataError

T, H, W = 24, 32, 48


def moving_pattern(frames: int = T, height: int = H, width: int = W, seed: int = 0) -> np.ndarray:
    """Smooth, moving colour pattern uint8 [T, H, W, 3]: every frame differs clearly from its neighbours."""
    rng = np.random.default_rng(seed)
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    phase = rng.uniform(0, 6, size=3)
    channels = [
        128 + 100 * np.sin(x / 6 + 0.6 * t + phase[0]),
        128 + 90 * np.cos(y / 5 - 0.4 * t + phase[1]),
        128 + 80 * np.sin((x + y) / 8 + 0.7 * t + phase[2]),
    ]
    return np.stack(channels, axis=-1).astype(np.uint8)


def full_decode(path: Path) -> np.ndarray:
    """Reference: every frame, decoded front to back with PyAV."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def remux(src: Path, dst: Path, fmt: str | None = None, shift: float = 0.0) -> Path:
    """Copy the packets of ``src`` into ``dst`` (container ``fmt``), timestamps shifted by ``shift``
    seconds."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        offset = int(round(shift / inp.streams.video[0].time_base))
        for packet in inp.demux(video=0):
            if packet.dts is None:  # the demuxer's final flush packet
                continue
            packet.pts += offset
            packet.dts += offset
            packet.stream = stream
            out.mux(packet)
    return dst


CASES = {  # name -> (codec, gop, suffix)
    "h264_gop4": ("h264", 4, ".mp4"),
    "h264": ("h264", None, ".mp4"),
    "mpeg4_avi": ("mpeg4", None, ".avi"),
    "vp9": ("vp9", None, ".webm"),
    "mjpeg": ("mjpeg", None, ".avi"),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    frames = moving_pattern()
    out = {
        name: write_video(root / f"{name}{suffix}", frames, codec=codec, gop=gop)
        for name, (codec, gop, suffix) in CASES.items()
    }
    out["shifted_mkv"] = remux(out["h264_gop4"], root / "shifted.mkv", shift=2.0)
    out["raw_h264"] = remux(out["h264_gop4"], root / "raw.h264", fmt="h264")
    return out


def random_index_sets(num_frames: int, count: int = 12, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    sets = [list(range(num_frames)), list(range(num_frames))[::-1], [num_frames - 1, 0, num_frames - 1]]
    sets += [rng.integers(0, num_frames, size=rng.integers(1, 12)).tolist() for _ in range(count)]
    return sets


@pytest.mark.parametrize("name", [*CASES, "shifted_mkv", "raw_h264"])
def test_pyav_matches_full_decode(videos: dict[str, Path], name: str) -> None:
    reference = full_decode(videos[name])
    assert len(reference) == T
    with open_video(videos[name], backend="pyav") as video:
        assert (video.num_frames, video.height, video.width) == (T, H, W)
        for indices in random_index_sets(T):
            got = video.get_frames(indices)
            assert got.dtype == torch.uint8 and got.shape == (len(indices), H, W, 3)
            np.testing.assert_array_equal(got.numpy(), reference[indices], err_msg=f"{name} {indices}")


def test_h264_fixture_has_b_frames_and_short_gop(videos: dict[str, Path]) -> None:
    """The seek tests above are only meaningful if the stream reorders frames and has many keyframes."""
    with av.open(str(videos["h264_gop4"])) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    pts = [p.pts for p in packets]
    assert pts != sorted(pts)  # decode order differs from presentation order: B-frames
    assert sum(p.is_keyframe for p in packets) == T // 4
    with open_video(videos["h264_gop4"], backend="pyav") as video:
        assert video.index.key_frames.tolist() == list(range(0, T, 4))
        assert video.fps == pytest.approx(25.0)


def _first_decoded_frames(video, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the first frame index each ``_decode_run`` of ``video`` decodes (where its seek landed)."""
    landed: list[int] = []
    decode_run = type(video)._decode_run

    def recording(self, *args):
        first = decode_run(self, *args)
        landed.append(first)
        return first

    monkeypatch.setattr(type(video), "_decode_run", recording)
    return landed


@pytest.mark.parametrize("name", ["h264_gop4", "shifted_mkv"])
def test_seek_lands_on_the_keyframe_not_a_gop_earlier(
    videos: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With B-frames a keyframe's dts precedes its pts; seeking to the dts lands on the keyframe before, and
    the decoder would decode a whole extra GOP per clip."""
    with open_video(videos[name], backend="pyav") as video:
        landed = _first_decoded_frames(video, monkeypatch)
        for key in video.index.key_frames[1:].tolist():
            video.get_frames(range(key, key + 2))
        assert landed == video.index.key_frames[1:].tolist()


class _OvershootingSeeks:
    """A container whose first seek of each pair lands one GOP (4 frames) late, like a demuxer whose index
    does not match the stream's pts; everything else is the real container."""

    def __init__(self, container, step: int) -> None:
        self.container, self.step, self.calls = container, step, 0

    def seek(self, offset: int, **kwargs) -> None:
        self.calls += 1
        self.container.seek(offset + (self.step if self.calls % 2 else 0), **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.container, name)


def test_seek_retries_at_the_safe_timestamp_when_it_overshoots(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = full_decode(videos["h264_gop4"])
    with open_video(videos["h264_gop4"], backend="pyav") as video:
        landed = _first_decoded_frames(video, monkeypatch)
        gop_ticks = int(video.index.pts[4] - video.index.pts[0])
        video._container = _OvershootingSeeks(video._container, gop_ticks)
        got = video.get_frames([9, 10, 11])
        np.testing.assert_array_equal(got.numpy(), reference[[9, 10, 11]])
        assert video._container.calls == 2  # the pts seek overshot to frame 12, the safe seek did not
        assert landed[0] > 9 and landed[1] <= 8


def test_index_for_shifted_and_timestampless_streams(videos: dict[str, Path]) -> None:
    with open_video(videos["shifted_mkv"], backend="pyav") as video:
        assert video.index.seekable and video.index.pts[0] > 0
    with open_video(videos["raw_h264"], backend="pyav") as video:
        assert not video.index.seekable  # no timestamps: frames are counted from the start


def test_frame_folder_backend(tmp_path: Path) -> None:
    frames = moving_pattern(frames=6)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"image_{i + 1:05d}.jpg", quality=90)
    (tmp_path / "n_frames").write_text("6")  # the CVPR 2018 layout also holds this file
    assert select_backend(tmp_path) == "frame_folder"
    video = open_video(tmp_path)
    assert (video.num_frames, video.height, video.width) == (6, H, W)
    expected = np.stack(
        [np.asarray(Image.open(tmp_path / f"image_{i + 1:05d}.jpg").convert("RGB")) for i in (5, 0, 5)]
    )
    np.testing.assert_array_equal(video.get_frames([5, 0, 5]).numpy(), expected)


def test_errors_are_clear(videos: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        open_video(tmp_path / "missing.mp4")
    no_frames = r"pyav: .*folder.*frame_folder: .*no .jpg/.jpeg/.png frames"
    with pytest.raises(BackendUnavailable, match=no_frames):
        open_video(tmp_path, backend="auto")  # an empty folder: no backend can read it
    with pytest.raises(ValueError, match="backend"):
        open_video(videos["vp9"], backend="ffmpeg")
    with open_video(videos["vp9"]) as video, pytest.raises(IndexError, match=r"\[0, 24\)"):
        video.get_frames([0, T])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(DataError, match="cannot open"):
        open_video(garbage)


def test_truncated_files(videos: dict[str, Path], tmp_path: Path) -> None:
    """An mp4 cut short loses its index (moov atom): a clear DataError. A cut webm keeps its first frames:
    the packet index counts only those, and they decode exactly."""
    cut_mp4 = tmp_path / "cut.mp4"
    cut_mp4.write_bytes(videos["h264"].read_bytes()[:2000])
    with pytest.raises(DataError, match="cut.mp4"):
        open_video(cut_mp4).get_frames([0])
    data = videos["vp9"].read_bytes()
    cut_webm = tmp_path / "cut.webm"
    cut_webm.write_bytes(data[: len(data) // 2])
    with open_video(cut_webm) as video:
        assert 0 < video.num_frames < T
        kept = list(range(video.num_frames - 1))  # the last counted packet may itself be cut
        np.testing.assert_array_equal(video.get_frames(kept).numpy(), full_decode(videos["vp9"])[kept])


# ------------------------------------------------------------------------------------------------ DALI


def _require_dali() -> None:
    pytest.importorskip("nvidia.dali")


def _luma(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("name", ["vp9", "mjpeg"])
def test_dali_cpu_matches_pyav(videos: dict[str, Path], name: str) -> None:
    """Same frames for the same indices. The RGB conversion differs slightly (DALI's libswscale interpolates
    chroma, PyAV's unscaled path does not), so frames are compared on luma, and identified by nearest
    match."""
    _require_dali()
    indices = [7, 0, 23, 7, 12, 13]
    with open_video(videos[name], backend="pyav") as ref_video:
        reference = ref_video.get_frames(list(range(T))).numpy()
    video = open_video(videos[name], backend="dali", device="cpu")
    assert (video.num_frames, video.height, video.width) == (T, H, W)
    got = video.get_frames(indices).numpy()
    assert got.shape == (len(indices), H, W, 3) and got.dtype == np.uint8
    luma_ref, luma_got = _luma(reference), _luma(got)
    for k, i in enumerate(indices):
        assert np.abs(luma_got[k] - luma_ref[i]).max() <= 4.0
        distances = np.abs(luma_ref - luma_got[k]).mean(axis=(1, 2))
        assert int(distances.argmin()) == i
    assert np.abs(got.astype(int) - reference[indices]).mean() < 6.0


def test_dali_refuses_h264_on_cpu_with_reason(videos: dict[str, Path]) -> None:
    _require_dali()
    with pytest.raises(BackendUnavailable, match=r"dali: codec 'h264'.*only mjpeg/vp8/vp9.*device='cuda'"):
        open_video(videos["h264"], backend="dali", device="cpu")
    assert select_backend(videos["vp9"], "auto", "cpu") != "dali"  # a file decoder first on the CPU
    with pytest.raises(BackendUnavailable, match="torch.cuda.is_available"):
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        open_video(videos["vp9"], backend="dali", device="cuda")


def test_dali_recovers_after_a_failed_decode(videos: dict[str, Path], tmp_path: Path) -> None:
    """DALI invalidates a pipeline after an error; the shared decoder must rebuild it."""
    _require_dali()
    from vidfast.data.decoders import dali_decoder

    decoder = dali_decoder("cpu")
    with pytest.raises(DataError, match="DALI"):
        decoder.decode([np.fromfile(videos["h264"], dtype=np.uint8)], [np.array([0])])
    (frames,) = decoder.decode([np.fromfile(videos["vp9"], dtype=np.uint8)], [np.array([3, 1])])
    assert frames.shape == (2, H, W, 3)


@pytest.mark.cuda
def test_dali_gpu_matches_pyav(videos: dict[str, Path]) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    _require_dali()
    with open_video(videos["h264_gop4"], backend="pyav") as ref_video:
        reference = ref_video.get_frames(list(range(T))).numpy()
    got = open_video(videos["h264_gop4"], backend="dali", device="cuda").get_frames([5, 0, 5])
    assert got.is_cuda
    assert np.abs(_luma(got.cpu().numpy()) - _luma(reference[[5, 0, 5]])).mean() < 3.0


def test_probe_and_decoder_count_the_frames_a_decode_gives(videos: dict[str, Path], tmp_path: Path) -> None:
    """An MP4 whose edit list cuts its first frame holds a packet marked discard: the probe (the manifest's
    num_frames), the decoder and a full decode must all count the frames without it, or a clip planned on
    the manifest's count would index a frame that never comes out."""
    from vidfast.data.probe import probe_path

    cut = remux(videos["h264_gop4"], tmp_path / "edit_list.mp4", shift=-1 / 25)
    with av.open(str(cut)) as container:
        assert any(p.is_discard for p in container.demux(video=0))
    decoded = full_decode(cut)
    assert len(decoded) == T - 1
    assert probe_path(cut).num_frames == T - 1
    with open_video(cut, backend="pyav") as video:
        assert video.num_frames == T - 1
        np.testing.assert_array_equal(video.get_frames(list(range(T - 1))).numpy(), decoded)


# ------------------------------------------------------------------------------------- decord2, torchcodec


@pytest.mark.parametrize("name", ["h264_gop4_64x48", "h264_gop4", "h264", "vp9", "mpeg4_avi"])
def test_decord2_matches_pyav(videos: dict[str, Path], name: str, tmp_path: Path) -> None:
    """Same frames (any order, repeats) and the same keyframes as PyAV. decord 3.4 fails on the fixtures'
    48x32 frames: those are decoded by PyAV instead, from the first failure on; 64x48 it decodes itself."""
    from vidfast.data.decoders import decord2, decord2_import_error

    if decord2_import_error():
        pytest.skip(decord2_import_error())
    if name == "h264_gop4_64x48":
        videos = {name: write_video(tmp_path / "v.mp4", moving_pattern(T, 48, 64), gop=4)}
    with open_video(videos[name], backend="pyav") as ref_video:
        reference = ref_video.get_frames(list(range(T))).numpy()
        keys = ref_video.key_frames
    with open_video(videos[name], backend="decord2") as video:
        assert (video.num_frames, video.height, video.width) == (T, *reference.shape[1:3])
        np.testing.assert_array_equal(video.key_frames, keys)
        for indices in random_index_sets(T, count=4):
            got = video.get_frames(indices).numpy()
            assert got.shape == (len(indices), *reference.shape[1:]) and got.dtype == np.uint8
            assert np.abs(got.astype(int) - reference[indices]).mean() < 1.0, (name, indices)
    assert (str(videos[name]) in decord2._FAILED) == (name != "h264_gop4_64x48")


def test_torchcodec_reads_or_refuses_in_one_line(videos: dict[str, Path]) -> None:
    """Without system FFmpeg libraries (or for another torch) torchcodec cannot load: the backend says why
    in one line and ``auto`` goes on without it."""
    from vidfast.data.decoders import torchcodec_import_error

    reason = torchcodec_import_error()
    if reason is None:
        with open_video(videos["h264_gop4"], backend="torchcodec") as video:
            got = video.get_frames([3, 0, 3]).numpy()
        np.testing.assert_array_equal(got, full_decode(videos["h264_gop4"])[[3, 0, 3]])
        return
    assert "torchcodec" in reason and "\n" not in reason
    with pytest.raises(BackendUnavailable, match=r"torchcodec: torchcodec (is not installed|does not load)"):
        open_video(videos["h264_gop4"], backend="torchcodec")
    assert select_backend(videos["h264_gop4"], "auto") != "torchcodec"


def test_auto_order_is_measured_once_per_machine_and_cached(monkeypatch, caplog) -> None:
    from vidfast.data.decoders import ranking

    calls = []

    def fake_measure(names):
        calls.append(names)
        return {name: 100.0 * (i + 1) for i, name in enumerate(sorted(names))}

    monkeypatch.setattr(ranking, "measure", fake_measure)
    names = ("pyav", "zz-fake")
    ranking.measured_order.cache_clear()
    try:
        with caplog.at_level("INFO", logger="vidfast.data"):
            assert ranking.measured_order(names) == ("zz-fake", "pyav")
        assert any("auto uses zz-fake first" in r.getMessage() for r in caplog.records)
        ranking.measured_order.cache_clear()  # a new process: the order comes from the runtime cache
        monkeypatch.setattr(ranking, "measure", lambda names: pytest.fail("measured twice"))
        assert ranking.measured_order(names) == ("zz-fake", "pyav")
        assert calls == [names]
    finally:
        ranking.measured_order.cache_clear()


def test_auto_tries_the_measured_fastest_decoder_first(monkeypatch) -> None:
    from vidfast.data.decoders import BACKENDS, backend_priority, ranking

    cpu = torch.device("cpu")
    usable = [n for n in ("decord2", "pyav", "torchcodec") if BACKENDS[n].unavailable(cpu) is None]
    if len(usable) < 2:
        pytest.skip("only one file decoder can run here")
    for fastest in usable:
        monkeypatch.setattr(ranking, "measured_order",
                            lambda names, f=fastest: (f, *(n for n in names if n != f)))
        order = backend_priority("cpu")
        assert order[0] == fastest and set(order) == set(BACKENDS)
        assert backend_priority("cuda")[0] == "dali"

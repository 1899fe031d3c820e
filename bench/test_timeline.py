"""Timeline speed and memory: ``vidfast predict --timeline`` on a 10-minute 720p video (not a test).

Model: the demo's classifier (3D ResNet-18 at widen 0.25, 6 classes, clip 16x48x48, frame step 1; random
weights: speed does not depend on them), exported to ONNX (float input, normalised in numpy) and run by
onnxruntime on the CPU. Video: 720p H.264 (libx264 veryfast, crf 23) at 25 fps of synthetic frames (random
16-pixel colour blocks panning 2 px a frame, per-pixel grain, a square moving across; the bitrate is printed),
1 and 10 minutes, encoded once
into the cache directory (``VIDFAST_BENCH_CACHE``, default ``$TMPDIR/vidfast-bench``).

Each run is a fresh subprocess (``python bench/test_timeline.py MODEL VIDEO [options]``) that reports the
timeline's stats and its peak RSS (``resource.getrusage``): the real-time factor on the 10-minute file, and
the peak RSS of the 1- and 10-minute runs next to a process that only imports and loads the model, so that
the memory the timeline itself needs (flat in the length, or not) is separated from the imports. A run with
windows every 4 frames (4x the model's work per second of video) shows how much headroom the model leaves.

Must hold (issue 19): >= 2x real time on 2 cores, memory flat in the video's length.
Run: .venv/bin/python -m pytest bench/test_timeline.py -q -s
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from vidfast.runtime.cache import cpu_name

FPS, HEIGHT, WIDTH = 25, 720, 1280
DEMO = {"arch": "resnet18", "widen_factor": 0.25, "classes": 6, "clip": (16, 48, 48)}
CACHE = Path(os.environ.get("VIDFAST_BENCH_CACHE", Path(tempfile.gettempdir()) / "vidfast-bench"))
REALTIME_GOAL = 2.0
#: per-pixel grain (uniform, +-NOISE levels, 7 fields in turn): gives the file a bitrate like camera footage
NOISE = 12
#: "flat": the 10-minute run's peak RSS at most this much above the 1-minute run's
FLAT_MIB = 32


def synthetic_video(path: Path, seconds: int) -> Path:
    """``seconds`` of 720p25 H.264 (see the module docstring); written once, reused when present."""
    if path.exists():
        return path
    from vidfast.data.video_io import VideoWriter

    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, (HEIGHT // 16, 2 * WIDTH // 16, 3), dtype=np.uint8)
    base = blocks.repeat(16, 0).repeat(16, 1).astype(np.int16)  # twice the width: pans without wrapping
    grain = [rng.integers(-NOISE, NOISE + 1, (HEIGHT, WIDTH, 3)).astype(np.int16) for _ in range(7)]
    partial = path.with_suffix(".partial.mp4")
    with VideoWriter(partial, WIDTH, HEIGHT, fps=FPS, crf=23) as writer:
        for i in range(seconds * FPS):
            x = (2 * i) % WIDTH
            frame = base[:, x:x + WIDTH] + grain[i % len(grain)]
            top, left = (i * 3) % (HEIGHT - 120), (i * 5) % (WIDTH - 120)
            frame[top:top + 120, left:left + 120] = (255, 240, 40)
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    partial.rename(path)
    return path


def demo_model(path: Path) -> Path:
    """The demo's classifier architecture exported to ``path`` (once)."""
    if path.exists():
        return path
    import torch

    from vidfast.export import export_onnx
    from vidfast.models import create_model

    torch.manual_seed(0)
    net = create_model(DEMO["arch"], num_classes=DEMO["classes"], widen_factor=DEMO["widen_factor"]).eval()
    names = [f"class{i}" for i in range(DEMO["classes"])]
    export_onnx(net, path, clip=DEMO["clip"], class_names=names, frame_step=1)
    return path


def _run_child(model: Path, video: Path | None, *options: str) -> dict:
    """One timeline (or with ``video`` None only the imports and the model) in a fresh process."""
    args = [sys.executable, __file__, str(model), str(video or "-"), *options]
    done = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_timeline_realtime_factor_and_flat_memory() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    model = demo_model(CACHE / "demo-resnet18-w0.25-16x48.onnx")
    started = time.perf_counter()
    videos = {m: synthetic_video(CACHE / f"synthetic-720p25-{m}min.mp4", 60 * m) for m in (1, 10)}
    print(f"\nvideos ready in {time.perf_counter() - started:.0f} s; "
          f"10 min: {videos[10].stat().st_size / 2**20:.0f} MiB "
          f"({videos[10].stat().st_size * 8 / 600 / 1e6:.1f} Mbit/s)")
    baseline = _run_child(model, None)
    runs = {m: _run_child(model, videos[m]) for m in (1, 10)}
    print(f"CPU: {cpu_name()}, {len(os.sched_getaffinity(0))} cores (shared with other jobs)")
    print(f"imports + model loaded: peak RSS {baseline['peak_rss_mib']:.0f} MiB")
    for minutes, run in runs.items():
        stats = run["stats"]
        print(f"{minutes:>2} min: {stats['realtime_factor']:.2f}x real time, "
              f"{stats['frames_per_second']} frames/s, {stats['windows']} windows, "
              f"peak RSS {run['peak_rss_mib']:.0f} MiB "
              f"(+{run['peak_rss_mib'] - baseline['peak_rss_mib']:.0f} over imports + model)")
    dense = _run_child(model, videos[1], json.dumps({"stride": "4"}))["stats"]
    print(f" 1 min, stride 4 frames (4x the model's work): {dense['realtime_factor']:.2f}x real time, "
          f"{dense['windows']} windows")
    ten, one = runs[10], runs[1]
    assert ten["stats"]["windows"] == 600 * FPS // DEMO["clip"][0] + 1  # + one ending at the last frame
    assert ten["stats"]["realtime_factor"] >= REALTIME_GOAL
    assert ten["peak_rss_mib"] - one["peak_rss_mib"] < FLAT_MIB


def _child_main(model: str, video: str, *options: str) -> None:
    from vidfast.deploy import OnnxClassifier
    from vidfast.deploy.timeline import OnnxClipScorer, run_timeline

    scorer = OnnxClipScorer(OnnxClassifier(model, providers="cpu"))
    result = {}
    if video != "-":
        outcome = run_timeline(scorer, video, progress="plain", **json.loads(options[0]) if options else {})
        assert outcome.error is None, outcome.error
        result["stats"] = outcome.stats.to_dict()
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    _child_main(*sys.argv[1:])

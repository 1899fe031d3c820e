"""Random training-clip decode rate: vidfast against decord 0.6 and decord2 used alone, and what the transcode
presets cost on disk.

Files: ``VIDEOS`` 96-frame 320x240 videos, transcoded by ``transcode_manifest`` to a short side of 128 with a
keyframe every 16 frames, with the default preset (tune=fastdecode, no B-frames) and with B-frames
(``--b-frames``). Readers, each in its own process (decord 0.6 and decord2 are both the module
``decord``), one codec thread, each opening the file per clip (:mod:`bench.decode_reader`): the anchors draw
a start uniformly and call ``get_batch``; vidfast runs its training sampler (with and without keyframe
snapping) and decodes what it asks for. Rounds are interleaved over the readers (one clip per video per
round, the readers in a new random order each round), so load from other processes hits all alike; besides
the rate over all rounds, each round's vidfast/best-anchor ratio is taken and their median reported (robust
to load that changes between rounds). The anchors are pip-installed into the runtime cache folder in the run
(skipped, with the reason, where pip cannot install them).

Run: ``.venv/bin/python -m pytest bench/test_decode.py -q -s``; figures go to ``bench/results/decode.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vidfast.data.manifest import ManifestRow, write_manifest
from vidfast.data.synth import MOTIONS, render_motion_video
from vidfast.data.transcode import transcode_manifest
from vidfast.data.video_io import write_video
from vidfast.runtime.cache import cache_dir, cpu_name

FRAMES, HEIGHT, WIDTH = 96, 240, 320
VIDEOS = int(os.environ.get("VIDFAST_BENCH_VIDEOS", "16"))
ROUNDS = int(os.environ.get("VIDFAST_BENCH_ROUNDS", "12"))
ANCHORS = {"decord 0.6": "decord==0.6.0", "decord2": "decord2==3.4.0"}
READER = Path(__file__).with_name("decode_reader.py")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Paths of the transcoded videos per preset: ``default`` (no B-frames) and ``b_frames``."""
    root = tmp_path_factory.mktemp("bench_decode")
    rows = []
    for i in range(VIDEOS):
        motion = MOTIONS[i % len(MOTIONS)]
        frames = render_motion_video(motion, FRAMES, (HEIGHT, WIDTH), np.random.default_rng(i))
        path = write_video(root / "src" / f"v{i:03d}.mp4", frames, crf=23)
        rows.append(ManifestRow(str(path), i % len(MOTIONS), motion.name, "train", None, None, FRAMES, 25.0,
                                WIDTH, HEIGHT, "ok", ""))
    source = write_manifest(root / "src.csv", rows)
    out = {}
    for preset, b_frames in (("default", False), ("b_frames", True)):
        manifest, _ = transcode_manifest(source, root / preset, short_side=128, gop=16, b_frames=b_frames,
                                         progress=False)
        out[preset] = [row.path for row in manifest.select()]
    return out


def _install(spec: str) -> tuple[Path | None, str]:
    """``spec`` pip-installed into its own folder of the runtime cache: (folder, "") or (None, why not)."""
    folder = cache_dir() / "bench-anchors" / spec.replace("==", "-")
    if (folder / "decord").is_dir():
        return folder, ""
    run = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(folder),
                          spec], capture_output=True, text=True)
    if run.returncode != 0:
        lines = [line for line in run.stderr.splitlines() if line.strip() and "WARNING" not in line]
        return None, f"pip install {spec} failed: {lines[-1] if lines else run.returncode}"
    return folder, ""


class Reader:
    """A ``decode_reader.py`` process."""

    def __init__(self, kind: str, paths: list[str], pythonpath: Path | None = None) -> None:
        env = dict(os.environ)
        if pythonpath is not None:
            env["PYTHONPATH"] = str(pythonpath)
        self.proc = subprocess.Popen([sys.executable, str(READER), kind, json.dumps(paths)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.name = self._answer()["reader"]
        self.seconds = 0.0
        self.frames = self.decoded = 0
        self.round_rates: list[float] = []

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"reader {self.proc.args[2]} died (exit {self.proc.wait()})")
        return json.loads(line)

    def round(self, seed: int, count: bool) -> None:
        self.proc.stdin.write(f"{seed}\n")
        self.proc.stdin.flush()
        result = self._answer()
        if count:
            self.seconds += result["seconds"]
            self.frames += result["frames"]
            self.decoded += result["decoded"]
            self.round_rates.append(result["frames"] / result["seconds"])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def test_random_clip_decode_vs_anchors(files: dict[str, list[str]]) -> None:
    """Frames/s of random 16-frame training clips: vidfast (auto backend, pyav, decord2; keyframe snapping
    16 and off) against decord 0.6 and decord2 alone, on the same files, interleaved."""
    skipped, readers = {}, {}
    for name, spec in ANCHORS.items():
        folder, why = _install(spec)
        if folder is None:
            skipped[name] = why
            continue
        readers[f"{name} alone/default"] = Reader("decord", files["default"], folder)
    for backend, snap in (("auto", 16), ("auto", 0), ("pyav", 16), ("decord2", 16)):
        kind = f"vidfast:{backend}:{snap}"
        readers[f"vidfast {backend} snap={snap}/default"] = Reader(kind, files["default"])
    readers["vidfast auto snap=16/b_frames"] = Reader("vidfast:auto:16", files["b_frames"])
    for name, spec in ANCHORS.items():
        if name not in skipped:
            readers[f"{name} alone/b_frames"] = Reader("decord", files["b_frames"], _install(spec)[0])
    order = np.random.default_rng(0)
    try:
        for r in range(ROUNDS + 1):  # round 0 warms up (page cache, libraries)
            for k in order.permutation(len(readers)).tolist():
                list(readers.values())[k].round(r, count=r > 0)
    finally:
        for reader in readers.values():
            reader.close()
    rates = {key: {"reader": r.name, "frames_per_s": r.frames / r.seconds,
                   "median_round_frames_per_s": float(np.median(r.round_rates)),
                   "decoded_per_clip": r.decoded / (ROUNDS * VIDEOS)} for key, r in readers.items()}
    anchors = [k for k in rates if "alone/default" in k]
    best = max((rates[k]["frames_per_s"] for k in anchors), default=float("nan"))
    ours = readers["vidfast auto snap=16/default"].round_rates
    paired = [ours[r] / max(readers[k].round_rates[r] for k in anchors) for r in range(ROUNDS)] \
        if anchors else [float("nan")]
    sizes = {preset: sum(os.path.getsize(p) for p in paths) for preset, paths in files.items()}
    report = {
        "cpu": cpu_name(), "cpu_cores": os.cpu_count(), "load_average": os.getloadavg(),
        "note": "shared machine: other jobs ran at the same time; readers interleaved, one codec thread each",
        "videos": VIDEOS, "rounds": ROUNDS, "rates": rates, "skipped": skipped,
        "vidfast_auto_vs_best_anchor": rates["vidfast auto snap=16/default"]["frames_per_s"] / best,
        "vidfast_auto_vs_best_anchor_median_of_rounds": float(np.median(paired)),
        "bytes": sizes, "no_b_frames_size_ratio": sizes["default"] / sizes["b_frames"],
    }
    out = Path(__file__).parent / "results" / "decode.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for key, value in rates.items():
        print(f"\n{key:40s} {value['reader']:35s} {value['frames_per_s']:7.0f} frames/s "
              f"(median round {value['median_round_frames_per_s']:5.0f}) "
              f"{value['decoded_per_clip']:5.1f} decoded/clip")
    print(f"\nvidfast auto (snap 16) / best anchor: {report['vidfast_auto_vs_best_anchor']:.2f} "
          f"(median of rounds {report['vidfast_auto_vs_best_anchor_median_of_rounds']:.2f}); "
          f"no B-frames: {report['no_b_frames_size_ratio']:.3f}x the bytes; skipped: {skipped or 'none'}")

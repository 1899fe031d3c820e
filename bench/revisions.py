"""Before/after: the loader and training-throughput measurements of ``bench/test_data.py`` and
``bench/test_train.py`` in two source trees of vidfast, side by side in one run.

Each tree gets one long-lived worker process (``PYTHONPATH`` = that tree, the interpreter and compiled op of
this checkout); the parent asks the workers in turn for one measurement at a time, alternating which tree goes
first, so that load from other processes hits both alike. Round 0 of every measurement is a warm-up (worker
start-up, first decode, the precision decision) and is not counted; the table gives the median of the other
rounds in clips/s, their after/before, and the median [min, max] of the rounds' own after/before (each round
measures both trees back to back, so its ratio shares that moment's load).

Measurements (same data, same settings in both trees):

- ``loader/<variant>``: 8 epochs of ``make_loader`` with the training clip policy (16x112x112,
  multi-scale corner crop + flip), 2 workers, batch 8, over 96-frame 320x240 H.264 videos with a keyframe
  every 16 frames (``h264_gop16``) and the same transcoded to a short side of 128 (``h264_s128_gop16``);
- ``train/<pipeline|step>``: ``measure_training_throughput`` of resnet18 on 16x112x112 clips, batch 8, in
  the default precision and layout: the loader feeding the step, and the step alone on a batch in memory.

Run: ``.venv/bin/python bench/revisions.py BEFORE_TREE [--after .] [--rounds 5] [--out FILE.json]``. A
``BEFORE_TREE`` is e.g. ``git archive <commit> | tar -x -C /tmp/before``; its ``vidfast/_C`` is this
checkout's when the native sources are the same (the script copies it and says so).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
LOADERS = ("h264_gop16", "h264_s128_gop16")
CLIP, SIZE, BATCH, WORKERS, FRAMES = 16, 112, 8, 2, 96
TRAIN_STEPS = int(os.environ.get("VIDFAST_BENCH_STEPS", "6"))
#: epochs of the 16 videos per loader measurement (one epoch is only two batches)
LOADER_EPOCHS = 8


# ------------------------------------------------------------------------------------- worker side


def _serve(data: Path) -> None:
    """Answer measurement requests (one name per stdin line) with ``RESULT {json}`` lines on stdout."""
    import torch

    from vidfast.data.loader import LoaderConfig, make_loader
    from vidfast.data.policies import training_clips
    from vidfast.engine import measure_training_throughput, resolve_config

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("vidfast.runtime").setLevel(logging.INFO)  # the precision each tree's run takes

    loaders: dict[str, object] = {}
    epochs: dict[str, int] = {}
    for line in sys.stdin:
        name = line.strip()
        kind, what = name.split("/", 1)
        if kind == "loader":
            if what not in loaders:
                loaders[what] = make_loader(
                    str(data / what / "manifest.csv"), training_clips(CLIP, size=SIZE),
                    LoaderConfig(backend="pyav", batch_size=BATCH, workers=WORKERS),
                )
            loader = loaders[what]
            start, clips = time.perf_counter(), 0
            for _ in range(LOADER_EPOCHS):
                epochs[what] = epochs.get(what, -1) + 1
                loader.set_epoch(epochs[what])
                # the tree before had dict batches
                clips += sum(len(b["label"]) if isinstance(b, dict) else len(b) for b in loader)
            if not clips:
                raise SystemExit(f"{name}: the loader gave no clip")
            rate = clips / (time.perf_counter() - start)
        else:
            cfg = resolve_config("classify", None, {
                "data": {"manifest": str(data / "train.csv"), "batch_size": BATCH, "workers": WORKERS},
                "runtime": {"device": "cpu", "run_dir": tempfile.mkdtemp(), "progress": "none",
                            "tensorboard": False},
            })
            rate = measure_training_throughput(cfg, TRAIN_STEPS, 1, what == "step")
        print("RESULT " + json.dumps({"name": name, "rate": rate, "threads": torch.get_num_threads()}),
              flush=True)


# ------------------------------------------------------------------------------------- parent side


def _make_data(root: Path) -> None:
    """The loader manifests (``h264_gop16/manifest.csv``, ``h264_s128_gop16/manifest.csv``: 16 videos each)
    and the training manifest."""
    import numpy as np

    from vidfast.data.manifest import ManifestRow, build_manifest, write_manifest
    from vidfast.data.synth import MOTIONS, render_motion_video, synthesize_dataset
    from vidfast.data.transcode import transcode_manifest
    from vidfast.data.video_io import write_video

    rows = []
    for i in range(16):
        motion = MOTIONS[i % len(MOTIONS)]
        frames = render_motion_video(motion, FRAMES, (240, 320), np.random.default_rng(i))
        path = write_video(root / "h264_gop16" / f"v{i:03d}.mp4", frames, codec="h264", gop=16, crf=23)
        rows.append(ManifestRow(str(path), i % len(MOTIONS), motion.name, "train", None, None, FRAMES, 25.0,
                                320, 240, "ok", ""))
    write_manifest(root / "h264_gop16" / "manifest.csv", rows)
    transcode_manifest(root / "h264_gop16" / "manifest.csv", root / "h264_s128_gop16", short_side=128, gop=16,
                       codec="h264", progress=False)
    synthesize_dataset(root / "train", classes=4, per_class=(TRAIN_STEPS + 2) * BATCH // 4 + 1, frames=48,
                       size=(128, 160))
    build_manifest("folder", root / "train", root / "train.csv", progress=False)


class _Worker:
    """One tree's measuring process."""

    def __init__(self, tree: Path, data: Path) -> None:
        env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'cli'}"}
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(data)], cwd=tree, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def measure(self, name: str) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return float(json.loads(line[7:])["rate"])
        raise RuntimeError(f"the worker measuring {name} exited with {self.proc.wait()}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def _compiled_op(before: Path, after: Path) -> str:
    """Give ``before`` this checkout's compiled op when its native sources are the same; what was done."""
    if list((before / "vidfast").glob("_C*.so")):
        return "its own"
    differ = subprocess.run(["diff", "-rq", str(before / "csrc"), str(after / "csrc")], capture_output=True)
    if differ.returncode:
        raise SystemExit(f"{before}/csrc differs from {after}/csrc: build its vidfast._C first")
    for so in (after / "vidfast").glob("_C*.so"):
        shutil.copy2(so, before / "vidfast" / so.name)
    return "copied from the after tree (same csrc/)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, nargs="?")
    parser.add_argument("--after", type=Path, default=HERE)
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds (a warm-up round comes first)")
    parser.add_argument("--only", choices=("loader", "train"), help="measure one kind only")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return
    if args.before is None:
        parser.error("give the BEFORE tree")
    before, after = args.before.resolve(), args.after.resolve()
    op = _compiled_op(before, after)
    names = [f"loader/{v}" for v in LOADERS] * (args.only != "train") + ["train/pipeline", "train/step"] * (
        args.only != "loader")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        _make_data(data)
        workers = {"before": _Worker(before, data), "after": _Worker(after, data)}
        rates: dict[str, dict[str, list[float]]] = {n: {"before": [], "after": []} for n in names}
        try:
            for round_ in range(args.rounds + 1):
                for name in names:
                    order = ("before", "after") if (round_ + names.index(name)) % 2 == 0 else (
                        "after", "before")
                    for tree in order:
                        rate = workers[tree].measure(name)
                        if round_:
                            rates[name][tree].append(rate)
                print(f"round {round_}{' (warm-up)' if not round_ else ''} done", file=sys.stderr, flush=True)
        finally:
            for worker in workers.values():
                worker.close()
    table = {n: {t: statistics.median(r[t]) for t in r} for n, r in rates.items()}
    paired = {n: sorted(a / b for a, b in zip(r["after"], r["before"], strict=True))
              for n, r in rates.items()}
    report = {"before": str(before), "after": str(after), "compiled_op_of_before": op, "rounds": args.rounds,
              "cpu": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
              "load_average": os.getloadavg(), "median_clips_per_s": table, "all_rounds": rates,
              "paired_ratios": paired}
    print(f"{'median clips/s':28s} {'before':>9s} {'after':>9s}  ratio  by round ({args.rounds} rounds)")
    for name, m in table.items():
        by_round = f"{statistics.median(paired[name]):.3f} [{paired[name][0]:.3f}, {paired[name][-1]:.3f}]"
        print(f"{name:28s} {m['before']:9.2f} {m['after']:9.2f}  {m['after'] / m['before']:.3f}  {by_round}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

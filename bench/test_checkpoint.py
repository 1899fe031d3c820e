"""Overhead of step-based checkpointing (``--checkpoint-every``, default 500 steps) on the demo's classifier
(``resnet18`` x0.25, 16x48x48 clips, batch 8: ``vidfast demo``'s fine-tuning setup), against no mid-epoch
checkpoint.

One process, interleaved: each round times a block of ``STEPS`` training steps alone, then a block of as many
steps followed by one checkpoint written as the loop writes it (``Trainer.save_checkpoint``: every rank's
generator states, atomic write + fsync + rename, ``last.pt`` hard link, pruning), then that checkpoint alone.
The steps run on a batch held in memory (the step alone, no loader), so the ratio is an upper bound for a run
whose loader adds time to each step. Overhead at an interval of N steps: ``1 + save / (N * step)``; the
``STEPS``-step blocks measure it directly at the short interval ``STEPS``.

Run: ``.venv/bin/python -m pytest bench/test_checkpoint.py -s -q`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

from vidfast.data.manifest import build_manifest
from vidfast.data.synth import synthesize_dataset
from vidfast.engine import resolve_config
from vidfast.engine.config import RuntimeConfig, checkpoint_interval
from vidfast.engine.run import build_run
from vidfast.engine.trainer import Trainer

STEPS = int(os.environ.get("VIDFAST_BENCH_STEPS", "20"))
ROUNDS = int(os.environ.get("VIDFAST_BENCH_ROUNDS", "5"))
BATCH = 8


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_checkpoint")
    synthesize_dataset(root / "videos", classes=4, per_class=4, frames=32, size=(64, 64))
    build_manifest("folder", root / "videos", root / "manifest.csv", progress=False)
    return root / "manifest.csv"


def test_checkpoint_overhead(benchmark, manifest, tmp_path):
    cfg = resolve_config("classify", None, {
        "model": {"arch": "resnet18", "widen_factor": 0.25},
        "data": {"manifest": str(manifest), "clip_len": 16, "size": 48, "batch_size": BATCH, "workers": 0},
        "runtime": {"run_dir": str(tmp_path / "run"), "progress": "none", "tensorboard": False,
                    "plots": False},
    })
    trainer = Trainer(build_run(cfg))
    batch = next(trainer.batches(0))

    def steps(n: int) -> None:
        for _ in range(n):
            trainer.train_step(batch)
        trainer.state.step += n  # a new numbered checkpoint each time, so pruning runs as in training

    def measure() -> dict[str, list[float]]:
        steps(2)
        trainer.save_checkpoint()  # warm-up
        times: dict[str, list[float]] = {"steps": [], "steps+save": [], "save": []}
        for _ in range(ROUNDS):
            started = time.perf_counter()
            steps(STEPS)
            times["steps"].append(time.perf_counter() - started)
            started = time.perf_counter()
            steps(STEPS)
            trainer.save_checkpoint()
            times["steps+save"].append(time.perf_counter() - started)
            started = time.perf_counter()
            trainer.save_checkpoint()
            times["save"].append(time.perf_counter() - started)
        return times

    times = benchmark.pedantic(measure, rounds=1, iterations=1)
    trainer.close()
    default_steps, _ = checkpoint_interval(RuntimeConfig().checkpoint_every)
    step = statistics.median(times["steps"]) / STEPS
    save = statistics.median(times["save"])
    direct = statistics.median(b / a for a, b in zip(times["steps"], times["steps+save"], strict=True))
    size_mb = trainer.checkpoints.last.stat().st_size / 2**20
    print(
        f"\nprecision {trainer.plan.name}; step {step * 1e3:.1f} ms (median of {ROUNDS} blocks of {STEPS}); "
        f"checkpoint {save * 1e3:.1f} ms ({size_mb:.1f} MB)\n"
        f"every {STEPS} steps, measured (steps+save)/steps: {direct:.4f}\n"
        f"every {default_steps} steps (default), 1 + save/({default_steps} x step): "
        f"{1 + save / (default_steps * step):.5f}"
    )

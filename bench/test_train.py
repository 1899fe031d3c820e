"""Training throughput (clips/s) of resnet18 on 16x112x112 clips: whole pipeline (loader + step) vs the step
alone on a batch held in memory, for the default (channels_last_3d, precision measured among the proven-safe:
``vidfast.runtime.precision``) and fp32 NCDHW.

Run: ``.venv/bin/python -m pytest bench/test_train.py -s -q`` (minutes on 2 CPU cores). The goal is the
pipeline within 10 % of the step alone: then the loader keeps up with the model.
"""

from __future__ import annotations

import os

import pytest
import torch

from vidfast.data.manifest import build_manifest
from vidfast.data.synth import synthesize_dataset
from vidfast.engine import measure_training_throughput, resolve_config

STEPS = int(os.environ.get("VIDFAST_BENCH_STEPS", "3"))
BATCH = int(os.environ.get("VIDFAST_BENCH_BATCH", "8"))
VARIANTS = {
    "default (channels_last, measured precision)": {"amp": None, "channels_last": True},
    "fp32 NCDHW": {"amp": False, "channels_last": False},
}
results: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_train")
    synthesize_dataset(
        root / "videos", classes=4, per_class=(STEPS + 2) * BATCH // 4 + 1, frames=48, size=(128, 160)
    )
    build_manifest("folder", root / "videos", root / "manifest.csv", progress=False)
    return root / "manifest.csv"


@pytest.mark.parametrize("source", ["pipeline", "step alone"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_train_throughput(benchmark, manifest, tmp_path, variant, source):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = resolve_config(
        "classify",
        None,
        {
            "data": {"manifest": str(manifest), "batch_size": BATCH, "workers": 2},
            "runtime": {
                **VARIANTS[variant],
                "device": device,
                "run_dir": str(tmp_path / "run"),
                "progress": "none",
                "tensorboard": False,
            },
        },
    )
    rate = benchmark.pedantic(
        measure_training_throughput, args=(cfg, STEPS, 1, source == "step alone"), rounds=1, iterations=1
    )
    results[(variant, source)] = rate
    benchmark.extra_info["clips_per_s"] = rate


def teardown_module() -> None:
    if not results:
        return
    print(f"\nresnet18 16x112x112 training, batch {BATCH}, {torch.get_num_threads()} threads (clips/s)")
    for variant in VARIANTS:
        pipe, alone = results.get((variant, "pipeline")), results.get((variant, "step alone"))
        if pipe and alone:
            print(
                f"  {variant:44s} pipeline {pipe:7.2f}  step alone {alone:7.2f}  "
                f"pipeline/step {pipe / alone:.2f}"
            )
    base = results.get(("fp32 NCDHW", "step alone"))
    default = results.get((next(iter(VARIANTS)), "step alone"))
    if base and default:
        print(f"  default / fp32 NCDHW (step alone): {default / base:.2f}x")

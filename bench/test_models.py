"""Throughput of resnet18 on [8, 3, 16, 112, 112] clips (pytest-benchmark; not part of the test run).

Variants (eager):
  fp32_ncdhw     float32, default contiguous layout (the baseline)
  fp32_cl        float32, model and input in torch.channels_last_3d
  amp_cl         autocast (bfloat16 on CPU, float16 on CUDA) + channels_last_3d
The default training setup is channels_last_3d with autocast where it pays (``amp_pays_off``: CUDA, or a CPU
with AMX), i.e. amp_cl there and fp32_cl on a CPU without AMX; the report names it and its speed-up.
and with torch.compile (marked ``compile``, 45 s or more of compilation each; deselect: -m "not compile"):
  amp_cl_compiled          the default variant compiled (training and inference)
  amp_cl_compiled_frozen   inference only, compiled with inductor weight freezing

Each test times its variants interleaved (round robin, median of ROUNDS after a warm-up) next to the
fp32_ncdhw baseline, so ratios are measured side by side even while other jobs load the machine. extra_info
holds clips/s, the ratio to fp32_ncdhw, and the process CPU seconds per step (less sensitive to other jobs on
a shared CPU than wall time). pytest-benchmark's own statistics are for the default variant.
Run: .venv/bin/python -m pytest bench/test_models.py -q -s --benchmark-columns=median,rounds
     [-m "not compile"]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from vidfast.engine.amp import amp_pays_off
from vidfast.models import create_model

SHAPE = (8, 3, 16, 112, 112)
CLASSES = 400
ROUNDS = 3
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
        ],
    ),
]


def _amp_dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device == "cpu" else torch.float16


def _make_step(variant: str, mode: str, device: str) -> Callable[[], None]:
    """One forward (inference) or train step (forward, backward, SGD update) of a fresh resnet18."""
    torch.manual_seed(0)
    channels_last = variant != "fp32_ncdhw"
    amp = variant.startswith("amp")
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = create_model("resnet18", num_classes=CLASSES).to(device=device, memory_format=fmt)
    x = torch.randn(SHAPE, device=device).contiguous(memory_format=fmt)
    target = torch.randint(0, CLASSES, (SHAPE[0],), device=device)
    if mode == "forward":
        model.eval()
        net = torch.compile(model) if "compiled" in variant else model
        frozen = variant.endswith("frozen")

        def step() -> None:
            # compilation happens at the first call: freezing applies to this variant's graph only
            with (
                torch._inductor.config.patch(freezing=frozen),
                torch.inference_mode(),
                torch.autocast(device, dtype=_amp_dtype(device), enabled=amp),
            ):
                net(x)

        return step
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device, enabled=amp and device == "cuda")
    net = torch.compile(model) if "compiled" in variant else model

    def step() -> None:
        with torch.autocast(device, dtype=_amp_dtype(device), enabled=amp):
            loss = F.cross_entropy(net(x), target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _interleaved(steps: dict[str, Callable[[], None]], device: str) -> dict[str, tuple[float, float]]:
    """Median wall seconds and median process-CPU seconds per step of each variant, timed round robin."""
    for step in steps.values():  # warm-up (and compilation)
        step()
        step()
    _sync(device)
    wall: dict[str, list[float]] = {k: [] for k in steps}
    cpu: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(ROUNDS):
        for name, step in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            _sync(device)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in steps}


def _default_variant(device: str) -> str:
    """The eager variant that ``vidfast train`` uses by default on ``device``."""
    return "amp_cl" if amp_pays_off(torch.device(device)) else "fp32_cl"


def _report(benchmark, results: dict[str, tuple[float, float]], mode: str, device: str) -> None:
    base_wall, base_cpu = results["fp32_ncdhw"]
    print(f"\nresnet18 {mode} on {device}, clips {list(SHAPE)}:")
    for name, (wall, cpu) in results.items():
        clips = SHAPE[0] / wall
        benchmark.extra_info[f"{name}_clips_per_s"] = round(clips, 2)
        benchmark.extra_info[f"{name}_speedup_vs_fp32_ncdhw"] = round(base_wall / wall, 3)
        benchmark.extra_info[f"{name}_cpu_s_per_step"] = round(cpu, 3)
        print(
            f"  {name:24s} {clips:8.2f} clips/s  x{base_wall / wall:5.2f} wall  "
            f"x{base_cpu / cpu:5.2f} cpu-time  ({wall:.3f} s/step)"
        )
    default = _default_variant(device)
    if default in results:
        speedup = base_wall / results[default][0]
        benchmark.extra_info["default_variant"] = default
        print(f"  default variant on {device}: {default}, x{speedup:.2f} fp32_ncdhw (training goal: 2.5x)")


@pytest.mark.parametrize("mode", ["forward", "train"])
@pytest.mark.parametrize("device", DEVICES)
def test_resnet18_eager(benchmark, mode: str, device: str) -> None:
    variants = ("fp32_ncdhw", "fp32_cl", "amp_cl")
    steps = {v: _make_step(v, mode, device) for v in variants}
    results = _interleaved(steps, device)
    _report(benchmark, results, mode, device)
    benchmark.pedantic(steps[_default_variant(device)], rounds=ROUNDS, iterations=1)


@pytest.mark.compile
@pytest.mark.parametrize("mode", ["forward", "train"])
@pytest.mark.parametrize("device", DEVICES)
def test_resnet18_compiled(benchmark, mode: str, device: str) -> None:
    variants = ["fp32_ncdhw", "amp_cl", "amp_cl_compiled"]
    if mode == "forward":
        variants.append("amp_cl_compiled_frozen")
    torch._dynamo.reset()
    steps = {v: _make_step(v, mode, device) for v in variants}
    results = _interleaved(steps, device)
    _report(benchmark, results, mode, device)
    benchmark.pedantic(steps["amp_cl_compiled"], rounds=ROUNDS, iterations=1)

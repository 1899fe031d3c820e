"""Precision variants side by side, and what the default (``--amp`` unset: measured) chooses.

Workloads: resnet18 on [8, 3, 16, 112, 112] clips and a small one, resnet10 x0.25 on [8, 3, 8, 64, 64];
modes: a training step (forward, backward, SGD update) and a forward pass. Rows (``vidfast.bench``):

  fp32 NCDHW               float32, default contiguous layout (the baseline)
  fp32 + channels_last     float32, model and input in torch.channels_last_3d
  bf16 + channels_last     autocast bf16 (and fp16 on CUDA), channels_last_3d, every layer in that dtype
                           ("unsafe" where layers fail the per-layer check: not a candidate, not compared)
  auto: <choice>           what ``vidfast.runtime.plan_precision`` decided for this workload (its per-layer
                           check and its own short measurement; failing layers in fp32)

All rows are timed round robin (median of ROUNDS after a warm-up): ratios measured side by side even
on a busy machine. Goal: auto within 5 % of the fastest safe variant. extra_info holds clips/s and ratios.
With torch.compile (marked ``compile``; 45 s or more of compilation each; deselect: -m "not compile"):
  amp_cl_compiled          bf16/fp16 autocast + channels_last, compiled (training and inference)
  amp_cl_compiled_frozen   inference only, compiled with inductor weight freezing
Run: .venv/bin/python -m pytest bench/test_models.py -q -s -m "not compile"
     (the default's decision is cached in ~/.cache/vidfast; set VIDFAST_CACHE_DIR=$(mktemp -d) to re-measure)
"""

from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch
import torch.nn.functional as F

from vidfast.bench import BenchConfig, precision_rates
from vidfast.engine.config import Geometry
from vidfast.models import create_model
from vidfast.runtime import interleaved_seconds

ROUNDS = 5
WORKLOADS = {
    "resnet18 16x112x112 b8": BenchConfig(Geometry(arch="resnet18", widen_factor=1.0, clip_len=16, size=112,
                                                   batch_size=8)),
    "resnet10 x0.25 8x64x64 b8": BenchConfig(Geometry(arch="resnet10", widen_factor=0.25, clip_len=8, size=64,
                                                      batch_size=8)),
}
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


@pytest.mark.parametrize("mode", ["train", "forward"])
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("device", DEVICES)
def test_precision_variants_and_auto(benchmark, device: str, workload: str, mode: str) -> None:
    workload_cfg = WORKLOADS[workload]
    geometry = dataclasses.replace(workload_cfg.geometry, device=device)
    cfg = dataclasses.replace(workload_cfg, geometry=geometry, rounds=ROUNDS)
    rates = precision_rates(cfg, torch.device(device), cfg.geometry.batch_size, train=mode == "train")
    base = rates[0][1]
    fastest = max(rate for name, rate, note in rates if not name.startswith("auto") and "unsafe" not in note)
    print(f"\n{workload} {mode} on {device} ({torch.backends.cpu.get_cpu_capability()}):")
    for name, rate, note in rates:
        print(f"  {name:32s} {rate:8.2f} clips/s  x{rate / base:5.2f} fp32 NCDHW  "
              f"x{rate / fastest:5.2f} fastest safe  {note}")
        benchmark.extra_info[f"{name}_clips_per_s"] = round(rate, 2)
        benchmark.extra_info[f"{name}_vs_fp32_ncdhw"] = round(rate / base, 3)
    auto_name, auto_rate, _ = rates[-1]
    benchmark.extra_info["auto_vs_fastest"] = round(auto_rate / fastest, 3)
    print(f"  auto ({auto_name}) at x{auto_rate / fastest:.2f} of the fastest safe variant (goal: >= 0.95)")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def _make_step(variant: str, mode: str, device: str):
    """One forward (inference) or train step (forward, backward, SGD update) of a fresh resnet18, compiled."""
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    fmt = torch.channels_last_3d
    shape = (8, 3, 16, 112, 112)
    model = create_model("resnet18", num_classes=400).to(device=device, memory_format=fmt)
    x = torch.randn(shape, device=device).contiguous(memory_format=fmt)
    target = torch.randint(0, 400, (shape[0],), device=device)
    net = torch.compile(model)
    if mode == "forward":
        model.eval()
        frozen = variant.endswith("frozen")

        def forward() -> None:
            with (torch._inductor.config.patch(freezing=frozen), torch.inference_mode(),
                  torch.autocast(device, dtype=dtype)):
                net(x)

        return forward
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device, enabled=device == "cuda")

    def step() -> None:
        with torch.autocast(device, dtype=dtype):
            loss = F.cross_entropy(net(x), target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


@pytest.mark.compile
@pytest.mark.parametrize("mode", ["forward", "train"])
@pytest.mark.parametrize("device", DEVICES)
def test_resnet18_compiled(benchmark, mode: str, device: str) -> None:
    variants = ["amp_cl_compiled"] + (["amp_cl_compiled_frozen"] if mode == "forward" else [])
    torch._dynamo.reset()
    steps = {v: _make_step(v, mode, device) for v in variants}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    seconds = interleaved_seconds(steps, rounds=3, warmup=2, sync=sync)
    for name, values in seconds.items():
        benchmark.extra_info[f"{name}_clips_per_s"] = round(8 / statistics.median(values), 2)
        print(f"\nresnet18 {mode} {name} on {device}: {8 / statistics.median(values):.2f} clips/s")
    benchmark.pedantic(steps["amp_cl_compiled"], rounds=3, iterations=1)

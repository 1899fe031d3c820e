"""CUDA benchmark of one training step: resnet18 on 16x112 clips, channels_last_3d, fp32 vs bf16 vs fp16
autocast.

Marked ``cuda`` (skipped without a GPU); run by ``bench/gpu_verify.sh``. The three precisions are timed
interleaved in one process (round robin over ROUNDS rounds after WARMUP untimed steps each, CUDA synchronised
around every step), on the same model, batch and optimizer kind (SGD with momentum; fp16 with a GradScaler),
so their ratios hold even on a shared device. Printed and put into ``extra_info``: median ms per step, clips/s
and the ratio to fp32 per round (median).
Run: python -m pytest bench/test_gpu.py -q -s -m cuda
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from torch import nn

from vidfast.models import create_model

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

BATCH, CLIP = 16, (3, 16, 112, 112)
WARMUP, ROUNDS = 3, 15
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_MEASURED: dict[str, dict] = {}


def _step_fn(dtype: torch.dtype | None):
    """One SGD training step of a fresh resnet18 (400 classes) in ``dtype`` autocast (None: fp32)."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=400).to(device, memory_format=torch.channels_last_3d)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    x = torch.randn(BATCH, *CLIP, device=device).contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 400, (BATCH,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step


def _side_by_side() -> dict:
    if not _MEASURED:
        steps = {name: _step_fn(dtype) for name, dtype in PRECISIONS.items() if
                 dtype != torch.bfloat16 or torch.cuda.is_bf16_supported(including_emulation=False)}
        for step in steps.values():
            for _ in range(WARMUP):
                step()
        torch.cuda.synchronize()
        times: dict[str, list[float]] = {name: [] for name in steps}
        names = list(steps)
        for r in range(ROUNDS):
            for name in names[r % len(names):] + names[:r % len(names)]:
                torch.cuda.synchronize()
                start = time.perf_counter()
                steps[name]()
                torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
        print(f"\n[train step, resnet18 batch {BATCH} x {list(CLIP)}, channels_last_3d, "
              f"{torch.cuda.get_device_name()}]")
        for name, ts in times.items():
            ratio = statistics.median(f / t for f, t in zip(times["fp32"], ts, strict=True))
            _MEASURED[name] = {"median_ms": statistics.median(ts) * 1e3,
                               "clips_per_s": BATCH / statistics.median(ts), "speedup_vs_fp32": ratio}
            m = _MEASURED[name]
            print(f"  {name:5s} {m['median_ms']:8.1f} ms/step  {m['clips_per_s']:8.1f} clips/s  "
                  f"{ratio:5.2f}x fp32 (median per round, {ROUNDS} rounds)")
    return _MEASURED


@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_train_step_cuda(benchmark, precision):
    measured = _side_by_side()
    if precision not in measured:
        pytest.skip(f"{torch.cuda.get_device_name()} has no native bf16")
    step = _step_fn(PRECISIONS[precision])

    def run() -> None:
        step()
        torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=5, warmup_rounds=2)
    benchmark.extra_info.update({k: round(v, 3) for k, v in measured[precision].items()})

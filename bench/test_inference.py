"""Inference throughput of the deployment paths (pytest-benchmark; not part of the test run).

Model: 3D ResNet-18, 400 classes, clip 16x112x112, batches of 1 and 8 clips. Paths, on the same inputs:
  torch eager fp32            the plain PyTorch model (the baseline of every ratio)
  torch eager bf16 cl         bf16 autocast + channels_last_3d, eager
  torch compiled fp32 cl      torch.compile with inductor freezing (weights folded, oneDNN prepacked), fp32
  torch compiled bf16 cl      the same under bf16 autocast
  onnxruntime CPU             vidfast.export -> vidfast.deploy.OnnxClassifier on the CPU provider
  onnxruntime CUDA / TensorRT the same on GPU providers (only where onnxruntime-gpu and a GPU are present)

Besides each path's own pytest-benchmark timing, all paths are timed interleaved (round robin, median of
ROUNDS) so that their ratios to eager fp32 are measured side by side even when other jobs load the machine;
the ratios go into ``extra_info`` and the table is printed.
Run: .venv/bin/python -m pytest bench/test_inference.py -q -s --benchmark-columns=median,rounds
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from vidfast.deploy import OnnxClassifier, available_providers
from vidfast.export import export_onnx
from vidfast.models import create_model

CLIP = (16, 112, 112)
BATCHES = (1, 8)
ROUNDS = 5
BASELINE = "torch eager fp32"
#: speed-up over eager fp32 the fastest deployment path should reach (issue 6)
GOALS = {1: 3.0, 8: 1.5}
GPU_PROVIDERS = {"onnxruntime CUDA": "cuda", "onnxruntime TensorRT": "tensorrt"}
PATHS = (BASELINE, "torch eager bf16 cl", "torch compiled fp32 cl", "torch compiled bf16 cl",
         "onnxruntime CPU", *GPU_PROVIDERS)
_ORT_NAMES = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _gpu_skip(path: str) -> str | None:
    provider = GPU_PROVIDERS.get(path)
    if provider is None:
        return None
    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    if _ORT_NAMES[provider] not in available_providers():
        return f"onnxruntime has no {_ORT_NAMES[provider]} (install onnxruntime-gpu)"
    return None


def _torch_path(model: nn.Module, bf16: bool, compiled: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    net = model.to(memory_format=torch.channels_last_3d)
    if compiled:
        net = torch.compile(net, dynamic=False)  # one static graph per batch size

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return net(x)

    return run


class _Paths:
    """Builds every path once (exports, compiles) and times them side by side per batch size."""

    def __init__(self, workdir: Path) -> None:
        torch.manual_seed(0)
        self.model = create_model("resnet18", num_classes=400).eval()
        self.onnx = workdir / "resnet18.onnx"
        export_onnx(self.model, self.onnx, clip=CLIP)
        self.runners: dict[str, Callable[[torch.Tensor], object]] = {}
        self.measured: dict[int, dict[str, float]] = {}

    def runner(self, path: str) -> Callable[[torch.Tensor], object]:
        if path not in self.runners:
            self.runners[path] = self._build(path)
        return self.runners[path]

    def _build(self, path: str) -> Callable[[torch.Tensor], object]:
        import copy

        if path == BASELINE:
            def eager(x: torch.Tensor) -> torch.Tensor:
                with torch.inference_mode():
                    return self.model(x)
            return eager
        if path.startswith("torch"):
            return _torch_path(copy.deepcopy(self.model), bf16="bf16" in path, compiled="compiled" in path)
        provider = GPU_PROVIDERS.get(path, "cpu")
        return OnnxClassifier(self.onnx, providers=provider).predict

    def available(self) -> list[str]:
        return [p for p in PATHS if _gpu_skip(p) is None]

    def side_by_side(self, batch: int) -> dict[str, float]:
        """Median seconds per call of every available path at ``batch``, timed round robin."""
        if batch not in self.measured:
            x = torch.randn(batch, 3, *CLIP, generator=torch.Generator().manual_seed(batch))
            median = round_robin_medians({p: self.runner(p) for p in self.available()}, x)
            self.measured[batch] = median
            print(f"\n[resnet18 {'x'.join(map(str, CLIP))} batch {batch}] threads={torch.get_num_threads()}")
            for path, seconds in median.items():
                ratio = median[BASELINE] / seconds
                print(f"  {path:26s} {batch / seconds:8.2f} clips/s  {ratio:5.2f}x eager fp32")
            fastest = min(median, key=median.get)
            speedup = median[BASELINE] / median[fastest]
            print(f"  fastest: {fastest}, {speedup:.2f}x (goal: >= {GOALS[batch]}x)")
        return self.measured[batch]


def round_robin_medians(runners: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor,
                        rounds: int = ROUNDS) -> dict[str, float]:
    """Median seconds per call of each runner on ``x``: two warm-up calls each (compiles with freezing,
    onnxruntime arena, oneDNN primitives), then ``rounds`` rounds calling every runner once in turn, so that
    load from other jobs falls on all of them alike."""
    for run in runners.values():
        with _freezing():
            run(x)
            run(x)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


@contextlib.contextmanager
def _freezing():
    import torch._inductor.config as inductor_config

    with inductor_config.patch(freezing=True):
        yield


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> _Paths:
    return _Paths(tmp_path_factory.mktemp("inference"))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("path", PATHS)
def test_inference(benchmark, paths: _Paths, path: str, batch: int) -> None:
    reason = _gpu_skip(path)
    if reason:
        pytest.skip(reason)
    median = paths.side_by_side(batch)
    x = torch.randn(batch, 3, *CLIP)
    run = paths.runner(path)
    benchmark.pedantic(lambda: run(x), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update({
        "clips_per_s_side_by_side": round(batch / median[path], 3),
        "speedup_vs_eager_fp32": round(median[BASELINE] / median[path], 3),
        "side_by_side_median_ms": {k: round(v * 1e3, 2) for k, v in median.items()},
    })

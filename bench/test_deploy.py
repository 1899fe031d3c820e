"""Deployment runtimes side by side: PyTorch, onnxruntime and OpenVINO, fp32 and int8 (pytest-benchmark; not
part of the test run).

Models: "r3d_18" (3D ResNet-18, 400 classes, clip 16x112x112, the size of torchvision's r3d_18) and "demo"
(``vidfast demo``'s network: ResNet-18 at width 0.25, 6 classes, clip 16x48x48); batches of 1 and 8 clips.
Paths, on the same inputs and, for each runtime, the same model file:
  torch eager fp32            the plain PyTorch model (the baseline of the torch ratios)
  torch compiled fp32 cl      torch.compile with inductor freezing, channels_last_3d
  onnxruntime fp32            the fp32 export on onnxruntime's CPU provider (the baseline of the int8 ratios)
  onnxruntime int8            ``export --int8``'s quantisation (the layout it measures fastest) on onnxruntime
  OpenVINO fp32 / int8        the same two files read by the openvino runtime (skipped where not installed)
The int8 file is calibrated on random clips here: speed does not depend on the values (accuracy is measured
by ``vidfast eval --onnx`` on labelled data, see the README). All paths of one model and batch are timed
interleaved (round robin, median of ROUNDS) so that their ratios hold when other jobs load the machine.
Run: .venv/bin/python -m pytest bench/test_deploy.py -q -s --benchmark-columns=median,rounds
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_inference import _torch_path, round_robin_medians

from vidfast.deploy import OnnxClassifier, read_metadata
from vidfast.deploy.metadata import write_metadata
from vidfast.deploy.openvino import openvino_available
from vidfast.export import export_onnx
from vidfast.export.quantize import quantize_int8
from vidfast.models import create_model

MODELS = {
    "r3d_18": ({"num_classes": 400}, (16, 112, 112)),
    "demo": ({"num_classes": 6, "widen_factor": 0.25}, (16, 48, 48)),
}
BATCHES = (1, 8)
ROUNDS = 5
CALIBRATION_CLIPS = 8
OPENVINO_PATHS = ("OpenVINO fp32", "OpenVINO int8")
PATHS = ("torch eager fp32", "torch compiled fp32 cl", "onnxruntime fp32", "onnxruntime int8",
         *OPENVINO_PATHS)


class _Model:
    """One model's paths, built once (export, quantisation, compilation), timed side by side per batch."""

    def __init__(self, name: str, workdir: Path) -> None:
        import onnx

        kwargs, self.clip = MODELS[name]
        torch.manual_seed(0)
        self.model = create_model("resnet18", **kwargs).eval()
        self.fp32 = workdir / f"{name}_fp32.onnx"
        export_onnx(self.model, self.fp32, clip=self.clip)
        rng = np.random.default_rng(0)
        clips = rng.standard_normal((CALIBRATION_CLIPS, 3, *self.clip), dtype=np.float32)
        int8, self.quantization = quantize_int8(onnx.load(str(self.fp32)), clips)
        write_metadata(int8, replace(read_metadata(self.fp32), precision="int8"))
        self.int8 = workdir / f"{name}_int8.onnx"
        onnx.save_model(int8, str(self.int8))
        self.name = name
        self.runners: dict[str, Callable[[torch.Tensor], object]] = {}
        self.measured: dict[int, dict[str, float]] = {}

    def runner(self, path: str) -> Callable[[torch.Tensor], object]:
        if path not in self.runners:
            self.runners[path] = self._build(path)
        return self.runners[path]

    def _build(self, path: str) -> Callable[[torch.Tensor], object]:
        if path == "torch eager fp32":
            def eager(x: torch.Tensor) -> torch.Tensor:
                with torch.inference_mode():
                    return self.model(x)
            return eager
        if path.startswith("torch"):
            return _torch_path(copy.deepcopy(self.model), bf16=False, compiled=True)
        runtime = "openvino" if path.startswith("OpenVINO") else "cpu"
        return OnnxClassifier(self.int8 if path.endswith("int8") else self.fp32, providers=runtime).predict

    def side_by_side(self, batch: int) -> dict[str, float]:
        """Median seconds per call of every available path at ``batch``, timed round robin."""
        if batch in self.measured:
            return self.measured[batch]
        x = torch.randn(batch, 3, *self.clip, generator=torch.Generator().manual_seed(batch))
        paths = [p for p in PATHS if openvino_available() or p not in OPENVINO_PATHS]
        median = round_robin_medians({p: self.runner(p) for p in paths}, x, ROUNDS)
        self.measured[batch] = median
        print(f"\n[{self.name} {'x'.join(map(str, self.clip))} batch {batch}] "
              f"threads={torch.get_num_threads()}, int8 layout {self.quantization.chosen}")
        for path, seconds in median.items():
            eager, ort = median["torch eager fp32"] / seconds, median["onnxruntime fp32"] / seconds
            print(f"  {path:24s} {batch / seconds:8.2f} clips/s  {eager:5.2f}x torch eager fp32  "
                  f"{ort:5.2f}x onnxruntime fp32")
        return median


_MODELS: dict[str, _Model] = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy_bench")


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("model", list(MODELS))
def test_deploy_runtime(benchmark, workdir: Path, model: str, path: str, batch: int) -> None:
    if path in OPENVINO_PATHS and not openvino_available():
        pytest.skip("the openvino runtime is not installed (pip install 'vidfast[openvino]')")
    if model not in _MODELS:
        _MODELS[model] = _Model(model, workdir)
    paths = _MODELS[model]
    median = paths.side_by_side(batch)
    x = torch.randn(batch, 3, *paths.clip)
    run = paths.runner(path)
    benchmark.pedantic(lambda: run(x), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update({
        "clips_per_s_side_by_side": round(batch / median[path], 3),
        "vs_torch_eager_fp32": round(median["torch eager fp32"] / median[path], 3),
        "vs_onnxruntime_fp32": round(median["onnxruntime fp32"] / median[path], 3),
        "int8_layout": paths.quantization.chosen,
    })

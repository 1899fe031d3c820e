"""When mixed precision pays, and a guard against wrong bf16 convolution gradients on CPU.

``amp_pays_off``: on a CPU, bf16 autocast speeds 3D convolutions up only with a bf16 matrix unit (Intel
AMX). Measured here (2-core AVX-512 CPU with avx512_bf16 and no AMX, oneDNN 3.12): a bf16 2048^2 GEMM runs at
166 GFLOP/s against 297 in fp32, a bf16 64->64 3x3x3 convolution takes 1.8x the fp32 time, and a resnet18
training step under bf16 + channels_last_3d takes 1.33x the fp32 NCDHW one.

Measured with torch 2.13 (CPU build, oneDNN 3.12): under bf16, the *weight* gradient of a ``Conv3d`` whose
input is shallower than its kernel in time (input depth ``T`` with ``2 <= T < kernel_t``, e.g. depth 2 under
a 3x3x3 kernel, stride 1) is garbage -- relative error ~1, sometimes 1e36 or NaN -- and some such shapes crash
the process; forward pass and input gradient are right. This hits ``layer3`` of a 3D ResNet-18 on 16-frame
clips and ``layer2`` on 8-frame clips. Running the kernel to test it is unsafe, so ``bf16_unsafe_convs`` finds
these layers (any stride, to be safe) from their input shapes for a given clip size, and ``run_in_fp32`` makes
them leave autocast: training keeps bf16 everywhere else and stays correct.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def cpu_has_bf16_matrix_unit() -> bool:
    """Whether this CPU has AMX tiles (enabled by the OS): the unit that makes bf16 faster than fp32."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


def amp_pays_off(device: torch.device) -> bool:
    """The default for autocast on ``device``: always on CUDA; on a CPU only with a bf16 matrix unit."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16_matrix_unit())


def autocast_dtype(
    device: torch.device, enabled: bool | None = None, choice: str = "auto"
) -> torch.dtype | None:
    """The autocast dtype for training on ``device``, None for float32. ``enabled`` None: where
    :func:`amp_pays_off`. ``choice`` "auto": bf16 on CPU and on GPUs that support it, else fp16."""
    if not (amp_pays_off(device) if enabled is None else enabled):
        return None
    if choice == "auto":
        choice = "bf16" if device.type == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    if choice == "fp16" and device.type == "cpu":
        raise ValueError("runtime.amp_dtype fp16 needs CUDA; use bf16 (or auto) on CPU")
    return torch.bfloat16 if choice == "bf16" else torch.float16


def bf16_unsafe_convs(model: nn.Module, example: Tensor) -> list[str]:
    """Names of the ``Conv3d`` layers of ``model`` whose input, for inputs like ``example`` (one sample, e.g.
    ``Tensor[1, 3, T, H, W]``), is shallower in time than the kernel (``2 <= depth < kernel_t``)."""
    unsafe: dict[str, None] = {}

    def record(name: str) -> Any:
        def hook(module: nn.Conv3d, args: tuple[Tensor, ...], output: Tensor) -> None:
            if 2 <= args[0].shape[2] < module.kernel_size[0]:
                unsafe[name] = None

        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv3d)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return list(unsafe)


def run_in_fp32(model: nn.Module, names: list[str]) -> None:
    """Make the named submodules compute outside autocast in float32 (inputs upcast, weights unchanged)."""
    modules = dict(model.named_modules())
    for name in names:
        module = modules[name]
        inner = module.forward

        def forward(x: Tensor, _inner: Any = inner) -> Tensor:
            with torch.autocast(x.device.type, enabled=False):
                return _inner(x.float())

        module.forward = forward

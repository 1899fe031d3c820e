"""Guard against wrong bf16 convolution gradients on CPU.

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

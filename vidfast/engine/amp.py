"""Guard against wrong bf16 convolution gradients on CPU.

Measured with torch 2.13 (CPU build, oneDNN 3.12): under bf16 ``Conv3d`` the *weight* gradient is garbage
(relative error ~1, sometimes 1e36 or NaN) whenever the layer's input has depth 2 with a 3x3x3 kernel and
padding 1 -- e.g. ``layer3`` of a 3D ResNet on 16-frame clips, ``layer2`` on 8-frame clips -- while the
forward pass and the input gradient are right. ``bf16_broken_convs`` finds such layers of a model for its
input size by comparing each distinct convolution's bf16 weight gradient with fp32 on random data;
``run_in_fp32`` makes those layers leave autocast, so training keeps bf16 elsewhere and stays correct.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_TOLERANCE = 0.05  # relative error of bf16 vs fp32 weight gradients; correct kernels stay ~2e-3


def _conv_key(conv: nn.Conv3d, x: Tensor) -> tuple[Any, ...]:
    return (
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        tuple(x.shape[2:]),
    )


def _bf16_weight_grad_error(conv: nn.Conv3d, spatial: tuple[int, ...], generator: torch.Generator) -> float:
    """Relative max error of the bf16 weight gradient of ``conv``'s configuration on a random batch of 2."""
    x = torch.randn(2, conv.in_channels, *spatial, generator=generator).bfloat16()
    w = (torch.randn(conv.weight.shape, generator=generator) * 0.05).bfloat16()
    kwargs = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    grads = []
    for dtype in (torch.bfloat16, torch.float32):
        weight = w.to(dtype).detach().requires_grad_()
        y = F.conv3d(x.to(dtype), weight, **kwargs)
        if len(grads) == 0:
            grad_out = torch.randn(y.shape, generator=generator).bfloat16()
        y.backward(grad_out.to(dtype))
        grads.append(weight.grad.float())
    bf16, fp32 = grads
    err = (bf16 - fp32).abs().max() / fp32.abs().max().clamp_min(1e-12)
    return float(err) if torch.isfinite(err) else float("inf")


def bf16_broken_convs(model: nn.Module, example: Tensor) -> list[str]:
    """Names of the ``Conv3d`` layers of ``model`` whose bf16 weight gradient is wrong on this CPU build for
    inputs like ``example`` (one sample, e.g. ``Tensor[1, 3, T, H, W]``)."""
    seen: dict[str, tuple[nn.Conv3d, tuple[Any, ...]]] = {}

    def record(name: str) -> Any:
        def hook(module: nn.Conv3d, args: tuple[Tensor, ...], output: Tensor) -> None:
            seen.setdefault(name, (module, _conv_key(module, args[0])))

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
    generator = torch.Generator().manual_seed(0)
    verdict: dict[tuple[Any, ...], bool] = {}
    for conv, key in seen.values():
        if key not in verdict:
            verdict[key] = _bf16_weight_grad_error(conv, key[-1], generator) > _TOLERANCE
    return [name for name, (_, key) in seen.items() if verdict[key]]


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

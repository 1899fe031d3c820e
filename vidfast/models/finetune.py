"""Fine-tuning parameter groups: freeze everything before a named top-level module (``ft_begin_module``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from vidfast.models.weights import WRAPPER_PREFIXES, strip_prefixes

_CONTAINER_PREFIXES = (*WRAPPER_PREFIXES, "features.")


def top_module_name(param_name: str) -> str:
    """The top-level module a parameter belongs to, looking through wrappers and DenseNet's ``features``:
    ``"layer4.0.conv1.weight" -> "layer4"``,
    ``"features.denseblock3.denselayer1.conv1.weight" -> "denseblock3"``."""
    return strip_prefixes(param_name, _CONTAINER_PREFIXES).split(".", 1)[0]


def finetune_param_groups(
    model: nn.Module, begin_module: str | None = "layer4", *, lr: float, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Freeze (``requires_grad=False``) every parameter registered before ``begin_module`` and return the
    optimizer parameter groups of the rest: ``[{"params": [...], "lr": lr, "weight_decay": weight_decay}]``.

    ``begin_module`` is a top-level module name in registration order ("conv1", "layer3", "layer4", "fc"
    for ResNets; "denseblock4", "norm5", "classifier" for DenseNet; "conv5a", "fc6" for C3D). ``None`` or ""
    trains everything.
    """
    params = list(model.named_parameters())
    names = list(dict.fromkeys(top_module_name(n) for n, _ in params))
    if begin_module and begin_module not in names:
        raise ValueError(f"begin_module {begin_module!r} is not a module of the model; choose one of {names}")
    trainable = []
    started = not begin_module
    for name, param in params:
        started = started or top_module_name(name) == begin_module
        param.requires_grad_(started)
        if started:
            trainable.append(param)
    return [{"params": trainable, "lr": lr, "weight_decay": weight_decay}]

"""Device resolution shared by training, evaluation and prediction (imports only ``vidfast.errors``)."""

from __future__ import annotations

import torch

from vidfast.errors import VidfastError


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available else cpu; "cuda" without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VidfastError(
            f"--device {name} requested but no CUDA GPU is available (use --device cpu or auto)"
        )
    return torch.device(name)

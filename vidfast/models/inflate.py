"""2D -> 3D inflation (I3D style): start a 3D ResNet from the weights of a torchvision-format 2D ResNet."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from vidfast.errors import CheckpointError
from vidfast.models.weights import extract_state_dict


def inflate_kernel(weight_2d: Tensor, t: int, time_dim: int) -> Tensor:
    """``Tensor[O, I, kh, kw] -> Tensor[O, I, t, kh, kw]``: the 2D kernel repeated over the
    ``min(time_dim, t)`` central time steps and divided by that count (zeros elsewhere), so a clip of
    identical frames gives the 2D response away from the clip's temporal borders (everywhere when
    ``time_dim=1``)."""
    n = min(time_dim, t)
    start = (t - n) // 2
    out = weight_2d.new_zeros(*weight_2d.shape[:2], t, *weight_2d.shape[2:])
    out[:, :, start : start + n] = (weight_2d / n).unsqueeze(2)
    return out


@torch.no_grad()
def inflate_from_2d(model: nn.Module, state_dict_2d: Mapping[str, Tensor], time_dim: int = 3) -> nn.Module:
    """Fill ``model`` (a 3D ResNet/ResNeXt/Wide-ResNet/DenseNet) from a 2D state dict with the same names
    (torchvision's ``resnet*``/``resnext*``/``wide_resnet*``/``densenet*`` format) and return it.

    Conv kernels are inflated with :func:`inflate_kernel`, BN parameters and statistics are copied; the
    classifier is copied when its shape matches and otherwise left as it is. Any other 3D tensor without a
    2D counterpart of matching shape raises one CheckpointError.
    """
    if time_dim < 1:
        raise ValueError(f"time_dim must be >= 1, got {time_dim}")
    sd2 = extract_state_dict(state_dict_2d)
    target = model.state_dict()
    cls = getattr(model, "classifier_name", "fc") + "."
    new: dict[str, Tensor] = {}
    missing, mismatched = [], []
    for key, ref in target.items():
        if key.endswith("num_batches_tracked"):
            continue
        src = sd2.get(key)
        if src is None:
            missing.append(key)
        elif (
            ref.dim() == 5
            and src.dim() == 4
            and src.shape[:2] == ref.shape[:2]
            and src.shape[2:] == ref.shape[3:]
        ):
            new[key] = inflate_kernel(src, ref.shape[2], time_dim)
        elif src.shape == ref.shape:
            new[key] = src
        elif not key.startswith(cls):
            mismatched.append(f"{key} {list(src.shape)} vs {list(ref.shape)}")
    missing = [k for k in missing if not k.startswith(cls)]
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} key(s) missing from the 2D weights: {', '.join(missing[:5])}")
        if mismatched:
            parts.append(f"{len(mismatched)} incompatible (2D vs 3D): {', '.join(mismatched[:5])}")
        raise CheckpointError("cannot inflate the 2D weights: " + "; ".join(parts))
    model.load_state_dict(new, strict=False)
    return model

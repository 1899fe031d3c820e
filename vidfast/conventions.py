"""Input conventions of pretrained weights: the value scale, mean and std a network was trained with.

A convention says what the network expects from a uint8 frame value ``x`` in 0..255: the value
``v = x / 255 * value_scale`` (``value_scale`` 1: values 0..1; 255: values 0..255), then ``(v - mean) / std``
per channel, ``mean`` and ``std`` in the units of ``v``. Every pipeline in vidfast (``cube_crop``, the
exported graph's preprocessing) computes ``(x / 255 - mean') / std'``; :attr:`Convention.unit_mean` and
:attr:`Convention.unit_std` fold the value scale into those (``mean' = mean / value_scale``, same for std),
so that 0..255 input with mean ``m`` and no std is exactly 0..1 input with mean ``m / 255`` and std
``1 / 255``.

``clip`` is the (T, H, W) clip the weights were trained at, where known; vidfast's models pool adaptively
and run other clip sizes too. This module imports nothing from vidfast, so every layer may use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

Triple = tuple[float, float, float]

KINETICS_MEAN: Triple = (0.4345, 0.4051, 0.3775)
KINETICS_STD: Triple = (0.2768, 0.2713, 0.2737)
ACTIVITYNET_MEAN_255: Triple = (114.7748, 107.7354, 99.4750)
TORCHVISION_MEAN: Triple = (0.43216, 0.394666, 0.37645)
TORCHVISION_STD: Triple = (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)
VALUE_SCALES = (1.0, 255.0)


@dataclass(frozen=True)
class Convention:
    """Value scale, per-channel mean and std (in value units) and the training clip ``(T, H, W)`` if known.

    ``name`` is a preset name, or "custom" for explicit values that match no preset.
    """

    name: str
    value_scale: float
    mean: Triple
    std: Triple
    clip: tuple[int, int, int] | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.value_scale not in VALUE_SCALES:
            raise ValueError(
                f"value scale must be 1 (values 0..1) or 255 (values 0..255), got {self.value_scale}"
            )
        for label, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise ValueError(f"{label} needs 3 finite values, got {list(values)}")
        if min(self.std) <= 0:
            raise ValueError(f"std values must be positive, got {list(self.std)}")

    @property
    def unit_mean(self) -> Triple:
        """The mean for ``(x / 255 - mean) / std`` pipelines (``cube_crop``, in-graph preprocessing)."""
        return tuple(m / self.value_scale for m in self.mean)  # type: ignore[return-value]

    @property
    def unit_std(self) -> Triple:
        """The std for ``(x / 255 - mean) / std`` pipelines."""
        return tuple(s / self.value_scale for s in self.std)  # type: ignore[return-value]

    def same_values(self, other: Convention) -> bool:
        """Whether both normalise identically (names and clips aside)."""
        return (self.value_scale, self.mean, self.std) == (other.value_scale, other.mean, other.std)

    def describe(self) -> str:
        """One line, e.g. ``cvpr2018 (values 0..255, mean 114.775,107.735,99.475, std 1,1,1, trained at
        16x112x112)``."""
        clip = f", trained at {'x'.join(map(str, self.clip))}" if self.clip else ""
        values = f"values 0..{self.value_scale:g}, mean {_fmt(self.mean)}, std {_fmt(self.std)}"
        return f"{self.name} ({values}{clip})"

    def to_data(self) -> dict[str, Any]:
        """The entries a checkpoint's ``data`` section records: ``convention``, ``value_scale``, ``mean``,
        ``std`` (mean and std in value units)."""
        return {
            "convention": self.name,
            "value_scale": self.value_scale,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def normalising_affine(mean: Sequence[float], std: Sequence[float]) -> tuple[list[float], list[float]]:
    """``(x / 255 - mean) / std`` of a uint8 value ``x`` as one multiply-add ``x * scale + bias``: per channel
    ``scale = 1 / (255 std)`` and ``bias = -mean / std``, in double (rounded to float32 once, as the native
    kernels do). ``mean``/``std`` are unit values (:attr:`Convention.unit_mean`)."""
    scale = [1.0 / (255.0 * s) for s in std]
    bias = [-m / s for m, s in zip(mean, std, strict=True)]
    return scale, bias


def _fmt(values: Sequence[float]) -> str:
    return ",".join(f"{v:.7g}" for v in values)


PRESETS: dict[str, Convention] = {
    "kinetics": Convention("kinetics", 1.0, KINETICS_MEAN, KINETICS_STD, note="vidfast's default"),
    "cvpr2018": Convention(
        "cvpr2018", 255.0, ACTIVITYNET_MEAN_255, (1.0, 1.0, 1.0), (16, 112, 112),
        note="3D-ResNets-PyTorch 2018 release: values 0..255 minus the ActivityNet mean, no std",
    ),
    "3dr2020": Convention(
        "3dr2020", 1.0, KINETICS_MEAN, KINETICS_STD, (16, 112, 112),
        note="3D-ResNets-PyTorch 2020 code: values 0..1, Kinetics mean and std",
    ),
    "torchvision": Convention(
        "torchvision", 1.0, TORCHVISION_MEAN, TORCHVISION_STD, (16, 112, 112),
        note="torchvision video models: values 0..1; frames resized to 128x171, center crop 112",
    ),
    "imagenet": Convention(
        "imagenet", 1.0, IMAGENET_MEAN, IMAGENET_STD,
        note="torchvision's 2D ImageNet models (inflated with finetune --inflate-from)",
    ),
}
DEFAULT = PRESETS["kinetics"]


def preset(name: str) -> Convention:
    """The named preset; ValueError listing the presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown convention preset {name!r} (known: {', '.join(PRESETS)})") from None


def _named(value_scale: float, mean: Sequence[float], std: Sequence[float]) -> str:
    """The name of the preset with exactly these values, else "custom"."""
    probe = (float(value_scale), tuple(float(v) for v in mean), tuple(float(v) for v in std))
    return next(
        (p.name for p in PRESETS.values() if (p.value_scale, p.mean, p.std) == probe), "custom"
    )


@dataclass(frozen=True)
class Override:
    """What a user asked for on top of a file's convention: a ``preset`` name, then explicit ``mean`` /
    ``std`` / ``value_scale``; ``force`` accepts values that contradict what the file says."""

    preset: str | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    value_scale: float | None = None
    force: bool = False


def resolve(base: Convention = DEFAULT, override: Override = Override()) -> Convention:
    """``base`` <- the override's preset <- its explicit mean / std / value scale.

    Explicit values rename the result (the matching preset, else "custom"). ValueError for an unknown
    preset or bad values.
    """
    conv = preset(override.preset) if override.preset else base
    if override.mean is None and override.std is None and override.value_scale is None:
        return conv
    scale = float(override.value_scale) if override.value_scale is not None else conv.value_scale
    mean = tuple(float(v) for v in override.mean) if override.mean is not None else conv.mean
    std = tuple(float(v) for v in override.std) if override.std is not None else conv.std
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values each, got {list(mean)} and {list(std)}")
    name = _named(scale, mean, std)
    return replace(conv, name=name, value_scale=scale, mean=mean, std=std,  # type: ignore[arg-type]
                   note=conv.note if name == conv.name else "")


def from_data(data: Mapping[str, Any] | None, fallback: Convention = DEFAULT) -> Convention:
    """The convention a checkpoint's ``data`` section records (see :meth:`Convention.to_data`).

    Older vidfast checkpoints record ``mean``/``std`` without ``value_scale``: values 0..1. Missing entries
    come from ``fallback``; the clip is the recorded training clip (``clip_len``, ``size``), if any.
    """
    if not data or ("mean" not in data and "std" not in data and "value_scale" not in data):
        return fallback
    try:
        scale = float(data.get("value_scale", 1.0))
        mean = tuple(float(v) for v in data.get("mean", fallback.mean))
        std = tuple(float(v) for v in data.get("std", fallback.std))
        name = str(data.get("convention") or _named(scale, mean, std))
        conv = Convention(name, scale, mean, std)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the checkpoint records a bad input convention: {exc}") from None
    if "clip_len" in data and isinstance(data.get("size"), int):
        conv = replace(conv, clip=(int(data["clip_len"]), data["size"], data["size"]))
    known = PRESETS.get(name)
    return replace(known, clip=conv.clip) if known is not None and known.same_values(conv) else conv

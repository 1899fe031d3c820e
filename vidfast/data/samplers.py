"""Clip samplers: frame indices (temporal) and crop boxes (spatial) for :func:`vidfast.ops.cube_crop`.

Temporal modes follow Hara et al. (CVPR 2018): ``random`` (training crop of ``clip_len`` frames every ``step``
frames, loop-padded for short videos), ``center``, ``uniform`` (``clips`` evenly spaced clips) and ``sliding``
(consecutive windows covering the whole video, for video-level evaluation). Spatial modes: ``multiscale`` (a
square of side ``scale * short side`` at one of 4 corners or the center, scales ``1, 2^-1/4, ..., 2^-1``),
``random_resized`` (random area and aspect ratio), ``center`` (central square of the short side), each with
an optional horizontal flip; every box is resized to ``size`` x ``size`` by ``cube_crop``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TEMPORAL_MODES = ("random", "center", "uniform", "sliding")
SPATIAL_MODES = ("multiscale", "random_resized", "center")
CORNERS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")


def _default_scales() -> tuple[float, ...]:
    return tuple(2.0 ** (-i / 4) for i in range(5))


@dataclass(frozen=True)
class TemporalConfig:
    """How frames are picked: ``clip_len`` frames ``step`` apart; ``clips`` clips for ``uniform``; window
    ``stride`` (frames between window starts, default one window span) for ``sliding``."""

    mode: str = "random"
    clip_len: int = 16
    step: int = 1
    clips: int = 1
    stride: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in TEMPORAL_MODES:
            raise ValueError(f"sampling must be one of {TEMPORAL_MODES}, got {self.mode!r}")
        for name in ("clip_len", "step", "clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    @property
    def span(self) -> int:
        """Frames covered by one clip: ``(clip_len - 1) * step + 1``."""
        return (self.clip_len - 1) * self.step + 1


@dataclass(frozen=True)
class SpatialConfig:
    """How a crop box is picked in a ``height x width`` frame; the box is resized to ``size`` x ``size``.

    ``scales``/``corners``: multiscale corner crop (scale relative to the short side). ``area``/``ratio``:
    random resized crop (fraction of the frame area, width/height ratio range). ``hflip``: flip with p=0.5.
    """

    mode: str = "multiscale"
    size: int = 112
    scales: tuple[float, ...] = field(default_factory=_default_scales)
    corners: tuple[str, ...] = CORNERS
    area: tuple[float, float] = (0.25, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: bool = True

    def __post_init__(self) -> None:
        if self.mode not in SPATIAL_MODES:
            raise ValueError(f"spatial must be one of {SPATIAL_MODES}, got {self.mode!r}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        if not self.scales or any(not 0 < s <= 1 for s in self.scales):
            raise ValueError(f"scales must be in (0, 1], got {self.scales}")
        bad = [c for c in self.corners if c not in CORNERS]
        if not self.corners or bad:
            raise ValueError(f"corners must be a non-empty subset of {CORNERS}, got {self.corners}")
        if not 0 < self.area[0] <= self.area[1] <= 1 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(
                f"area must satisfy 0 < lo <= hi <= 1 and ratio 0 < lo <= hi, "
                f"got area={self.area} ratio={self.ratio}"
            )


def loop_pad(indices: np.ndarray, length: int) -> np.ndarray:
    """Repeat ``indices`` cyclically to ``length`` entries (the CVPR 2018 code's LoopPadding)."""
    return np.resize(np.asarray(indices, dtype=np.int64), length)


def clip_at(start: int, num_frames: int, cfg: TemporalConfig) -> np.ndarray:
    """Indices ``[clip_len]`` of the clip starting at ``start``: every ``step``-th frame inside the video,
    loop-padded when the video ends first."""
    return loop_pad(np.arange(start, min(start + cfg.span, num_frames), cfg.step), cfg.clip_len)


def clip_starts(num_frames: int, cfg: TemporalConfig, rng: np.random.Generator | None = None) -> np.ndarray:
    """First frame of every clip the temporal mode takes from a ``num_frames`` video (``random`` needs
    rng)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    last = max(num_frames - cfg.span, 0)
    if cfg.mode == "random":
        if rng is None:
            raise ValueError("random temporal sampling needs an rng")
        return np.asarray([rng.integers(0, last + 1)], dtype=np.int64)
    if cfg.mode == "center":
        return np.asarray([last // 2], dtype=np.int64)
    if cfg.mode == "uniform":
        return np.round(np.linspace(0, last, cfg.clips)).astype(np.int64)
    starts = list(range(0, last + 1, cfg.stride or cfg.span))
    if starts[-1] < last:  # one more window so that the last frames are covered too
        starts.append(last)
    return np.asarray(starts, dtype=np.int64)


def num_clips(num_frames: int, cfg: TemporalConfig) -> int:
    """How many clips ``sample_temporal`` returns for a ``num_frames`` video."""
    return 1 if cfg.mode == "random" else len(clip_starts(num_frames, cfg))


def sample_temporal(
    num_frames: int, cfg: TemporalConfig, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Frame indices ``[k, clip_len]`` (int64) of the ``k`` clips of ``cfg.mode``."""
    return np.stack([clip_at(int(s), num_frames, cfg) for s in clip_starts(num_frames, cfg, rng)])


def _corner_box(height: int, width: int, side_h: int, side_w: int, corner: str) -> tuple[int, int, int, int]:
    y = {"top": 0, "bottom": height - side_h}.get(corner.split("_")[0], (height - side_h) // 2)
    x = {"left": 0, "right": width - side_w}.get(corner.split("_")[-1], (width - side_w) // 2)
    return int(y), int(x), int(side_h), int(side_w)


def center_box(height: int, width: int, scale: float = 1.0) -> tuple[int, int, int, int]:
    """Central square box ``(y0, x0, h, w)`` of side ``scale * min(height, width)``."""
    side = max(1, int(min(height, width) * scale))
    return _corner_box(height, width, side, side, "center")


def sample_box(
    height: int, width: int, cfg: SpatialConfig, rng: np.random.Generator | None = None
) -> tuple[tuple[int, int, int, int], bool]:
    """One crop box ``(y0, x0, h, w)`` inside a ``height x width`` frame and whether to flip it."""
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if cfg.mode == "center":
        return center_box(height, width), False
    if rng is None:
        raise ValueError(f"{cfg.mode} spatial sampling needs an rng")
    if cfg.mode == "multiscale":
        scale = cfg.scales[rng.integers(len(cfg.scales))]
        side = max(1, int(min(height, width) * scale))
        box = _corner_box(height, width, side, side, cfg.corners[rng.integers(len(cfg.corners))])
    else:
        box = _random_resized_box(height, width, cfg, rng)
    return box, bool(cfg.hflip and rng.random() < 0.5)


def _random_resized_box(
    height: int, width: int, cfg: SpatialConfig, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """Box of a random area fraction and log-uniform aspect ratio (10 tries, then the central square)."""
    area = height * width
    log_ratio = (math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*cfg.area)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return center_box(height, width)

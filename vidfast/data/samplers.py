"""Clip samplers: frame indices (temporal) and crop boxes (spatial) for :func:`vidfast.ops.cube_crop`.

Temporal modes follow Hara et al. (CVPR 2018): ``random`` (training crop of ``clip_len`` frames every
``frame_step`` frames, loop-padded for short videos), ``center``, ``uniform`` (``clips`` evenly spaced clips)
and ``sliding`` (consecutive windows covering the whole video, for video-level evaluation). Spatial modes:
``multiscale`` (a square of side ``scale * short side`` at one of 4 corners or the center, scales
``1, 2^-1/4, ..., 2^-1``), ``random_resized`` (random area and aspect ratio), ``center`` (central square of
the short side), each with an optional horizontal flip; every box is resized to ``size`` x ``size`` by
``cube_crop``.

Keyframe snapping (``keyframe_snap``, random mode, when the decoder knows the keyframes): a random clip that
starts mid-GOP costs decoding the frames from the keyframe before it, thrown away. With ``keyframe_snap = r``
the drawn start ``s`` moves to one of the keyframes (or the first/last possible start) just below and above
it, ``a <= s <= b``, provided both lie within ``r`` frames: to ``a`` with probability ``(b - s) / (b - a)``,
else to ``b``. The expected start stays ``s`` (randomised rounding), no start moves more than ``r`` frames,
and every start ``0..last`` stays reachable, so the frames a video (and so a class) is seen at keep the
distribution of unsnapped sampling up to a shift of at most ``r`` frames. With a keyframe every ``g``
frames and ``r >= g - 1`` every clip starts on a keyframe or the last start (``vidfast data transcode``
writes ``g = 16``): decoding a 16-frame clip then decodes 16 frames instead of 23.5 on average.
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
    """How frames are picked: ``clip_len`` frames ``frame_step`` apart; ``clips`` clips for ``uniform``;
    window ``stride`` (frames between window starts, default one window span) for ``sliding``;
    ``keyframe_snap``: how far (frames) a ``random`` start may move to a keyframe (0: off; see the module
    docstring)."""

    mode: str = "random"
    clip_len: int = 16
    frame_step: int = 1
    clips: int = 1
    stride: int | None = None
    keyframe_snap: int = 0

    def __post_init__(self) -> None:
        if self.mode not in TEMPORAL_MODES:
            raise ValueError(f"sampling must be one of {TEMPORAL_MODES}, got {self.mode!r}")
        for name in ("clip_len", "frame_step", "clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.keyframe_snap < 0:
            raise ValueError(f"keyframe_snap must be >= 0, got {self.keyframe_snap}")

    @property
    def span(self) -> int:
        """Frames covered by one clip: ``(clip_len - 1) * frame_step + 1``."""
        return (self.clip_len - 1) * self.frame_step + 1


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
    """Indices ``[clip_len]`` of the clip starting at ``start``: every ``frame_step``-th frame inside the
    video, loop-padded when the video ends first."""
    return loop_pad(np.arange(start, min(start + cfg.span, num_frames), cfg.frame_step), cfg.clip_len)


def snap_to_keyframe(start: int, last: int, key_frames: np.ndarray, reach: int,
                     rng: np.random.Generator) -> int:
    """``start`` (in ``[0, last]``) moved to the keyframe or end start just below or above it by randomised
    rounding, when both lie within ``reach`` frames (else ``start`` unchanged); see the module docstring."""
    anchors = np.unique(np.concatenate([[0, last], key_frames[(key_frames > 0) & (key_frames < last)]]))
    k = int(np.searchsorted(anchors, start, side="left"))
    if anchors[k] == start:
        return start
    below, above = int(anchors[k - 1]), int(anchors[k])
    if start - below > reach or above - start > reach:
        return start
    return below if rng.random() * (above - below) < above - start else above


def clip_starts(num_frames: int, cfg: TemporalConfig, rng: np.random.Generator | None = None,
                key_frames: np.ndarray | None = None) -> np.ndarray:
    """First frame of every clip the temporal mode takes from a ``num_frames`` video (``random`` needs
    rng; ``key_frames``: sorted keyframe positions, used by ``keyframe_snap``)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    last = max(num_frames - cfg.span, 0)
    if cfg.mode == "random":
        if rng is None:
            raise ValueError("random temporal sampling needs an rng")
        start = int(rng.integers(0, last + 1))
        if cfg.keyframe_snap and key_frames is not None and last > 0:
            start = snap_to_keyframe(start, last, np.asarray(key_frames, np.int64), cfg.keyframe_snap, rng)
        return np.asarray([start], dtype=np.int64)
    if cfg.mode == "center":
        return np.asarray([last // 2], dtype=np.int64)
    if cfg.mode == "uniform":
        return np.round(np.linspace(0, last, cfg.clips)).astype(np.int64)
    starts = list(range(0, last + 1, cfg.stride or cfg.span))
    if starts[-1] < last:  # one more window so that the last frames are covered too
        starts.append(last)
    return np.asarray(starts, dtype=np.int64)


def num_clips(num_frames: int, cfg: TemporalConfig) -> int:
    """How many clips the temporal mode takes from a ``num_frames`` video."""
    return 1 if cfg.mode == "random" else len(clip_starts(num_frames, cfg))


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

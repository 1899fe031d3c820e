"""Single-clip policies: ``clip_len`` frames every ``frame_step`` (:mod:`vidfast.data.samplers` geometry)
cut to a ``size x size`` square.

One class, :class:`ClipSampling`, covers the four temporal modes; the constructors name the usual ones:
:func:`training_clips` (a random clip, multiscale corner or random-resized crop, flip), :func:`uniform_clips`
(``k`` evenly spaced clips) and :func:`sliding_windows` (windows covering the video), the last two with the
central square crop. The four modes are registered as the clip policies ``random``, ``center``, ``uniform``
and ``sliding`` (:func:`clip_policy` options).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from vidfast.data.policies.base import ClipOutput, ClipParams, ClipPolicy
from vidfast.data.policies.registry import register_policy
from vidfast.data.samplers import (
    TEMPORAL_MODES,
    SpatialConfig,
    TemporalConfig,
    clip_at,
    clip_starts,
    num_clips,
    sample_box,
)


@dataclass(frozen=True)
class ClipSampling(ClipPolicy):
    """Clips of ``temporal`` (mode random / center / uniform / sliding) with boxes of ``spatial``."""

    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    spatial: SpatialConfig = field(default_factory=SpatialConfig)
    output: ClipOutput = field(default_factory=ClipOutput)

    @property
    def out_size(self) -> tuple[int, int, int]:
        return self.temporal.clip_len, self.spatial.size, self.spatial.size

    def num_samples(self, num_frames: int) -> int:
        return num_clips(max(num_frames, 1), self.temporal)

    def plan(self, num_frames: int, height: int, width: int, rng: np.random.Generator | None = None,
             key_frames: np.ndarray | None = None) -> ClipParams:
        """``S`` clips: the temporal mode's starts (drawn first), then one box and flip per clip."""
        starts = clip_starts(num_frames, self.temporal, rng, key_frames)
        frames = np.stack([clip_at(int(s), num_frames, self.temporal) for s in starts])
        boxes, flips = zip(*(sample_box(height, width, self.spatial, rng) for _ in starts), strict=True)
        return ClipParams.plain(frames, np.asarray(boxes), np.asarray(flips))


def training_clips(clip_len: int = 16, frame_step: int = 1, size: int = 112,
                   output: ClipOutput = ClipOutput(), keyframe_snap: int = 0,
                   **spatial: object) -> ClipSampling:
    """A random clip (its start snapped to a keyframe within ``keyframe_snap`` frames, see
    :mod:`vidfast.data.samplers`) with a random crop (``spatial``: :class:`SpatialConfig` fields; multiscale
    by default)."""
    return ClipSampling(TemporalConfig("random", clip_len, frame_step, keyframe_snap=keyframe_snap),
                        SpatialConfig(size=size, **spatial), output)


def _evaluation(temporal: TemporalConfig, size: int, output: ClipOutput) -> ClipSampling:
    return ClipSampling(temporal, SpatialConfig(mode="center", size=size, hflip=False), output)


def uniform_clips(clips: int, clip_len: int = 16, frame_step: int = 1, size: int = 112,
                  output: ClipOutput = ClipOutput()) -> ClipSampling:
    """``clips`` evenly spaced clips, central square crop."""
    return _evaluation(TemporalConfig("uniform", clip_len, frame_step, clips=clips), size, output)


def sliding_windows(clip_len: int = 16, frame_step: int = 1, size: int = 112, stride: int | None = None,
                    output: ClipOutput = ClipOutput()) -> ClipSampling:
    """Windows every ``stride`` frames (default: one span) covering the whole video, central square crop."""
    return _evaluation(TemporalConfig("sliding", clip_len, frame_step, stride=stride), size, output)


def clip_policy(sampling: str = "random", clip_len: int = 16, frame_step: int = 1, size: int = 112,
                clips: int = 1, stride: int | None = None, spatial: str | None = None,
                output: ClipOutput = ClipOutput(), keyframe_snap: int = 0,
                **spatial_options: object) -> ClipSampling:
    """A :class:`ClipSampling` from option names (a run config's ``data.loader``; registered by mode name):
    temporal mode ``sampling`` (``keyframe_snap``: see :mod:`vidfast.data.samplers`), spatial mode
    ``spatial`` (default: multiscale for random clips, else center), ``spatial_options`` any other
    :class:`SpatialConfig` field (``scales``, ``hflip``, ...)."""
    spatial = spatial or ("multiscale" if sampling == "random" else "center")
    if spatial == "center":
        spatial_options.setdefault("hflip", False)
    if "scales" in spatial_options:
        spatial_options["scales"] = tuple(spatial_options["scales"])  # type: ignore[arg-type]
    return ClipSampling(TemporalConfig(sampling, clip_len, frame_step, clips, stride, keyframe_snap),
                        SpatialConfig(mode=spatial, size=size, **spatial_options), output)  # type: ignore[arg-type]


for _mode in TEMPORAL_MODES:
    register_policy(_mode, functools.partial(clip_policy, _mode))

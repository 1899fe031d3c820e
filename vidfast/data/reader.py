"""``read_clips``: the one way clips are read from a video, for training, evaluation and prediction alike.

A :class:`Segment` (a manifest row, or a path with optional start/end seconds) is opened once
(:class:`OpenSegment`); each :class:`~vidfast.data.policies.ClipPolicy` plans its samples over the segment's
frames (:func:`plan_read`), the distinct frames of all of them are decoded once, and the policy cuts them
with ``cube_crop`` (:func:`cut_clips`, directly in its output layout). The loader's workers take the same
two steps (and, when the decode is deferred to a GPU, the loader cuts the batch there with the same
:func:`cut_clips`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vidfast.conventions import KINETICS_MEAN, KINETICS_STD
from vidfast.data.decoders import Video, open_video
from vidfast.data.policies import ClipOutput, ClipParams, ClipPolicy, uniform_clips
from vidfast.errors import DataError


class SegmentLike(Protocol):
    """What a segment needs: a path and optional start/end seconds (a :class:`ManifestRow` is one)."""

    path: str
    start: float | None
    end: float | None


@dataclass(frozen=True)
class Segment:
    """A video (file or frame folder), or its ``[start, end)`` seconds; ``fps`` is used when the decoder
    does not know the rate (a frame folder)."""

    path: str
    start: float | None = None
    end: float | None = None
    fps: float = 0.0


def frame_range(segment: Any, num_frames: int, fps: float) -> tuple[int, int]:
    """``[lo, hi)`` frames of the segment (the whole video when untrimmed); ``fps`` the decoder's rate (0:
    the segment's own ``fps``)."""
    if segment.start is None and segment.end is None:
        return 0, num_frames
    fps = fps or float(getattr(segment, "fps", 0.0) or 0.0)
    if not fps:
        raise DataError(f"{segment.path}: a trimmed segment needs the frame rate, which is unknown")
    lo = min(max(int(round((segment.start or 0.0) * fps)), 0), num_frames - 1)
    hi = num_frames if segment.end is None else min(int(round(segment.end * fps)), num_frames)
    if hi <= lo:
        raise DataError(f"{segment.path}: segment {segment.start}-{segment.end} s holds no frames")
    return lo, hi


def segment_len(row: Any) -> int:
    """Frames of a manifest row's segment, from the manifest's probed ``num_frames`` and ``fps`` (no
    decode)."""
    if row.start is None or not row.fps:
        return int(row.num_frames)
    lo, hi = frame_range(row, int(row.num_frames), float(row.fps))
    return hi - lo


class OpenSegment:
    """An opened segment: ``video`` (the decoder), ``lo`` (its first frame), ``num_frames``, ``height``,
    ``width`` of the segment. A context manager (closes the video)."""

    def __init__(self, segment: SegmentLike, backend: str = "auto", device: str | torch.device = "cpu",
                 deferred: bool = False) -> None:
        self.segment = segment
        self.video: Video = open_video(segment.path, backend, device, deferred)
        try:
            self.lo, hi = frame_range(segment, self.video.num_frames, self.video.fps)
        except DataError:
            self.video.close()
            raise
        self.num_frames = hi - self.lo
        self.height, self.width = self.video.height, self.video.width
        keys = getattr(self.video, "key_frames", None)
        #: keyframe positions inside the segment (None: the decoder does not know them)
        self.key_frames = None if keys is None else keys[(keys >= self.lo) & (keys < hi)] - self.lo

    def close(self) -> None:
        self.video.close()

    def __enter__(self) -> OpenSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class PlannedRead:
    """What to decode from one opened segment for some policies, and how to cut it: ``wanted`` the distinct
    video frames (sorted ``[u]``), ``params`` per policy with ``frame_idx`` indexing into them; ``samples``
    how many samples each policy takes from the segment (before ``sample`` picked one)."""

    wanted: np.ndarray
    params: tuple[ClipParams, ...]
    samples: tuple[int, ...]


def plan_read(opened: OpenSegment, policies: Sequence[ClipPolicy], rng: np.random.Generator | None = None,
              sample: int | None = None) -> PlannedRead:
    """Every sample of each policy over the segment's frames (only sample ``sample`` of each when given; one
    past the last is an IndexError) and the distinct frames they take together."""
    planned = [p.plan(opened.num_frames, opened.height, opened.width, rng, opened.key_frames)
               for p in policies]
    counts = tuple(p.num_samples for p in planned)
    if sample is not None:
        if any(sample >= n for n in counts):
            raise IndexError(f"sample {sample} of {opened.segment.path}: the policy takes {min(counts)}")
        planned = [p.select(sample) for p in planned]
    wanted, inverse = np.unique(np.concatenate([p.frame_idx.numpy().ravel() + opened.lo for p in planned]),
                                return_inverse=True)
    params, used = [], 0
    for p in planned:
        size = p.frame_idx.numel()
        local = torch.from_numpy(inverse[used:used + size].reshape(p.frame_idx.shape).astype(np.int64))
        params.append(replace(p, frame_idx=local))
        used += size
    return PlannedRead(wanted, tuple(params), counts)


def cut_clips(policies: Sequence[ClipPolicy], frames: Sequence[torch.Tensor],
              params: Sequence[Sequence[ClipParams]]) -> list[torch.Tensor]:
    """The samples of ``N`` videos, one tensor per policy ``Tensor[S, *policy.sample_shape]`` (``S`` the
    videos' samples in order): ``frames[n]`` uint8 ``[u_n, H_n, W_n, 3]`` decoded for a :class:`PlannedRead`
    and ``params[n]`` its params (one per policy). Runs where the frames are (a worker, or the device)."""
    out = []
    for j, policy in enumerate(policies):
        mine = [p[j] for p in params]
        sources = [f for f, p in zip(frames, mine, strict=True) for _ in range(p.num_samples)]
        args = {k: v.to(sources[0].device, non_blocking=True) for k, v in ClipParams.stack(mine).items()}
        out.append(policy.crop(sources, args))
    return out


def read_clips(segment: SegmentLike | OpenSegment, policies: ClipPolicy | Sequence[ClipPolicy],
               backend: str = "auto", rng: np.random.Generator | None = None,
               sample: int | None = None) -> list[torch.Tensor]:
    """Every sample of each policy (only sample ``sample`` when given), ``Tensor[S, *policy.sample_shape]``,
    from one decode of the distinct frames they all take. ``segment`` may be already open. Raises DataError
    for a missing or undecodable video (BackendUnavailable when no backend can read it)."""
    policies = [policies] if isinstance(policies, ClipPolicy) else list(policies)
    opened = segment if isinstance(segment, OpenSegment) else OpenSegment(segment, backend)
    try:
        planned = plan_read(opened, policies, rng, sample)
        frames = opened.video.get_frames(planned.wanted)
    except OSError as exc:
        raise DataError(f"cannot decode {opened.segment.path}: {exc}") from None
    finally:
        if opened is not segment:
            opened.close()
    return cut_clips(policies, [frames], [planned.params])


def load_clips(
    path: str | Path,
    clip_len: int = 16,
    frame_step: int = 1,
    size: int = 112,
    clips: int = 10,
    backend: str = "auto",
    normalize: bool = True,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    start: float | None = None,
    end: float | None = None,
) -> torch.Tensor:
    """``clips`` evenly spaced clips of ``path`` (between ``start`` and ``end`` seconds when given), each the
    central square of the short side resized to ``size`` (:func:`~vidfast.data.policies.uniform_clips`).

    Returns float ``Tensor[k, 3, clip_len, size, size]`` normalised with ``mean``/``std``, or with
    ``normalize=False`` uint8 ``Tensor[k, clip_len, size, size, 3]``. Raises DataError for a missing or
    undecodable video (BackendUnavailable when no backend can read it).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    output = ClipOutput(tuple(mean), tuple(std)) if normalize else ClipOutput((0.0,) * 3, (1 / 255,) * 3)
    policy = uniform_clips(clips, clip_len, frame_step, size, output)
    (video,) = read_clips(Segment(str(path), start, end), policy, backend)
    if normalize:
        return video
    return video.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous()

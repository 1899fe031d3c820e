"""``load_clips``: the evaluation clips of one video, for prediction and deployment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from vidfast.conventions import KINETICS_MEAN, KINETICS_STD
from vidfast.data.dataset import frame_range
from vidfast.data.decoders import open_video
from vidfast.data.samplers import TemporalConfig, center_box, sample_temporal
from vidfast.errors import DataError
from vidfast.ops import cube_crop


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
    central square of the short side resized to ``size`` (the evaluation sampler's crop).

    Returns float ``Tensor[k, 3, clip_len, size, size]`` normalised with ``mean``/``std``, or with
    ``normalize=False`` uint8 ``Tensor[k, clip_len, size, size, 3]``. Raises DataError for a missing or
    undecodable video (BackendUnavailable when no backend can read it).
    """
    temporal = TemporalConfig(mode="uniform", clip_len=clip_len, step=frame_step, clips=clips)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    video = open_video(path, backend)
    try:
        segment = SimpleNamespace(path=str(path), start=start, end=end, fps=video.fps)
        lo, hi = frame_range(segment, video.num_frames, video.fps)
        indices = sample_temporal(hi - lo, temporal) + lo  # [k, t]
        wanted, inverse = np.unique(indices, return_inverse=True)
        frames = video.get_frames(wanted)
    except OSError as exc:
        raise DataError(f"cannot decode {path}: {exc}") from None
    finally:
        video.close()
    k = indices.shape[0]
    frame_idx = torch.from_numpy(inverse.reshape(1, k, clip_len).astype(np.int64))
    boxes = torch.tensor([center_box(video.height, video.width)]).expand(1, k, 4)
    if normalize:
        return cube_crop(frames[None], frame_idx, boxes, (clip_len, size, size), mean=mean, std=std)[0]
    raw = cube_crop(
        frames[None],
        frame_idx,
        boxes,
        (clip_len, size, size),
        mean=(0.0, 0.0, 0.0),
        std=(1 / 255, 1 / 255, 1 / 255),
    )[0]  # [k, 3, t, S, S] in 0..255
    return raw.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous()

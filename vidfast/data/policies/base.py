"""The clip-policy interface: what a sample takes from a video (:class:`ClipParams`) and how it is cut.

A :class:`ClipPolicy` plans the ``S`` samples of a ``num_frames x height x width`` video, each made of ``P``
pieces (1 for a clip, 4 for a cubic puzzle), as :func:`vidfast.ops.cube_crop` arguments, and carries the
output's size, normalisation, dtype and memory layout (:class:`ClipOutput`); :meth:`ClipPolicy.crop` cuts
them. Training, evaluation and prediction all read clips through a policy (:func:`vidfast.data.read_clips`;
the loader's items through the same plan and cut).

Adding a policy: a module with a :class:`ClipPolicy` subclass and a factory registered by name
(:func:`~vidfast.data.policies.register_policy`); a run config (``data.loader.policy``), evaluation
(``EvalConfig.policy``) and prediction then take it by that name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from vidfast.conventions import KINETICS_MEAN, KINETICS_STD
from vidfast.ops import cube_crop

#: the ``cube_crop`` arguments a :class:`ClipParams` holds
CROP_ARGS = ("frame_idx", "boxes", "flip", "perm", "rot", "channel")


@dataclass(frozen=True)
class ClipOutput:
    """What ``cube_crop`` writes: normalisation (``(v / 255 - mean) / std``), dtype, and whether the clips
    come out ``channels_last_3d`` (written so directly, never copied afterwards)."""

    mean: tuple[float, ...] = KINETICS_MEAN
    std: tuple[float, ...] = KINETICS_STD
    dtype: torch.dtype = torch.float32
    channels_last: bool = False


@dataclass
class ClipParams:
    """The plan of ``S`` samples of ``P`` pieces, as ``cube_crop`` arguments (int64 unless said):
    ``frame_idx`` ``[S, P, t]``, ``boxes`` ``[S, P, 4]`` ``(y0, x0, h, w)``, ``flip`` bool ``[S, P]``,
    ``perm``/``rot``/``channel`` ``[S, P]``; ``labels`` the policy's label tensors ``[S, ...]``."""

    frame_idx: torch.Tensor
    boxes: torch.Tensor
    flip: torch.Tensor
    perm: torch.Tensor
    rot: torch.Tensor
    channel: torch.Tensor
    labels: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def plain(cls, frame_idx: np.ndarray, boxes: np.ndarray, flip: np.ndarray) -> ClipParams:
        """Single-piece samples (``P = 1``) of ``frame_idx`` ``[S, t]``, ``boxes`` ``[S, 4]``, ``flip``
        ``[S]``."""
        s = len(frame_idx)
        return cls(
            torch.as_tensor(np.asarray(frame_idx, dtype=np.int64))[:, None],
            torch.as_tensor(np.asarray(boxes, dtype=np.int64)).reshape(s, 1, 4),
            torch.as_tensor(np.asarray(flip, dtype=bool)).reshape(s, 1),
            torch.zeros(s, 1, dtype=torch.int64),
            torch.zeros(s, 1, dtype=torch.int64),
            torch.full((s, 1), -1, dtype=torch.int64),
        )

    @property
    def num_samples(self) -> int:
        return int(self.frame_idx.shape[0])

    def select(self, sample: int) -> ClipParams:
        """Sample ``sample`` alone (``S = 1``)."""
        part = slice(sample, sample + 1)
        return ClipParams(*(getattr(self, n)[part] for n in CROP_ARGS),
                          labels={k: v[part] for k, v in self.labels.items()})

    def localize(self, offset: int = 0) -> tuple[np.ndarray, ClipParams]:
        """The distinct source frames ``frame_idx + offset`` (sorted ``[u]``: what to decode) and these
        params with ``frame_idx`` indexing into them."""
        wanted, inverse = np.unique(self.frame_idx.numpy() + offset, return_inverse=True)
        local = torch.from_numpy(inverse.reshape(self.frame_idx.shape).astype(np.int64))
        return wanted, replace(self, frame_idx=local)

    def crop_args(self) -> dict[str, torch.Tensor]:
        """The ``cube_crop`` keyword arguments."""
        return {name: getattr(self, name) for name in CROP_ARGS}

    @staticmethod
    def stack(params: Sequence[ClipParams]) -> dict[str, torch.Tensor]:
        """``cube_crop`` arguments of single-sample params, stacked into a batch (``[N, P, ...]``)."""
        return {name: torch.cat([getattr(p, name) for p in params]) for name in CROP_ARGS}


class ClipPolicy(ABC):
    """How samples are planned from one video and cut. Subclasses set ``output`` and implement the
    abstract members."""

    output: ClipOutput

    @property
    @abstractmethod
    def out_size(self) -> tuple[int, int, int]:
        """``(t, h, w)`` of every piece."""

    @property
    def pieces(self) -> int:
        """Pieces ``P`` per sample (1: a sample is one clip ``[3, t, h, w]``)."""
        return 1

    @abstractmethod
    def num_samples(self, num_frames: int) -> int:
        """Samples ``S`` this policy takes from a ``num_frames`` video."""

    @abstractmethod
    def plan(self, num_frames: int, height: int, width: int, rng: np.random.Generator | None = None,
             key_frames: np.ndarray | None = None) -> ClipParams:
        """Every sample of a ``num_frames x height x width`` video (``frame_idx`` into its frames);
        ``key_frames``: its keyframe positions where the decoder knows them (a policy may draw samples that
        decode cheaply)."""

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one cut sample: ``(3, t, h, w)``, or ``(P, 3, t, h, w)`` for several pieces."""
        piece = (3, *self.out_size)
        return piece if self.pieces == 1 else (self.pieces, *piece)

    def crop(self, frames: Sequence[torch.Tensor],
             params: ClipParams | dict[str, torch.Tensor]) -> torch.Tensor:
        """Cut ``N`` samples: ``frames[n]`` uint8 ``[u_n, H_n, W_n, 3]`` and their params (``[N, P, ...]``,
        indexing into ``frames[n]``) -> ``[N, *sample_shape]`` in ``output``'s dtype and layout."""
        args = params.crop_args() if isinstance(params, ClipParams) else params
        out = self.output
        batch = frames[0][None] if len(frames) == 1 else list(frames)  # one video: no ragged batch
        video = cube_crop(batch, out_size=self.out_size, mean=out.mean, std=out.std, dtype=out.dtype,
                          channels_last=out.channels_last, **args)
        return video[:, 0] if self.pieces == 1 else video

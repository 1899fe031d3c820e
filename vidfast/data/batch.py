"""``Batch``: what a loader yields (training, validation, evaluation alike) and a task's step consumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Skip:
    """A video that could not be read, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Batch:
    """``N`` samples: ``videos`` one tensor per clip policy of the loader, ``[N, *policy.sample_shape]``
    (empty when no video of the batch could be read); ``label`` the rows' classes ``[N]`` (-1: unlabelled);
    ``targets`` the policy's labels (the puzzle's ``perm_label`` ``[N]``, ``rot_label`` ``[N, P]``, ``kind``
    ``[N]``); ``video_index`` (manifest row of the split) and ``clip_index`` (the sample of its video)
    ``[N]``; ``skipped`` the videos of this batch that failed."""

    videos: tuple[Tensor, ...]
    label: Tensor
    targets: Mapping[str, Tensor] = field(default_factory=dict)
    video_index: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    clip_index: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    skipped: tuple[Skip, ...] = ()

    @classmethod
    def empty(cls, skipped: tuple[Skip, ...]) -> Batch:
        """A batch none of whose videos could be read."""
        return cls((), torch.zeros(0, dtype=torch.long), skipped=skipped)

    @property
    def video(self) -> Tensor | None:
        """The first (usually only) policy's samples, or None when nothing could be read."""
        return self.videos[0] if self.videos else None

    def __len__(self) -> int:
        return len(self.label)

"""The Space-Time Cubic Puzzle as a clip policy: one sample of four pieces (:mod:`vidfast.puzzle.sampler`
draws the geometry, the permutation, rotations and channel replication) and its labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vidfast.data.policies.base import ClipOutput, ClipParams, ClipPolicy
from vidfast.puzzle.sampler import PuzzleConfig, sample_puzzle


@dataclass(frozen=True)
class CubicPuzzle(ClipPolicy):
    """One puzzle per video: ``[4, 3, cube_len, out_size, out_size]`` with labels ``perm_label`` ``[]``,
    ``rot_label`` ``[4]`` and ``kind`` ``[]`` (0 spatial, 1 temporal)."""

    config: PuzzleConfig = field(default_factory=PuzzleConfig)
    output: ClipOutput = field(default_factory=ClipOutput)

    @property
    def out_size(self) -> tuple[int, int, int]:
        return self.config.cube_len, self.config.out_size, self.config.out_size

    @property
    def pieces(self) -> int:
        return 4

    def num_samples(self, num_frames: int) -> int:
        return 1

    def plan(self, num_frames: int, height: int, width: int, rng: np.random.Generator | None = None,
             key_frames: np.ndarray | None = None) -> ClipParams:
        if rng is None:
            raise ValueError("the cubic puzzle needs an rng")
        p = sample_puzzle(num_frames, height, width, self.config, rng)
        labels = {"perm_label": torch.tensor([p.perm_label]), "kind": torch.tensor([p.kind]),
                  "rot_label": torch.from_numpy(p.rot_label)[None]}
        arrays = (p.frame_idx, p.boxes, np.zeros(4, dtype=bool), p.perm, p.rot, p.channel)
        return ClipParams(*(torch.from_numpy(np.ascontiguousarray(a))[None] for a in arrays), labels=labels)

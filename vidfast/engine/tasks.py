"""What one training step computes for each task: inputs from a loader batch, forward, loss and accuracy
counts.

- ``ClassifyTask``: batch ``video`` ``Tensor[B, 3, T, H, W]``, ``label`` ``Tensor[B]``; loss =
(label-smoothed) CE.
- ``PuzzleTask``: batch ``video`` ``Tensor[B, P, 3, t, h, w]``, ``perm_label`` ``Tensor[B]``, ``rot_label``
  ``Tensor[B, P]``; loss = permutation CE + ``rotation_weight`` * rotation CE (over all pieces).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class StepOutput:
    """Loss of a batch and its accuracy counts (tensors stay on the device until read)."""

    loss: Tensor
    correct: Tensor
    count: int
    rot_correct: Tensor | None = None
    rot_count: int = 0


def to_device(video: Tensor, device: torch.device, channels_last: bool) -> Tensor:
    """Move a clip batch (``[B, C, T, H, W]`` or puzzle ``[B, P, C, t, h, w]``) to ``device`` without
    blocking; with ``channels_last`` each clip ends up ``torch.channels_last_3d`` (a no-op when the loader
    already made it so).
    """
    video = video.to(device, non_blocking=True)
    if not channels_last:
        return video
    if video.dim() == 5:
        return video.contiguous(memory_format=torch.channels_last_3d)
    lead = video.shape[:2]
    return video.flatten(0, 1).contiguous(memory_format=torch.channels_last_3d).unflatten(0, lead)


class ClassifyTask:
    """Supervised clip classification."""

    name = "classify"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def step(
        self, model: nn.Module, batch: dict[str, Any], device: torch.device, channels_last: bool
    ) -> StepOutput:
        """Forward + loss of one batch (call under autocast)."""
        video = to_device(batch["video"], device, channels_last)
        label = batch["label"].to(device, non_blocking=True)
        logits = model(video)
        loss = F.cross_entropy(logits.float(), label, label_smoothing=self.label_smoothing)
        correct = (logits.detach().argmax(1) == label).sum()
        return StepOutput(loss=loss, correct=correct, count=label.numel())

    @staticmethod
    def blank_batch(clip_shape: tuple[int, ...]) -> dict[str, Tensor]:
        """A one-clip batch of zeros: ``video`` ``Tensor[1, C, T, H, W]`` for ``clip_shape``
        ``(C, T, H, W)``."""
        return {"video": torch.zeros(1, *clip_shape), "label": torch.zeros(1, dtype=torch.long)}


class PuzzleTask:
    """Space-Time Cubic Puzzle pretext task (Kim et al., AAAI 2019)."""

    name = "puzzle"

    def __init__(self, rotation_weight: float = 1.0, label_smoothing: float = 0.0):
        self.rotation_weight = rotation_weight
        self.label_smoothing = label_smoothing

    def step(
        self, model: nn.Module, batch: dict[str, Any], device: torch.device, channels_last: bool
    ) -> StepOutput:
        """Forward + loss of one puzzle batch (call under autocast)."""
        video = to_device(batch["video"], device, channels_last)
        perm_label = batch["perm_label"].to(device, non_blocking=True)
        out = model(video)
        perm_logits = out.perm.float()
        loss = F.cross_entropy(perm_logits, perm_label, label_smoothing=self.label_smoothing)
        correct = (perm_logits.detach().argmax(1) == perm_label).sum()
        result = StepOutput(loss=loss, correct=correct, count=perm_label.numel())
        if out.rot.shape[-1] > 0:
            rot_label = batch["rot_label"].to(device, non_blocking=True).flatten()
            rot_logits = out.rot.float().flatten(0, 1)
            result.loss = loss + self.rotation_weight * F.cross_entropy(rot_logits, rot_label)
            result.rot_correct = (rot_logits.detach().argmax(1) == rot_label).sum()
            result.rot_count = rot_label.numel()
        return result

    @staticmethod
    def blank_batch(clip_shape: tuple[int, ...]) -> dict[str, Tensor]:
        """A one-puzzle batch of zeros (``video`` ``Tensor[1, P, C, t, h, w]`` for ``clip_shape``
        ``(P, C, t, h, w)``)."""
        pieces = clip_shape[0]
        return {
            "video": torch.zeros(1, *clip_shape),
            "perm_label": torch.zeros(1, dtype=torch.long),
            "rot_label": torch.zeros(1, pieces, dtype=torch.long),
        }

"""``vidfast pretrain|train|finetune`` (placeholder until the engine work lands)."""

from __future__ import annotations


def pretrain() -> None:
    """Self-supervised Space-Time Cubic Puzzle pretraining."""
    raise NotImplementedError("pretrain is not built yet")


def train() -> None:
    """Supervised training from scratch."""
    raise NotImplementedError("train is not built yet")


def finetune() -> None:
    """Fine-tune from a puzzle or classifier checkpoint."""
    raise NotImplementedError("finetune is not built yet")

"""``vidfast eval`` (placeholder until the engine work lands)."""

from __future__ import annotations


def evaluate() -> None:
    """Clip- and video-level evaluation."""
    raise NotImplementedError("eval is not built yet")

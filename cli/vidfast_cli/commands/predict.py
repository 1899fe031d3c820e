"""``vidfast predict`` (placeholder until the engine work lands)."""

from __future__ import annotations


def predict() -> None:
    """Video-level prediction."""
    raise NotImplementedError("predict is not built yet")

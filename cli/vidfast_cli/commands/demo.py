"""``vidfast demo`` (placeholder until the EVAL helper lands it)."""

from __future__ import annotations


def demo() -> None:
    """The main job end to end on synthetic data."""
    raise NotImplementedError("demo is not built yet")

"""``vidfast bench`` (placeholder until the engine work lands)."""

from __future__ import annotations


def bench() -> None:
    """Throughput table."""
    raise NotImplementedError("bench is not built yet")

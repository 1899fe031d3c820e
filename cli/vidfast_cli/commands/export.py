"""``vidfast export`` (placeholder until the export work lands)."""

from __future__ import annotations


def export() -> None:
    """ONNX export."""
    raise NotImplementedError("export is not built yet")

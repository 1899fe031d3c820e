"""vidfast: fast 3D-CNN video recognition and Space-Time Cubic Puzzle self-supervised pretraining."""

from __future__ import annotations

__version__ = "0.1.0"

from vidfast import _ext  # noqa: E402,F401  (loads the native ops; see _ext for when they are missing)
from vidfast.info import info  # noqa: E402

__all__ = ["__version__", "info"]

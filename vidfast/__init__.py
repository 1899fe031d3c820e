"""vidfast: fast 3D-CNN video recognition and Space-Time Cubic Puzzle self-supervised pretraining.

Importing it loads neither torch nor the native extension: ``vidfast.ops`` loads them (``vidfast._ext``)
when something needs them, so that the deployment runtime (``vidfast.deploy``) runs where torch is not
installed.
"""

from __future__ import annotations

__version__ = "0.1.0"

from vidfast.info import info  # noqa: E402  (imports torch only when called)

__all__ = ["__version__", "info"]

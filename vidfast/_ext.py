"""Loads the native extension ``vidfast._C`` once; without it the ops use their PyTorch references."""

from __future__ import annotations

import warnings
from types import ModuleType

import torch  # noqa: F401  (loads libc10/libtorch before the extension that links them)

_native: ModuleType | None = None
_load_error: str | None = None

try:
    from vidfast import _C as _native  # noqa: F401  (importing registers torch.ops.vidfast.*)
except ImportError as exc:  # a source checkout without a build
    _load_error = str(exc)
    warnings.warn(
        "vidfast native extension is not built; using the pure-PyTorch reference ops (slower). "
        "Build it with `pip install --no-build-isolation -e .`",
        RuntimeWarning,
        stacklevel=2,
    )


def native_module() -> ModuleType | None:
    """The loaded ``vidfast._C`` module, or None when it is not built."""
    return _native


def load_error() -> str | None:
    """Why the native extension could not be imported (None when it loaded)."""
    return _load_error

"""Loads the native extension ``vidfast._C`` once. The ops need it: without it they raise
:class:`NativeExtensionError` naming the import error, unless the user opts in to the slow pure-PyTorch
references with ``VIDFAST_REFERENCE_OPS=1`` (a source checkout without a build). The test suite refuses to
run without it (``tests/conftest.py``), so no test passes by comparing a reference with itself."""

from __future__ import annotations

import os
import warnings
from types import ModuleType

import torch  # loads libc10/libtorch before the extension that links them

from vidfast.errors import VidfastError

_native: ModuleType | None = None
_load_error: str | None = None
#: environment variable that allows running the ops on their pure-PyTorch references without ``vidfast._C``
REFERENCE_OPS_ENV = "VIDFAST_REFERENCE_OPS"


class NativeExtensionError(VidfastError):
    """``vidfast._C`` did not load and the reference fallback was not asked for."""


try:
    from vidfast import _C as _native  # noqa: F401  (importing registers torch.ops.vidfast.*)
except ImportError as exc:  # a source checkout without a build, or a build against another torch
    _load_error = f"{type(exc).__name__}: {exc}"


def native_module() -> ModuleType | None:
    """The loaded ``vidfast._C`` module, or None when it did not load."""
    return _native


def has_native_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``vidfast._C`` loaded and registers a kernel of ``vidfast::<op>`` for ``dispatch_key``
    ("CPU", "CUDA")."""
    if _native is None:
        return False
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"vidfast::{op}", dispatch_key))
    except RuntimeError:  # the op is not registered in this build
        return False


def load_error() -> str | None:
    """Why the native extension could not be imported (None when it loaded)."""
    return _load_error


def require_native() -> None:
    """Return when ``vidfast._C`` loaded or the reference ops were opted in (warned once); else raise
    :class:`NativeExtensionError` naming the import error."""
    if _native is not None:
        return
    if os.environ.get(REFERENCE_OPS_ENV, "") not in ("", "0"):
        warnings.warn(f"vidfast._C did not load ({_load_error}); using the slow pure-PyTorch reference ops "
                      f"as {REFERENCE_OPS_ENV} asks", RuntimeWarning, stacklevel=3)
        return
    raise NativeExtensionError(
        f"the vidfast native extension vidfast._C did not load ({_load_error}); build it with "
        f"`pip install --no-build-isolation -e .`, or set {REFERENCE_OPS_ENV}=1 to run the slow pure-PyTorch "
        "reference ops instead"
    )

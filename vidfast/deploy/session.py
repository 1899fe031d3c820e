"""onnxruntime sessions: execution-provider choice (TensorRT -> CUDA -> CPU) and session options."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vidfast.errors import BackendUnavailable, VidfastError

#: provider preference of ``providers="auto"``, best first
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
#: short names accepted besides onnxruntime's own
PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
TRT_CACHE_DIR = Path(tempfile.gettempdir()) / "vidfast-trt-cache"


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            f"onnxruntime is not installed ({exc}); install vidfast[deploy] (or onnxruntime-gpu)"
        ) from None
    return onnxruntime


def available_providers() -> list[str]:
    """onnxruntime execution providers compiled into the installed build."""
    return list(_ort().get_available_providers())


def resolve_providers(providers: str | Sequence[str] = "auto") -> list[str]:
    """Provider names for a session, best first.

    ``"auto"``: every provider of :data:`PROVIDER_ORDER` that is installed (TensorRT, CUDA, then CPU, which
    is always kept as the fallback). A name (``"cpu"``, ``"cuda"``, ``"tensorrt"`` or an onnxruntime name) or
    a list of names asks for exactly those; one that is not installed raises :class:`BackendUnavailable`.
    """
    installed = available_providers()
    if isinstance(providers, str) and providers == "auto":
        return [p for p in PROVIDER_ORDER if p in installed]
    wanted = [providers] if isinstance(providers, str) else list(providers)
    if not wanted:
        raise ValueError("providers must name at least one execution provider (or be 'auto')")
    names = [PROVIDER_ALIASES.get(p.lower(), p) for p in wanted]
    absent = [w for w, n in zip(wanted, names, strict=True) if n not in installed]
    if absent:
        raise BackendUnavailable(
            f"execution provider(s) {', '.join(absent)} not available in this onnxruntime build; installed: "
            f"{', '.join(installed)} (GPU providers need the onnxruntime-gpu package)"
        )
    return names


def session_options(threads: int | None = None):
    """Full graph optimisation, sequential execution, ``threads`` intra-op threads (default: usable cores)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: unsupported-node fallbacks are expected and not actionable
    return options


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _provider_options(name: str, fp16: bool) -> dict[str, Any]:
    if name == "TensorrtExecutionProvider":
        return {
            "trt_fp16_enable": fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(TRT_CACHE_DIR),
        }
    return {}


def make_session(model: str | Path | bytes, providers: str | Sequence[str] = "auto",
                 threads: int | None = None, fp16: bool = False):
    """An ``onnxruntime.InferenceSession`` for a model file (or serialized bytes) on the resolved providers.

    ``fp16`` lets TensorRT build half-precision engines. A model onnxruntime cannot load raises VidfastError.
    """
    ort = _ort()
    names = resolve_providers(providers)
    if "TensorrtExecutionProvider" in names:
        TRT_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    source = model if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise VidfastError(f"ONNX model not found: {model}")
    try:
        return ort.InferenceSession(
            source,
            sess_options=session_options(threads),
            providers=[(n, _provider_options(n, fp16)) for n in names],
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented exception types
        what = "the exported graph" if isinstance(model, bytes) else str(model)
        message = " ".join(str(exc).split())
        raise VidfastError(f"onnxruntime cannot load {what} on {', '.join(names)}: {message}") from None

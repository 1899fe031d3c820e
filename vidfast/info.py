"""``vidfast.info()``: which kernels are in use and which optional backends are importable.

torch and the native extension are imported when ``info()`` runs, not at import (``import vidfast`` stays
torch-free); without torch (a deployment install) the torch entries are None.
"""

from __future__ import annotations

import importlib.util
import platform

NATIVE_OPS = ("cube_crop",)


def _kernel_in_use(op: str, dispatch_key: str) -> str:
    from vidfast import _ext

    return f"{dispatch_key.lower()} native" if _ext.has_native_kernel(op, dispatch_key) else "reference"


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def info() -> dict:
    """Return a dict describing this installation: versions, devices, kernels and optional packages."""
    from vidfast import __version__

    optional = {name: _importable(mod) for name, mod in (
        ("pyav", "av"), ("dali", "nvidia.dali"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
        ("openvino", "openvino"),
    )}
    if not _importable("torch"):
        return {"vidfast": __version__, "python": platform.python_version(), "torch": None,
                "native_extension": False, "optional": optional}
    import torch

    from vidfast import _ext

    native = _ext.native_module()
    cuda_ok = torch.cuda.is_available()
    kernels = {op: {dev.lower(): _kernel_in_use(op, dev) for dev in ("CPU", "CUDA")} for op in NATIVE_OPS}
    return {
        "vidfast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cuda_available": cuda_ok,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cudnn_available": bool(torch.backends.cudnn.is_available()) if cuda_ok else False,
        "cudnn_version": torch.backends.cudnn.version() if cuda_ok else None,
        "native_extension": native is not None,
        "native_build": dict(native.build_info()) if native is not None else None,
        "native_load_error": _ext.load_error(),
        "kernels": kernels,
        "threads": torch.get_num_threads(),
        "optional": optional,
    }

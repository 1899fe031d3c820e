"""vidfast.deploy: exported ONNX models on onnxruntime (TensorRT -> CUDA -> CPU), from clips or videos.

Needs numpy, onnx, onnxruntime and PyAV, not torch (``pip install "vidfast[deploy]"``); only
:func:`best_backend` and :class:`Backend`, which choose between onnxruntime and PyTorch, import torch, when
first used.
"""

from __future__ import annotations

from typing import Any

from vidfast.deploy.classifier import OnnxClassifier, softmax
from vidfast.deploy.metadata import ModelMetadata, read_metadata
from vidfast.deploy.session import available_providers, make_session, resolve_providers, session_options

__all__ = [
    "Backend",
    "ModelMetadata",
    "OnnxClassifier",
    "available_providers",
    "best_backend",
    "make_session",
    "read_metadata",
    "resolve_providers",
    "session_options",
    "softmax",
]


def __getattr__(name: str) -> Any:
    if name in ("Backend", "best_backend"):
        from vidfast.deploy import backend

        return getattr(backend, name)
    raise AttributeError(f"module 'vidfast.deploy' has no attribute {name!r}")

"""vidfast.deploy: exported ONNX models on onnxruntime (TensorRT -> CUDA -> CPU), from clips or videos."""

from vidfast.deploy.backend import Backend, best_backend
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

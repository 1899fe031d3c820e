"""vidfast.export: ONNX export with metadata, in-graph preprocessing, fp16 and an onnxruntime parity check."""

from vidfast.export.onnx_export import (
    DEFAULT_OPSET,
    EXPORTERS,
    CenterCropPreprocess,
    ExportGraph,
    ExportResult,
    export_onnx,
    max_opset,
    parse_batch,
    parse_clip,
)
from vidfast.export.parity import FP16_TOLERANCE, FP32_TOLERANCE, ParityReport, check_parity

__all__ = [
    "DEFAULT_OPSET",
    "EXPORTERS",
    "FP16_TOLERANCE",
    "FP32_TOLERANCE",
    "CenterCropPreprocess",
    "ExportGraph",
    "ExportResult",
    "ParityReport",
    "check_parity",
    "export_onnx",
    "max_opset",
    "parse_batch",
    "parse_clip",
]

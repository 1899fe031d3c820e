"""vidfast.runtime: how to run a model fast and right on this machine (precision by measurement among the
kernels proven correct here). Imports only torch, so every layer above (engine, export, deploy) may use it."""

from vidfast.runtime.convcheck import ConvConfig, check_config, check_model, collect_convs, route_to_fp32
from vidfast.runtime.precision import (
    PRECISIONS,
    PrecisionPlan,
    candidates,
    choose,
    interleaved_seconds,
    plan_precision,
    settled,
)

__all__ = [
    "PRECISIONS",
    "ConvConfig",
    "PrecisionPlan",
    "candidates",
    "check_config",
    "check_model",
    "choose",
    "collect_convs",
    "interleaved_seconds",
    "plan_precision",
    "route_to_fp32",
    "settled",
]

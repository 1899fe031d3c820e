"""Training (``fit``), evaluation (``evaluate``) and their typed configs."""

from vidfast.engine.config import TrainConfig, config_from_dict, load_config_file, resolve_config, save_config
from vidfast.engine.evaluate import EvalConfig, evaluate
from vidfast.engine.metrics import ClassificationReport, classification_report
from vidfast.engine.plan import RunPlan
from vidfast.engine.run import RunParts, build_run
from vidfast.engine.throughput import measure_training_throughput
from vidfast.engine.trainer import RunResult, StepEvent, TrainingDiverged, fit
from vidfast.scoring import ScoreEnsemble, load_classifier

__all__ = [
    "ClassificationReport",
    "EvalConfig",
    "RunParts",
    "RunPlan",
    "RunResult",
    "ScoreEnsemble",
    "StepEvent",
    "TrainConfig",
    "TrainingDiverged",
    "build_run",
    "classification_report",
    "config_from_dict",
    "evaluate",
    "fit",
    "load_classifier",
    "load_config_file",
    "measure_training_throughput",
    "resolve_config",
    "save_config",
]

"""Training (``fit``), evaluation (:func:`vidfast.engine.evaluate.evaluate`) and their typed configs.

The names below load their modules when first used, so that importing ``vidfast.engine.config`` (the CLI
does, for its options, also in the deployment install) loads neither torch nor the rest of the engine.
"""

from __future__ import annotations

from vidfast.lazy import lazy_names

_MODULES = {
    "ClassificationReport": "vidfast.engine.metrics",
    "EvalConfig": "vidfast.engine.config",
    "RunParts": "vidfast.engine.run",
    "RunPlan": "vidfast.engine.plan",
    "RunResult": "vidfast.engine.trainer",
    "ScoreEnsemble": "vidfast.scoring",
    "StepEvent": "vidfast.engine.trainer",
    "TrainConfig": "vidfast.engine.config",
    "TrainingDiverged": "vidfast.engine.trainer",
    "build_run": "vidfast.engine.run",
    "classification_report": "vidfast.engine.metrics",
    "config_from_dict": "vidfast.engine.config",
    "fit": "vidfast.engine.trainer",
    "load_classifier": "vidfast.scoring",
    "load_config_file": "vidfast.engine.config",
    "measure_training_throughput": "vidfast.engine.throughput",
    "resolve_config": "vidfast.engine.config",
    "save_config": "vidfast.engine.config",
}

__all__ = sorted(_MODULES)

__getattr__ = lazy_names("vidfast.engine", _MODULES)

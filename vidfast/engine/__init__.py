"""vidfast.engine"""

from vidfast.engine.bench import BenchConfig, BenchResult, run_bench  # noqa: F401
from vidfast.engine.config import TrainConfig, config_from_dict, load_config_file, resolve_config, save_config  # noqa: F401
from vidfast.engine.evaluate import EvalConfig, ScoreEnsemble, evaluate, load_classifier  # noqa: F401
from vidfast.engine.metrics import ClassificationReport, classification_report  # noqa: F401
from vidfast.engine.predict import VideoPrediction, open_scorer, predict_videos  # noqa: F401
from vidfast.engine.trainer import RunResult, StepEvent, TrainingDiverged, fit, measure_training_throughput  # noqa: F401

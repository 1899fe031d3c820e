"""vidfast.engine"""

from vidfast.engine.config import TrainConfig, config_from_dict, load_config_file, resolve_config, save_config  # noqa: F401
from vidfast.engine.trainer import RunResult, StepEvent, TrainingDiverged, fit  # noqa: F401


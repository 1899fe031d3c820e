"""vidfast.engine"""

from vidfast.engine.config import TrainConfig, config_from_dict, load_config_file, resolve_config, save_config
from vidfast.engine.trainer import RunResult, StepEvent, TrainingDiverged, fit


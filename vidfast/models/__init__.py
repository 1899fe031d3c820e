"""vidfast.models: the 3D-CNN zoo (Hara et al. CVPR 2018 families, C3D, torchvision's video ResNets),
checkpoints, cubic-puzzle network.

Importing this package registers every model; build one with ``create_model(name, num_classes, **options)``.
"""

from vidfast.models import c3d, densenet, r2plus1d, resnet, tv_resnet  # noqa: F401  (register the families)
from vidfast.models.base import VideoClassifier
from vidfast.models.finetune import finetune_param_groups
from vidfast.models.identify import FileIdentity, convert_checkpoint, identify
from vidfast.models.inflate import inflate_from_2d
from vidfast.models.puzzle import PuzzleNet, PuzzleOutput
from vidfast.models.registry import (
    ModelCard,
    create_model,
    is_model,
    list_models,
    model_card,
    model_options,
    register_model,
)
from vidfast.models.weights import load_checkpoint, read_checkpoint

__all__ = [
    "FileIdentity",
    "ModelCard",
    "PuzzleNet",
    "PuzzleOutput",
    "VideoClassifier",
    "create_model",
    "convert_checkpoint",
    "finetune_param_groups",
    "identify",
    "inflate_from_2d",
    "is_model",
    "list_models",
    "load_checkpoint",
    "model_card",
    "model_options",
    "read_checkpoint",
    "register_model",
]

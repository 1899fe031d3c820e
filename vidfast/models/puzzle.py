"""Space-Time Cubic Puzzle network (Kim et al., AAAI 2019): shared-weight late fusion of puzzle pieces."""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from torch import Tensor, nn

from vidfast.models.base import VideoClassifier


class PuzzleOutput(NamedTuple):
    """Logits of the permutation class ``Tensor[B, num_perm_classes]`` and of each piece's rotation
    ``Tensor[B, P, rotation_classes]`` (``[B, P, 0]`` when rotation is not predicted)."""

    perm: Tensor
    rot: Tensor


class PuzzleNet(nn.Module):
    """One backbone shared by all ``num_pieces`` pieces (folded into the batch), features concatenated in
    piece order, an MLP (``perm_head``: fc1, relu, dropout, fc2) for the permutation class and a linear
    ``rot_head`` applied to every piece's features for its rotation class.

    The backbone's classifier is removed (``reset_classifier(0)``) so that every backbone parameter is used;
    :meth:`backbone_state_dict` gives the backbone in the plain-model format for fine-tuning.
    """

    def __init__(
        self,
        backbone: VideoClassifier,
        num_pieces: int = 4,
        num_perm_classes: int = 24,
        rotation_classes: int = 4,
        hidden: int = 512,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_features") or not hasattr(backbone, "num_features"):
            raise ValueError("backbone must be a vidfast model (with forward_features and num_features)")
        if num_pieces < 1 or num_perm_classes < 1 or rotation_classes < 0 or hidden < 1:
            raise ValueError(
                "num_pieces, num_perm_classes and hidden must be >= 1 and rotation_classes >= 0, got "
                f"{num_pieces}, {num_perm_classes}, {hidden}, {rotation_classes}"
            )
        backbone.reset_classifier(0)
        self.backbone = backbone
        self.num_pieces = num_pieces
        self.num_perm_classes = num_perm_classes
        self.rotation_classes = rotation_classes
        features = backbone.num_features
        self.perm_head = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", nn.Linear(num_pieces * features, hidden)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("drop", nn.Dropout(dropout)),
                    ("fc2", nn.Linear(hidden, num_perm_classes)),
                ]
            )
        )
        self.rot_head = nn.Linear(features, rotation_classes) if rotation_classes > 0 else None

    def forward(self, x: Tensor) -> PuzzleOutput:
        """``x: Tensor[B, P, C, t, h, w]`` (pieces in shuffled order) -> :class:`PuzzleOutput`."""
        if x.dim() != 6 or x.shape[1] != self.num_pieces:
            raise ValueError(
                f"PuzzleNet expects input [B, {self.num_pieces}, C, t, h, w], got {list(x.shape)}"
            )
        b, p = x.shape[:2]
        feats = self.backbone.forward_features(x.flatten(0, 1))
        perm = self.perm_head(feats.reshape(b, -1))
        if self.rot_head is None:
            rot = feats.new_zeros(b, p, 0)
        else:
            rot = self.rot_head(feats).reshape(b, p, self.rotation_classes)
        return PuzzleOutput(perm, rot)

    def backbone_state_dict(self) -> dict[str, Tensor]:
        """The backbone's weights under plain-model names (no classifier), for ``load_checkpoint``."""
        return dict(self.backbone.state_dict())

"""Common interface of every vidfast video classifier: features, head, classifier replacement."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn


class VideoClassifier(nn.Module):
    """Base class: ``forward(x) = forward_head(forward_features(x))``.

    Subclasses build their layers, then call :meth:`_init_head` last so the classifier comes last in the
    state dict and in ``named_parameters()`` (as in the reference models). ``classifier_name`` is the
    attribute name of the final linear layer ("fc" for the ResNet families, "classifier" for DenseNet).
    """

    classifier_name: ClassVar[str] = "fc"
    num_features: int
    num_classes: int

    def _init_head(self, num_features: int, num_classes: int, dropout: float) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_features = num_features
        self.head_drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_classifier(num_classes)

    def _init_conv_and_norm(self) -> None:
        """He (fan-out) init of every ``Conv3d`` weight; every ``BatchNorm3d`` starts as the identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        """The final layer (``nn.Linear``, or ``nn.Identity`` after ``reset_classifier(0)``)."""
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised ``num_features -> num_classes`` linear layer.

        ``num_classes=0`` removes it: ``forward`` then returns the pooled features
        ``Tensor[B, num_features]``.
        """
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
        layer: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if hasattr(self, self.classifier_name):
            old = self.get_classifier()
            param = next(old.parameters(), None)
            if param is not None and param.device.type != "meta":
                layer = layer.to(device=param.device, dtype=param.dtype)
        setattr(self, self.classifier_name, layer)
        self.num_classes = num_classes

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features ``Tensor[B, num_features]`` of a clip batch ``Tensor[B, C, T, H, W]``."""
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:
        """Logits ``Tensor[B, num_classes]`` from pooled features ``Tensor[B, num_features]``."""
        return self.get_classifier()(self.head_drop(features))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``Tensor[B, num_classes]`` of a clip batch ``Tensor[B, C, T, H, W]``."""
        return self.forward_head(self.forward_features(x))

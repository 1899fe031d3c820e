"""3D DenseNet-BC (121/169/201/264) with the parameter names of the reference 3D-ResNets-PyTorch models.

Names: ``features.conv1``, ``features.norm1``, ``features.denseblockN.denselayerM.{norm1,conv1,norm2,conv2}``,
``features.transitionN.{norm,conv}``, ``features.norm5``, ``classifier``.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidfast.models.base import VideoClassifier
from vidfast.models.registry import register_model

#: dense layers per block for every supported depth
DENSENET_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}


class DenseLayer(nn.Sequential):
    """BN-ReLU-1x1x1 conv (``bn_size * growth_rate``) - BN-ReLU-3x3x3 conv (``growth_rate``); output is the
    input with the new features appended: ``Tensor[B, C, T, H, W] -> Tensor[B, C + growth_rate, T, H, W]``."""

    def __init__(self, in_features: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__(
            OrderedDict(
                [
                    ("norm1", nn.BatchNorm3d(in_features)),
                    ("relu1", nn.ReLU(inplace=True)),
                    ("conv1", nn.Conv3d(in_features, bn_size * growth_rate, 1, bias=False)),
                    ("norm2", nn.BatchNorm3d(bn_size * growth_rate)),
                    ("relu2", nn.ReLU(inplace=True)),
                    ("conv2", nn.Conv3d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)),
                ]
            )
        )
        self.drop_rate = drop_rate

    def forward(self, x: Tensor) -> Tensor:
        new = super().forward(x)
        if self.drop_rate > 0:
            new = F.dropout(new, p=self.drop_rate, training=self.training)
        return torch.cat([x, new], 1)


class Transition(nn.Sequential):
    """BN-ReLU-1x1x1 conv to ``out_features`` channels, then 2x2x2 average pooling (halves T, H and W)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(
            OrderedDict(
                [
                    ("norm", nn.BatchNorm3d(in_features)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("conv", nn.Conv3d(in_features, out_features, 1, bias=False)),
                    ("pool", nn.AvgPool3d(kernel_size=2, stride=2)),
                ]
            )
        )


class DenseNet(VideoClassifier):
    """3D DenseNet-BC: stem (as the ResNets'), four dense blocks joined by halving transitions, final BN,
    ReLU, global average pool, linear ``classifier``. Each transition also halves T, so clips need
    ``T >= 8 * conv1_t_stride`` frames (16 with the stem max pool)."""

    classifier_name = "classifier"

    def __init__(
        self,
        block_config: tuple[int, ...],
        num_classes: int = 400,
        *,
        growth_rate: int = 32,
        bn_size: int = 4,
        num_init_features: int = 64,
        drop_rate: float = 0.0,
        n_input_channels: int = 3,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if min(growth_rate, bn_size, num_init_features, n_input_channels, conv1_t_size, conv1_t_stride) < 1:
            raise ValueError(
                "growth_rate, bn_size, num_init_features, n_input_channels, conv1_t_size and conv1_t_stride "
                "must be >= 1"
            )
        stem: list[tuple[str, nn.Module]] = [
            (
                "conv1",
                nn.Conv3d(
                    n_input_channels,
                    num_init_features,
                    kernel_size=(conv1_t_size, 7, 7),
                    stride=(conv1_t_stride, 2, 2),
                    padding=(conv1_t_size // 2, 3, 3),
                    bias=False,
                ),
            ),
            ("norm1", nn.BatchNorm3d(num_init_features)),
            ("relu1", nn.ReLU(inplace=True)),
        ]
        if not no_max_pool:
            stem.append(("pool1", nn.MaxPool3d(kernel_size=3, stride=2, padding=1)))
        self.features = nn.Sequential(OrderedDict(stem))
        channels = num_init_features
        for i, num_layers in enumerate(block_config, start=1):
            block = nn.Sequential(
                OrderedDict(
                    (
                        f"denselayer{j + 1}",
                        DenseLayer(channels + j * growth_rate, growth_rate, bn_size, drop_rate),
                    )
                    for j in range(num_layers)
                )
            )
            self.features.add_module(f"denseblock{i}", block)
            channels += num_layers * growth_rate
            if i != len(block_config):
                self.features.add_module(f"transition{i}", Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm3d(channels))
        self._init_conv_and_norm()
        self._init_head(channels, num_classes, dropout)

    def forward_features(self, x: Tensor) -> Tensor:
        """``Tensor[B, C, T, H, W] -> Tensor[B, num_features]``."""
        x = F.relu(self.features(x), inplace=True)
        return F.adaptive_avg_pool3d(x, 1).flatten(1)


def densenet(
    depth: int,
    num_classes: int = 400,
    *,
    growth_rate: int = 32,
    bn_size: int = 4,
    num_init_features: int = 64,
    drop_rate: float = 0.0,
    n_input_channels: int = 3,
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    widen_factor: float = 1.0,
    dropout: float = 0.0,
) -> DenseNet:
    """DenseNet-``depth``; ``widen_factor`` scales ``growth_rate`` and ``num_init_features``; ``drop_rate`` is
    dropout after every dense layer, ``dropout`` before the classifier."""
    if depth not in DENSENET_BLOCKS:
        raise ValueError(f"depth must be one of {sorted(DENSENET_BLOCKS)}, got {depth}")
    if widen_factor <= 0:
        raise ValueError(f"widen_factor must be > 0, got {widen_factor}")
    return DenseNet(
        DENSENET_BLOCKS[depth],
        num_classes,
        growth_rate=int(growth_rate * widen_factor),
        bn_size=bn_size,
        num_init_features=int(num_init_features * widen_factor),
        drop_rate=drop_rate,
        n_input_channels=n_input_channels,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        dropout=dropout,
    )


for _depth in DENSENET_BLOCKS:
    register_model(f"densenet{_depth}", family="densenet", depth=_depth, classifier="classifier")(
        partial(densenet, _depth)
    )

"""3D ResNet families of Hara et al. (CVPR 2018): ResNet, pre-activation ResNet, Wide ResNet and ResNeXt.

Parameter and buffer names and shapes follow the models released with the paper's public code
(3D-ResNets-PyTorch), so its checkpoints load unchanged: ``conv1``/``bn1`` stem, ``layer1..layer4`` of blocks
with ``conv1, bn1, conv2, bn2[, conv3, bn3]``, projection shortcuts ``downsample.0`` (1x1x1 conv) and
``downsample.1`` (BN), and the linear classifier ``fc``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from vidfast.models.base import VideoClassifier
from vidfast.models.registry import register_model

#: blocks per stage for every supported depth; depths >= 50 use bottleneck blocks
STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
BOTTLENECK_MIN_DEPTH = 50
RESNET_WIDTHS = (64, 128, 256, 512)
RESNEXT_WIDTHS = (128, 256, 512, 1024)
STEM_WIDTH = 64


def conv3x3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv3d:
    """3x3x3 convolution, padding 1, no bias."""
    return nn.Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """1x1x1 convolution, no bias."""
    return nn.Conv3d(in_planes, out_planes, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Parameter-free shortcut (type "A"): subsample by ``stride`` in T, H, W, then zero-pad the channels.

    ``Tensor[B, C, T, H, W] -> Tensor[B, out_planes, ceil(T/s), ceil(H/s), ceil(W/s)]``.
    """

    def __init__(self, out_planes: int, stride: int) -> None:
        super().__init__()
        self.out_planes = out_planes
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.out_planes - x.shape[1]))


class BasicBlock(nn.Module):
    """Two 3x3x3 convs with BN, residual add, ReLU. ``planes`` = width of both convs (= ``out_planes``)."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        out_planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3x3(in_planes, planes, stride, groups)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(planes, out_planes, groups=groups)
        self.bn2 = nn.BatchNorm3d(out_planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1x1 reduce -> 3x3x3 (strided, maybe grouped) -> 1x1x1 expand, each with BN; residual add, ReLU."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        out_planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride, groups)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm3d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: (BN, ReLU, 3x3x3 conv) twice, then the residual add (no ReLU after it)."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        out_planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv3x3x3(in_planes, planes, stride, groups)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, out_planes, groups=groups)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return out + residual


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: (BN, ReLU, conv) before the 1x1x1, 3x3x3, 1x1x1 convs; residual add."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        out_planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride, groups)
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + residual


class ResNet(VideoClassifier):
    """Generic 3D ResNet: stem, four stages at strides 1, 2, 2, 2 (T, H and W), global average pool, ``fc``.

    Stem: conv ``(conv1_t_size, 7, 7)``, stride ``(conv1_t_stride, 2, 2)``, BN, ReLU, ``MaxPool3d(3, 2, 1)``
    (skipped with ``no_max_pool``). ``block`` is one of the block classes above, called as
    ``block(in_planes, planes, out_planes, stride, downsample, groups)``; a stage of width ``w`` has
    ``planes = w`` (or ``cardinality * w // 32`` grouped channels when ``cardinality`` is set) and
    ``out_planes = w * expansion``. ``widen_factor`` scales the stem and every stage width (``int(w * f)``).
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        widths: Sequence[int],
        *,
        expansion: int,
        cardinality: int | None = None,
        stem_width: int = STEM_WIDTH,
        num_classes: int = 400,
        n_input_channels: int = 3,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
        shortcut_type: str = "B",
        widen_factor: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"shortcut_type must be 'A' or 'B', got {shortcut_type!r}")
        if widen_factor <= 0 or int(min(stem_width, *widths) * widen_factor) < 1:
            raise ValueError(f"widen_factor={widen_factor} leaves a stage without channels")
        if conv1_t_size < 1 or conv1_t_stride < 1 or n_input_channels < 1:
            raise ValueError("conv1_t_size, conv1_t_stride and n_input_channels must be >= 1")
        widths = [int(w * widen_factor) for w in widths]
        self.expansion = expansion
        self.cardinality = cardinality
        self.no_max_pool = no_max_pool
        self.in_planes = int(stem_width * widen_factor)
        self._build_stem(n_input_channels, self.in_planes, conv1_t_size, conv1_t_stride)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0], shortcut_type, stride=1)
        self.layer2 = self._make_layer(block, widths[1], layers[1], shortcut_type, stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], shortcut_type, stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], shortcut_type, stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self._init_head(widths[3] * expansion, num_classes, dropout)
        self._init_conv_and_norm()

    def _build_stem(self, n_input_channels: int, width: int, t_size: int, t_stride: int) -> None:
        self.conv1 = nn.Conv3d(
            n_input_channels,
            width,
            kernel_size=(t_size, 7, 7),
            stride=(t_stride, 2, 2),
            padding=(t_size // 2, 3, 3),
            bias=False,
        )
        self.bn1 = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)

    def _stem(self, x: Tensor) -> Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def _make_layer(
        self, block: type[nn.Module], width: int, blocks: int, shortcut_type: str, stride: int
    ) -> nn.Sequential:
        out_planes = width * self.expansion
        if self.cardinality is None:
            planes, groups = width, 1
        else:
            planes, groups = self.cardinality * width // 32, self.cardinality
            if planes == 0 or planes % groups:
                raise ValueError(
                    f"cardinality={groups} does not divide the {planes} grouped channels of a width-{width} "
                    "stage; lower cardinality or raise widen_factor"
                )
        downsample: nn.Module | None = None
        if stride != 1 or self.in_planes != out_planes:
            if shortcut_type == "A":
                downsample = ZeroPadShortcut(out_planes, stride)
            else:
                downsample = nn.Sequential(
                    conv1x1x1(self.in_planes, out_planes, stride), nn.BatchNorm3d(out_planes)
                )
        layers = [block(self.in_planes, planes, out_planes, stride, downsample, groups)]
        self.in_planes = out_planes
        layers += [block(out_planes, planes, out_planes, 1, None, groups) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: Tensor) -> Tensor:
        """``Tensor[B, C, T, H, W] -> Tensor[B, num_features]`` (stem, four stages, global average pool)."""
        x = self._stem(x)
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def stage_blocks(depth: int, allowed: Sequence[int]) -> tuple[int, int, int, int]:
    """Blocks per stage of a ResNet-``depth``; ValueError unless ``depth`` is in ``allowed``."""
    if depth not in allowed:
        raise ValueError(f"depth must be one of {sorted(allowed)}, got {depth}")
    return STAGE_BLOCKS[depth]


def basic_or_bottleneck_builder(
    basic: type[nn.Module], bottleneck: type[nn.Module], doc: str, network: type[ResNet] = ResNet
) -> Callable[..., ResNet]:
    """A ResNet-``depth`` builder: ``basic`` blocks up to depth 34, ``bottleneck`` blocks (expansion 4) from
    50, in ``network`` (its stem and stages). ``resnet``, ``preact_resnet`` and ``r2plus1d`` differ only in
    the blocks and the network class."""

    def build(
        depth: int,
        num_classes: int = 400,
        *,
        n_input_channels: int = 3,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
        shortcut_type: str = "B",
        widen_factor: float = 1.0,
        dropout: float = 0.0,
    ) -> ResNet:
        layers = stage_blocks(depth, STAGE_BLOCKS)
        deep = depth >= BOTTLENECK_MIN_DEPTH
        return network(
            bottleneck if deep else basic,
            layers,
            RESNET_WIDTHS,
            expansion=4 if deep else 1,
            num_classes=num_classes,
            n_input_channels=n_input_channels,
            conv1_t_size=conv1_t_size,
            conv1_t_stride=conv1_t_stride,
            no_max_pool=no_max_pool,
            shortcut_type=shortcut_type,
            widen_factor=widen_factor,
            dropout=dropout,
        )

    build.__doc__ = doc
    return build


resnet = basic_or_bottleneck_builder(
    BasicBlock,
    Bottleneck,
    "3D ResNet-``depth`` (basic blocks up to 34, bottleneck blocks with expansion 4 from 50).",
)
preact_resnet = basic_or_bottleneck_builder(
    PreActBasicBlock,
    PreActBottleneck,
    "Pre-activation 3D ResNet-``depth`` (same stem and stages as :func:`resnet`, pre-activation blocks).",
)


def wide_resnet(
    depth: int,
    num_classes: int = 400,
    *,
    k: int = 2,
    n_input_channels: int = 3,
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    shortcut_type: str = "B",
    widen_factor: float = 1.0,
    dropout: float = 0.0,
) -> ResNet:
    """Wide 3D ResNet-``depth``: bottleneck widths times ``k``, expansion 2 (the stem stays 64 wide)."""
    layers = stage_blocks(depth, [d for d in STAGE_BLOCKS if d >= BOTTLENECK_MIN_DEPTH])
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return ResNet(
        Bottleneck,
        layers,
        [w * k for w in RESNET_WIDTHS],
        expansion=2,
        num_classes=num_classes,
        n_input_channels=n_input_channels,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        shortcut_type=shortcut_type,
        widen_factor=widen_factor,
        dropout=dropout,
    )


def resnext(
    depth: int,
    num_classes: int = 400,
    *,
    cardinality: int = 32,
    n_input_channels: int = 3,
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    shortcut_type: str = "B",
    widen_factor: float = 1.0,
    dropout: float = 0.0,
) -> ResNet:
    """3D ResNeXt-``depth``: stage widths 128/256/512/1024, expansion 2, 3x3x3 convs in ``cardinality`` groups
    of ``cardinality * width // 32`` channels in all."""
    layers = stage_blocks(depth, [d for d in STAGE_BLOCKS if d >= BOTTLENECK_MIN_DEPTH])
    if cardinality < 1:
        raise ValueError(f"cardinality must be >= 1, got {cardinality}")
    return ResNet(
        Bottleneck,
        layers,
        RESNEXT_WIDTHS,
        expansion=2,
        cardinality=cardinality,
        num_classes=num_classes,
        n_input_channels=n_input_channels,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        shortcut_type=shortcut_type,
        widen_factor=widen_factor,
        dropout=dropout,
    )


for _depth in STAGE_BLOCKS:
    register_model(f"resnet{_depth}", family="resnet", depth=_depth)(partial(resnet, _depth))
    register_model(f"preact_resnet{_depth}", family="preact_resnet", depth=_depth)(
        partial(preact_resnet, _depth)
    )
for _depth in (50, 101):
    register_model(f"wide_resnet{_depth}", family="wide_resnet", depth=_depth)(partial(wide_resnet, _depth))
for _depth in (50, 101, 152, 200):
    register_model(f"resnext{_depth}", family="resnext", depth=_depth)(partial(resnext, _depth))

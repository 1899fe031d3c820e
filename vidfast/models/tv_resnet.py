"""torchvision's video ResNets (Tran et al. CVPR 2018): ``tv_r3d_18``, ``tv_mc3_18``, ``tv_r2plus1d_18``.

Module names and shapes follow torchvision's ``VideoResNet`` so that its weight files (raw state dicts)
load unchanged: ``stem`` (conv (3,7,7) stride (1,2,2), BN, ReLU, no max pool; R(2+1)D: a (1,7,7) conv to
45 channels, BN, ReLU, a (3,1,1) conv to 64, BN, ReLU), ``layer1..4`` of basic blocks whose ``conv1`` is
``Sequential(conv, BN, ReLU)`` and ``conv2`` ``Sequential(conv, BN)``, shortcuts ``downsample.0/1`` and
``fc``. MC3 uses (1,3,3) convs in layers 2-4; R(2+1)D factorises each 3x3x3 conv into a (1,3,3) conv to
``midplanes`` channels, BN, ReLU and a (3,1,1) conv.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vidfast.models.base import VideoClassifier
from vidfast.models.registry import register_model

TV_WIDTHS = (64, 128, 256, 512)
TV_BLOCKS = (2, 2, 2, 2)
KINDS = ("3d", "2d", "2plus1d")  # full 3x3x3, spatial-only (1,3,3), factorised (2+1)D


def _conv(kind: str, in_planes: int, out_planes: int, stride: int, mid: int) -> nn.Module:
    """The 3x3x3-equivalent conv of a block of ``kind`` (see :data:`KINDS`); ``mid``: the (2+1)D conv's
    intermediate width."""
    if kind == "3d":
        return nn.Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
    if kind == "2d":
        return nn.Conv3d(in_planes, out_planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
    return nn.Sequential(
        nn.Conv3d(in_planes, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, out_planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
    )


class TvBasicBlock(nn.Module):
    """``conv1 = (conv, BN, ReLU)``, ``conv2 = (conv, BN)``, residual add, ReLU. Both (2+1)D convs use the
    block's ``midplanes`` (parameter count of a 3x3x3 conv from ``in_planes`` to ``planes``)."""

    def __init__(self, kind: str, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        mid = (in_planes * planes * 27) // (in_planes * 9 + 3 * planes)
        self.conv1 = nn.Sequential(_conv(kind, in_planes, planes, stride, mid), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(_conv(kind, planes, planes, 1, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            t_stride = 1 if kind == "2d" else stride
            self.downsample = nn.Sequential(
                nn.Conv3d(in_planes, planes, 1, stride=(t_stride, stride, stride), bias=False),
                nn.BatchNorm3d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


class TvVideoResNet(VideoClassifier):
    """torchvision's ``VideoResNet`` with basic blocks: stem, four stages (``kinds[i]`` convs), global average
    pool, ``fc``. ``Tensor[B, 3, T, H, W] -> Tensor[B, num_classes]``."""

    def __init__(self, kinds: Sequence[str], factorised_stem: bool, num_classes: int = 400,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if len(kinds) != 4 or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be 4 of {KINDS}, got {list(kinds)}")
        if factorised_stem:
            self.stem = nn.Sequential(
                nn.Conv3d(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(45),
                nn.ReLU(inplace=True),
                nn.Conv3d(45, 64, (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(64),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(64),
                nn.ReLU(inplace=True),
            )
        in_planes = 64
        for i, (kind, width, blocks) in enumerate(zip(kinds, TV_WIDTHS, TV_BLOCKS, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [TvBasicBlock(kind, in_planes, width, stride)]
            stage += [TvBasicBlock(kind, width, width) for _ in range(1, blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            in_planes = width
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self._init_head(in_planes, num_classes, dropout)
        self._init_conv_and_norm()

    def forward_features(self, x: Tensor) -> Tensor:
        """``Tensor[B, 3, T, H, W] -> Tensor[B, 512]``."""
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.avgpool(x).flatten(1)


@register_model("tv_r3d_18", family="torchvision", depth=18, convention="torchvision")
def tv_r3d_18(num_classes: int = 400, dropout: float = 0.0) -> TvVideoResNet:
    """torchvision ``r3d_18``: 3x3x3 convs throughout."""
    return TvVideoResNet(("3d",) * 4, False, num_classes, dropout)


@register_model("tv_mc3_18", family="torchvision", depth=18, convention="torchvision")
def tv_mc3_18(num_classes: int = 400, dropout: float = 0.0) -> TvVideoResNet:
    """torchvision ``mc3_18``: 3x3x3 convs in layer1, (1,3,3) convs in layers 2-4."""
    return TvVideoResNet(("3d", "2d", "2d", "2d"), False, num_classes, dropout)


@register_model("tv_r2plus1d_18", family="torchvision", depth=18, convention="torchvision")
def tv_r2plus1d_18(num_classes: int = 400, dropout: float = 0.0) -> TvVideoResNet:
    """torchvision ``r2plus1d_18``: factorised (2+1)D convs and stem."""
    return TvVideoResNet(("2plus1d",) * 4, True, num_classes, dropout)

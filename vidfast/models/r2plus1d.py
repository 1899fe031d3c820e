"""R(2+1)D ResNets: every 3D conv factorised into a spatial ``1 x k x k`` and a temporal ``t x 1 x 1`` conv.

The mid-channel count keeps the parameter count of the full 3D conv it replaces:
``mid = (in * out * t * k * k) // (in * k * k + t * out)``. Names follow the reference models
(``conv1_s, bn1_s, conv1_t, bn1_t`` stem; ``convN_s, bnN_s, convN_t, bnN_t`` in blocks, ``conv1``/``conv3``
1x1x1 convs in bottlenecks, ``downsample.0/1`` shortcuts, ``fc``).
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from vidfast.models.registry import register_model
from vidfast.models.resnet import STAGE_BLOCKS, ResNet, basic_or_bottleneck_builder, conv1x1x1


def factorized_mid_planes(in_planes: int, out_planes: int, t: int, k: int) -> int:
    """Channels between the spatial and temporal convs giving (2+1)D the parameters of ``t x k x k``."""
    return (in_planes * out_planes * t * k * k) // (in_planes * k * k + t * out_planes)


def _spatial(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(
        in_planes, out_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
    )


def _temporal(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False)


class R2Plus1dBasicBlock(nn.Module):
    """Basic block, both 3x3x3 convs factorised: (s, BN, ReLU, t, BN) twice, ReLU between; add; ReLU."""

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
        if groups != 1:
            raise ValueError("R(2+1)D blocks do not support grouped convolutions")
        mid1 = factorized_mid_planes(in_planes, planes, 3, 3)
        self.conv1_s = _spatial(in_planes, mid1, stride)
        self.bn1_s = nn.BatchNorm3d(mid1)
        self.conv1_t = _temporal(mid1, planes, stride)
        self.bn1_t = nn.BatchNorm3d(planes)
        mid2 = factorized_mid_planes(planes, out_planes, 3, 3)
        self.conv2_s = _spatial(planes, mid2)
        self.bn2_s = nn.BatchNorm3d(mid2)
        self.conv2_t = _temporal(mid2, out_planes)
        self.bn2_t = nn.BatchNorm3d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1_s(self.conv1_s(x)))
        out = self.relu(self.bn1_t(self.conv1_t(out)))
        out = self.relu(self.bn2_s(self.conv2_s(out)))
        out = self.bn2_t(self.conv2_t(out))
        return self.relu(out + residual)


class R2Plus1dBottleneck(nn.Module):
    """Bottleneck whose 3x3x3 conv is factorised: 1x1x1 -> (1x3x3 -> 3x1x1) -> 1x1x1, BN + ReLU between."""

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
        if groups != 1:
            raise ValueError("R(2+1)D blocks do not support grouped convolutions")
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        mid = factorized_mid_planes(planes, planes, 3, 3)
        self.conv2_s = _spatial(planes, mid, stride)
        self.bn2_s = nn.BatchNorm3d(mid)
        self.conv2_t = _temporal(mid, planes, stride)
        self.bn2_t = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm3d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2_s(self.conv2_s(out)))
        out = self.relu(self.bn2_t(self.conv2_t(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class R2Plus1dResNet(ResNet):
    """ResNet with a factorised stem: ``1x7x7`` conv (stride ``(1, 2, 2)``) -> BN -> ReLU ->
    ``conv1_t_size x 1 x 1`` conv (stride ``(conv1_t_stride, 1, 1)``) -> BN -> ReLU.

    The stem's mid channels are computed for a 3-channel input whatever ``n_input_channels`` is, as the
    reference implementation does, so that its checkpoints keep their shapes.
    """

    def _build_stem(self, n_input_channels: int, width: int, t_size: int, t_stride: int) -> None:
        mid = (3 * width * t_size * 7 * 7) // (3 * 7 * 7 + t_size * width)
        self.conv1_s = nn.Conv3d(
            n_input_channels, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False
        )
        self.bn1_s = nn.BatchNorm3d(mid)
        self.conv1_t = nn.Conv3d(
            mid, width, (t_size, 1, 1), stride=(t_stride, 1, 1), padding=(t_size // 2, 0, 0), bias=False
        )
        self.bn1_t = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)

    def _stem(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1_s(self.conv1_s(x)))
        return self.relu(self.bn1_t(self.conv1_t(x)))


r2plus1d = basic_or_bottleneck_builder(
    R2Plus1dBasicBlock,
    R2Plus1dBottleneck,
    "R(2+1)D-``depth`` (basic blocks up to 34, bottlenecks with expansion 4 from 50).",
    network=R2Plus1dResNet,
)


for _depth in STAGE_BLOCKS:
    register_model(f"r2plus1d_{_depth}", family="r2plus1d", depth=_depth)(partial(r2plus1d, _depth))

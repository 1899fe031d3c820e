"""C3D (Tran et al. 2015) with batch normalisation after every conv ("C3D w/ BN" in Hara et al. 2018).

Layers carry the C3D paper's names: ``conv1a``/``bn1a`` ... ``conv5b``/``bn5b``, ``pool1`` ... ``pool5``,
``fc6``, ``fc7`` and the classifier ``fc``. An adaptive average pool to ``1 x 4 x 4`` before ``fc6`` is the
identity for the native 16x112x112 clip and lets other clip sizes through.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidfast.models.base import VideoClassifier
from vidfast.models.registry import register_model

#: (name, output channels) of the convs, in order; a pool follows the last conv of every group
C3D_CONVS: tuple[tuple[str, int], ...] = (
    ("1a", 64),
    ("2a", 128),
    ("3a", 256),
    ("3b", 256),
    ("4a", 512),
    ("4b", 512),
    ("5a", 512),
    ("5b", 512),
)
C3D_POOL_AFTER = ("1a", "2a", "3b", "4b", "5b")
C3D_FC_WIDTH = 4096
C3D_POOL5_SIZE = (1, 4, 4)


def _bin_matrix(n_in: int, n_out: int, like: Tensor) -> Tensor:
    """``Tensor[n_out, n_in]`` averaging the bins of adaptive average pooling (``nn.AdaptiveAvgPool1d``)."""
    rows = []
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out)
        rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(n_in)])
    return torch.tensor(rows, dtype=like.dtype, device=like.device)


def pool5_to_fc6_grid(x: Tensor) -> Tensor:
    """Adaptive average pool ``Tensor[B, C, T, H, W] -> Tensor[B, C, 1, 4, 4]`` (identity at the native size).

    Written as a mean and two small matrix products, which torch.onnx exports (``adaptive_avg_pool3d`` to a
    size other than 1 has no ONNX lowering)."""
    if tuple(x.shape[-3:]) == C3D_POOL5_SIZE:
        return x
    _, out_h, out_w = C3D_POOL5_SIZE
    pooled = torch.einsum(
        "bchw,ih,jw->bcij", x.mean(2), _bin_matrix(x.shape[3], out_h, x), _bin_matrix(x.shape[4], out_w, x)
    )
    return pooled.unsqueeze(2)


class C3D(VideoClassifier):
    """C3D w/ BN: eight 3x3x3 convs (BN, ReLU), five max pools (``pool1`` spatial only, ``pool5`` padded),
    ``fc6``/``fc7`` (ReLU, dropout), classifier ``fc``. ``forward_features`` returns the fc7 activations.
    Needs ``T >= 16`` frames (four temporal halvings)."""

    def __init__(
        self,
        num_classes: int = 400,
        *,
        n_input_channels: int = 3,
        widen_factor: float = 1.0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if widen_factor <= 0 or int(C3D_CONVS[0][1] * widen_factor) < 1:
            raise ValueError(f"widen_factor={widen_factor} leaves a layer without channels")
        channels = n_input_channels
        for name, width in C3D_CONVS:
            width = int(width * widen_factor)
            setattr(self, f"conv{name}", nn.Conv3d(channels, width, 3, padding=1, bias=False))
            setattr(self, f"bn{name}", nn.BatchNorm3d(width))
            if name in C3D_POOL_AFTER:
                group = name[0]
                if group == "1":
                    pool = nn.MaxPool3d((1, 2, 2), stride=(1, 2, 2))
                elif group == "5":
                    pool = nn.MaxPool3d(2, stride=2, padding=(0, 1, 1))
                else:
                    pool = nn.MaxPool3d(2, stride=2)
                setattr(self, f"pool{group}", pool)
            channels = width
        self.relu = nn.ReLU(inplace=True)
        fc_width = int(C3D_FC_WIDTH * widen_factor)
        self.fc6 = nn.Linear(channels * C3D_POOL5_SIZE[0] * C3D_POOL5_SIZE[1] * C3D_POOL5_SIZE[2], fc_width)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self._init_conv_and_norm()
        self._init_head(fc_width, num_classes, dropout)

    def forward_features(self, x: Tensor) -> Tensor:
        """``Tensor[B, C, T, H, W] -> Tensor[B, num_features]`` (fc7 activations, before dropout)."""
        for name, _ in C3D_CONVS:
            x = self.relu(getattr(self, f"bn{name}")(getattr(self, f"conv{name}")(x)))
            if name in C3D_POOL_AFTER:
                x = getattr(self, f"pool{name[0]}")(x)
        x = pool5_to_fc6_grid(x).flatten(1)
        x = self.drop6(self.relu(self.fc6(x)))
        return self.relu(self.fc7(x))


@register_model(family="c3d", depth=11)
def c3d(
    num_classes: int = 400, *, n_input_channels: int = 3, widen_factor: float = 1.0, dropout: float = 0.5
) -> C3D:
    """C3D w/ BN; ``widen_factor`` scales every conv and fc width, ``dropout`` follows fc6 and fc7."""
    return C3D(num_classes, n_input_channels=n_input_channels, widen_factor=widen_factor, dropout=dropout)

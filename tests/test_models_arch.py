"""Architecture facts of the default configurations: parameter counts derived here from each architecture's
arithmetic, and the parameter/buffer names and shapes of the reference (3D-ResNets-PyTorch) models.

Models are built on the meta device: shapes without allocating hundreds of MB."""

from __future__ import annotations

import pytest
import torch

from vidfast.models import create_model, model_card

BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def conv(cin: int, cout: int, *kernel: int, groups: int = 1) -> int:
    n = cin // groups * cout
    for k in kernel:
        n *= k
    return n


def bn(c: int) -> int:
    return 2 * c


def linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def projection(cin: int, cout: int, stride: int) -> int:
    return conv(cin, cout, 1, 1, 1) + bn(cout) if stride != 1 or cin != cout else 0


def resnet_params(blocks: list[int], widths: list[int], expansion: int, block, classes: int = 400) -> int:
    """Stem (7x7x7 conv + BN) + stages + fc, with ``block(cin, width, out) -> params``."""
    n = conv(3, 64, 7, 7, 7) + bn(64)
    cin = 64
    for i, (count, width) in enumerate(zip(blocks, widths, strict=True)):
        out = width * expansion
        for j in range(count):
            stride = 2 if i > 0 and j == 0 else 1
            n += block(cin, width, out) + projection(cin, out, stride)
            cin = out
    return n + linear(cin, classes)


def basic(cin: int, width: int, out: int) -> int:
    return conv(cin, width, 3, 3, 3) + bn(width) + conv(width, out, 3, 3, 3) + bn(out)


def bottleneck(cin: int, width: int, out: int, groups: int = 1) -> int:
    return (
        conv(cin, width, 1, 1, 1)
        + bn(width)
        + conv(width, width, 3, 3, 3, groups=groups)
        + bn(width)
        + conv(width, out, 1, 1, 1)
        + bn(out)
    )


def r2plus1d_basic(cin: int, width: int, out: int) -> int:
    m1 = cin * width * 27 // (cin * 9 + 3 * width)
    m2 = width * out * 27 // (width * 9 + 3 * out)
    return (
        conv(cin, m1, 1, 3, 3)
        + bn(m1)
        + conv(m1, width, 3, 1, 1)
        + bn(width)
        + conv(width, m2, 1, 3, 3)
        + bn(m2)
        + conv(m2, out, 3, 1, 1)
        + bn(out)
    )


def expected_params(name: str) -> int:
    if name == "resnet18":
        return resnet_params([2, 2, 2, 2], [64, 128, 256, 512], 1, basic)
    if name == "resnet50":
        return resnet_params([3, 4, 6, 3], [64, 128, 256, 512], 4, bottleneck)
    if name == "wide_resnet50":
        return resnet_params([3, 4, 6, 3], [128, 256, 512, 1024], 2, bottleneck)
    if name == "resnext101":
        # cardinality 32: 32 * width // 32 = width grouped channels
        return resnet_params(
            [3, 4, 23, 3], [128, 256, 512, 1024], 2, lambda c, w, o: bottleneck(c, w, o, groups=32)
        )
    if name == "r2plus1d_18":
        mid = 3 * 64 * 7 * 49 // (3 * 49 + 7 * 64)
        stem_2p1d = conv(3, mid, 1, 7, 7) + bn(mid) + conv(mid, 64, 7, 1, 1) + bn(64)
        plain_stem = conv(3, 64, 7, 7, 7) + bn(64)
        return resnet_params([2, 2, 2, 2], [64, 128, 256, 512], 1, r2plus1d_basic) - plain_stem + stem_2p1d
    if name == "densenet121":
        n, c = conv(3, 64, 7, 7, 7) + bn(64), 64
        for i, layers in enumerate((6, 12, 24, 16)):
            for _ in range(layers):
                n += bn(c) + conv(c, 128, 1, 1, 1) + bn(128) + conv(128, 32, 3, 3, 3)
                c += 32
            if i < 3:
                n += bn(c) + conv(c, c // 2, 1, 1, 1)
                c //= 2
        return n + bn(c) + linear(c, 400)
    raise KeyError(name)


@pytest.mark.parametrize(
    "name", ["resnet18", "resnet50", "resnext101", "densenet121", "wide_resnet50", "r2plus1d_18"]
)
def test_default_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name, num_classes=400)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_params(name)
    assert model_card(name).num_params == count


def shapes(name: str) -> dict[str, list[int]]:
    with torch.device("meta"):
        model = create_model(name, num_classes=400)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def bn_entries(prefix: str, c: int) -> dict[str, list[int]]:
    return {f"{prefix}.{k}": ([] if k == "num_batches_tracked" else [c]) for k in BN_KEYS}


def reference_resnet_keys(
    blocks: list[int], widths: list[int], expansion: int, mid=lambda w: w, groups: int = 1
) -> dict[str, list[int]]:
    """Every key and shape of a reference 3D ResNet/ResNeXt (shortcut B, 400 classes)."""
    keys = {"conv1.weight": [64, 3, 7, 7, 7], **bn_entries("bn1", 64)}
    cin = 64
    for i, (count, width) in enumerate(zip(blocks, widths, strict=True), start=1):
        out = width * expansion
        for j in range(count):
            p = f"layer{i}.{j}"
            if expansion == 1:
                keys[f"{p}.conv1.weight"] = [width, cin, 3, 3, 3]
                keys |= bn_entries(f"{p}.bn1", width)
                keys[f"{p}.conv2.weight"] = [out, width, 3, 3, 3]
                keys |= bn_entries(f"{p}.bn2", out)
            else:
                m = mid(width)
                keys[f"{p}.conv1.weight"] = [m, cin, 1, 1, 1]
                keys |= bn_entries(f"{p}.bn1", m)
                keys[f"{p}.conv2.weight"] = [m, m // groups, 3, 3, 3]
                keys |= bn_entries(f"{p}.bn2", m)
                keys[f"{p}.conv3.weight"] = [out, m, 1, 1, 1]
                keys |= bn_entries(f"{p}.bn3", out)
            if j == 0 and (i > 1 or cin != out):
                keys[f"{p}.downsample.0.weight"] = [out, cin, 1, 1, 1]
                keys |= bn_entries(f"{p}.downsample.1", out)
            cin = out
    keys["fc.weight"], keys["fc.bias"] = [400, cin], [400]
    return keys


def test_resnet18_state_dict_matches_reference_layout() -> None:
    got = shapes("resnet18")
    assert got == reference_resnet_keys([2, 2, 2, 2], [64, 128, 256, 512], 1)
    assert got["conv1.weight"] == [64, 3, 7, 7, 7]
    assert got["layer2.0.downsample.0.weight"] == [128, 64, 1, 1, 1]
    assert got["fc.weight"] == [400, 512]
    assert "layer1.0.downsample.0.weight" not in got


def test_resnet50_state_dict_matches_reference_layout() -> None:
    got = shapes("resnet50")
    assert got == reference_resnet_keys([3, 4, 6, 3], [64, 128, 256, 512], 4)
    assert got["layer1.0.downsample.0.weight"] == [256, 64, 1, 1, 1]
    assert got["fc.weight"] == [400, 2048]


def test_resnext101_state_dict_matches_reference_layout() -> None:
    got = shapes("resnext101")
    assert got == reference_resnet_keys([3, 4, 23, 3], [128, 256, 512, 1024], 2, groups=32)
    assert got["layer1.0.conv2.weight"] == [128, 4, 3, 3, 3]
    assert got["layer4.0.downsample.0.weight"] == [2048, 1024, 1, 1, 1]
    assert got["fc.weight"] == [400, 2048]


def test_densenet121_state_dict_matches_reference_layout() -> None:
    got = shapes("densenet121")
    want = {"features.conv1.weight": [64, 3, 7, 7, 7], **bn_entries("features.norm1", 64)}
    c = 64
    for i, layers in enumerate((6, 12, 24, 16), start=1):
        for j in range(1, layers + 1):
            p = f"features.denseblock{i}.denselayer{j}"
            want |= bn_entries(f"{p}.norm1", c)
            want[f"{p}.conv1.weight"] = [128, c, 1, 1, 1]
            want |= bn_entries(f"{p}.norm2", 128)
            want[f"{p}.conv2.weight"] = [32, 128, 3, 3, 3]
            c += 32
        if i < 4:
            want |= bn_entries(f"features.transition{i}.norm", c)
            want[f"features.transition{i}.conv.weight"] = [c // 2, c, 1, 1, 1]
            c //= 2
    want |= bn_entries("features.norm5", c)
    want["classifier.weight"], want["classifier.bias"] = [400, 1024], [400]
    assert got == want


def test_r2plus1d18_state_dict_matches_reference_layout() -> None:
    got = shapes("r2plus1d_18")
    assert got["conv1_s.weight"] == [110, 3, 1, 7, 7]  # 3*64*7*49 // (3*49 + 7*64) = 110
    assert got["conv1_t.weight"] == [64, 110, 7, 1, 1]
    assert got["bn1_s.running_var"] == [110] and got["bn1_t.weight"] == [64]
    assert got["layer1.0.conv1_s.weight"] == [144, 64, 1, 3, 3]  # 64*64*27 // (64*9 + 3*64) = 144
    assert got["layer1.0.conv1_t.weight"] == [64, 144, 3, 1, 1]
    assert got["layer2.0.conv1_s.weight"] == [230, 64, 1, 3, 3]  # 64*128*27 // (64*9 + 3*128) = 230
    assert got["layer2.0.conv2_s.weight"] == [288, 128, 1, 3, 3]
    assert got["layer2.0.downsample.0.weight"] == [128, 64, 1, 1, 1]
    assert got["layer4.1.bn2_t.weight"] == [512] and got["fc.weight"] == [400, 512]
    per_block = ["conv1_s.weight", "conv1_t.weight", "conv2_s.weight", "conv2_t.weight"]
    per_block += [f"{b}.{k}" for b in ("bn1_s", "bn1_t", "bn2_s", "bn2_t") for k in BN_KEYS]
    for stage in range(1, 5):
        for block in range(2):
            for key in per_block:
                assert f"layer{stage}.{block}.{key}" in got
    assert len([k for k in got if ".downsample." in k]) == 3 * (1 + len(BN_KEYS))

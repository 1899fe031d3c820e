"""Weight-file reading/loading (vidfast and reference-code formats, puzzle checkpoints, safety), 2D->3D
inflation and fine-tuning parameter groups."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from vidfast.errors import CheckpointError
from vidfast.models import (
    PuzzleNet,
    create_model,
    finetune_param_groups,
    inflate_from_2d,
    load_checkpoint,
    read_checkpoint,
)
from vidfast.models.inflate import inflate_kernel
from vidfast.models.weights import infer_model_kwargs, parse_arch

CLIP = (2, 3, 8, 32, 32)


@pytest.fixture
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A tiny resnet18 with non-trivial BN statistics, an input and its eval-mode logits."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=7, widen_factor=0.25)
    x = torch.randn(CLIP)
    with torch.no_grad():
        model(torch.randn(CLIP) * 2 + 0.5)  # move BN running statistics away from their init
    model.eval()
    with torch.no_grad():
        return model, x, model(x)


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_vidfast_checkpoint_round_trip(tmp_path: Path, trained) -> None:
    model, x, ref = trained
    path = tmp_path / "ck.pth"
    torch.save(
        {
            "arch": "resnet18",
            "model_kwargs": {"widen_factor": 0.25},
            "task": "classify",
            "num_classes": 7,
            "class_names": [],
            "state_dict": model.state_dict(),
            "epoch": 3,
        },
        path,
    )
    loaded = load_checkpoint(None, path)
    assert loaded.arch == "resnet18" and loaded.model_kwargs == {"widen_factor": 0.25}
    assert torch.equal(logits(loaded, x), ref)
    assert torch.equal(logits(load_checkpoint("resnet18", path), x), ref)
    assert read_checkpoint(path)["epoch"] == 3


@pytest.mark.parametrize("wrap", ["raw", "module_prefix", "state_dict_wrapper", "reference_arch"])
def test_round_trip_variants_reproduce_outputs(tmp_path: Path, trained, wrap: str) -> None:
    model, x, ref = trained
    sd = model.state_dict()
    if wrap == "raw":
        obj = sd
    elif wrap == "module_prefix":
        obj = {f"module.{k}": v for k, v in sd.items()}
    elif wrap == "state_dict_wrapper":
        obj = {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 1}
    else:  # the reference code writes arch "resnet-18" and no model options
        obj = {"arch": "resnet-18", "state_dict": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}}
    path = tmp_path / f"{wrap}.pth"
    torch.save(obj, path)
    fresh = create_model("resnet18", num_classes=7, widen_factor=0.25)
    assert torch.equal(logits(load_checkpoint(fresh, path), x), ref)
    if wrap == "reference_arch":
        built = load_checkpoint(None, path)  # options read off the weights: widen 0.25, shortcut B
        assert torch.equal(logits(built, x), ref)
        assert built.model_kwargs["widen_factor"] == 0.25 and built.model_kwargs["shortcut_type"] == "B"


def test_different_class_count_replaces_classifier(tmp_path: Path, trained) -> None:
    model, x, _ = trained
    path = tmp_path / "ck.pth"
    torch.save({"arch": "resnet-18", "state_dict": model.state_dict()}, path)
    for target in (None, "resnet18", create_model("resnet18", num_classes=7, widen_factor=0.25)):
        tuned = load_checkpoint(target, path, num_classes=3).eval()
        assert tuned.num_classes == 3 and tuned(x).shape == (2, 3)
        with torch.no_grad():
            assert torch.equal(tuned.forward_features(x), model.forward_features(x))
    # same count: the trained classifier is kept
    assert torch.equal(load_checkpoint(None, path, num_classes=7).fc.weight, model.fc.weight)


def test_mismatches_raise_one_clear_error(tmp_path: Path, trained) -> None:
    model, _, _ = trained
    sd = dict(model.state_dict())
    sd.pop("layer1.0.conv1.weight")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, path)
    target = create_model("resnet18", num_classes=7, widen_factor=0.5)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(target, path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "1 missing key(s): layer1.0.conv1.weight" in msg
    assert "1 unexpected key(s): extra.weight" in msg
    assert "mis-shaped" in msg and "conv1.weight [16, 3, 7, 7, 7] vs [32, 3, 7, 7, 7]" in msg
    with pytest.raises(CheckpointError, match="pass num_classes"):
        load_checkpoint(create_model("resnet18", num_classes=4, widen_factor=0.25), model.state_dict())
    with pytest.raises(CheckpointError, match="not 'resnet34'"):
        load_checkpoint("resnet34", {"arch": "resnet-18", "state_dict": model.state_dict()})
    recognised = load_checkpoint(None, model.state_dict())  # no 'arch': read off the keys and shapes
    assert recognised.arch == "resnet18" and recognised.model_kwargs["widen_factor"] == 0.25
    with pytest.raises(CheckpointError, match="fit no supported architecture; rejected: .*resnet18"):
        load_checkpoint(None, sd)  # the missing and unexpected keys above
    # non-strict loading keeps what matches
    partial = load_checkpoint(create_model("resnet18", num_classes=7, widen_factor=0.25), path, strict=False)
    assert torch.equal(partial.layer2[0].conv1.weight, model.layer2[0].conv1.weight)


class _Marker:
    """Unpickling this would create a file: the proof that a loader executed pickle code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch_save", "plain_pickle"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"arch": "resnet18", "state_dict": {"fc.weight": torch.zeros(2, 2)}, "hook": _Marker(marker)}
    if writer == "torch_save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(None, path)
    assert not marker.exists()


def test_missing_corrupt_and_non_dict_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pth")
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip archive" * 3)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(bad)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="expected a dict"):
        read_checkpoint(tensor)
    with pytest.raises(CheckpointError, match="no state dict"):
        load_checkpoint("resnet18", {"arch": "resnet18", "epoch": 1})


def test_puzzle_checkpoint_gives_backbone_and_fresh_classifier(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = PuzzleNet(create_model("resnet10", widen_factor=0.25), hidden=16)
    with torch.no_grad():
        net(torch.randn(2, 4, 3, 4, 32, 32))  # update BN statistics
    path = tmp_path / "puzzle.pth"
    torch.save(
        {
            "arch": "resnet10",
            "model_kwargs": {"widen_factor": 0.25},
            "task": "puzzle",
            "num_classes": 0,
            "puzzle": {"num_pieces": 4, "num_perm_classes": 24, "rotation_classes": 4},
            "state_dict": net.state_dict(),
        },
        path,
    )
    x = torch.randn(CLIP)
    with torch.no_grad():
        feats = net.backbone.eval()(x)
    plain = load_checkpoint(None, path, num_classes=5).eval()
    assert plain.num_classes == 5 and plain(x).shape == (2, 5)
    with torch.no_grad():
        assert torch.equal(plain.forward_features(x), feats)
    # the backbone alone, in plain-model format, loads by name (options read off the weights)
    again = load_checkpoint("resnet10", {"state_dict": net.backbone_state_dict()}, num_classes=5).eval()
    with torch.no_grad():
        assert torch.equal(again.forward_features(x), feats)
    # and the whole puzzle network loads back into a PuzzleNet
    clone = load_checkpoint(PuzzleNet(create_model("resnet10", widen_factor=0.25), hidden=16), path)
    assert all(
        torch.equal(a, b) for a, b in zip(clone.state_dict().values(), net.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize(
    ("arch", "name", "kwargs"),
    [
        ("resnet-34", "resnet34", {"shortcut_type": "A"}),
        ("resnet", "resnet50", {}),
        ("preresnet-18", "preact_resnet18", {}),
        ("wideresnet-50", "wide_resnet50", {"k": 2}),
        ("resnext-101", "resnext101", {"cardinality": 16}),
        ("resnet2p1d", "r2plus1d_18", {"conv1_t_size": 3}),
        ("densenet-121", "densenet121", {}),
        ("densenet", "densenet169", {}),
        ("c3d", "c3d", {}),
    ],
)
def test_reference_arch_strings_and_option_inference(arch: str, name: str, kwargs: dict) -> None:
    with torch.device("meta"):
        sd = create_model(name, widen_factor=0.5, **kwargs).state_dict()
    assert parse_arch(arch, sd) == name
    inferred = infer_model_kwargs(name, sd)
    for key, value in kwargs.items():
        assert inferred[key] == value
    with torch.device("meta"):
        rebuilt = create_model(name, **inferred)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in sd.items()}


def test_legacy_densenet_names_are_renamed() -> None:
    torch.manual_seed(0)
    model = create_model("densenet121", num_classes=3, widen_factor=0.25, no_max_pool=True).eval()
    legacy = {}
    for key, value in model.state_dict().items():
        key = key.replace("features.conv1.", "features.conv0.").replace("features.norm1.", "features.norm0.")
        for part in ("norm1", "conv1", "norm2", "conv2"):
            key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.") if "denselayer" in key else key
        legacy[f"module.{key}"] = value
    assert "module.features.denseblock1.denselayer1.norm.1.weight" in legacy
    loaded = load_checkpoint(
        create_model("densenet121", num_classes=3, widen_factor=0.25, no_max_pool=True),
        {"arch": "densenet-121", "state_dict": legacy},
    )
    x = torch.randn(1, 3, 8, 16, 16)
    assert torch.equal(logits(loaded, x), logits(model, x))


class _Block2d(nn.Module):
    """torchvision-style 2D BasicBlock (same parameter names as torchvision.models.resnet)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class _ResNet10_2d(nn.Module):
    """A small torchvision-format 2D ResNet-10 (one block per stage), widths 16/32/64/128."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = (16, 32, 64, 128), 16
        for i, w in enumerate(widths, start=1):
            setattr(self, f"layer{i}", nn.Sequential(_Block2d(cin, w, 1 if i == 1 else 2)))
            cin = w
        self.fc = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


def _randomize_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def test_inflated_model_reproduces_2d_logits_on_static_clip() -> None:
    torch.manual_seed(0)
    net2d = _ResNet10_2d(classes=6)
    _randomize_bn(net2d)
    net2d.eval()
    model = create_model("resnet10", num_classes=6, widen_factor=0.25)
    inflate_from_2d(model, {f"module.{k}": v for k, v in net2d.state_dict().items()}, time_dim=1)
    image = torch.randn(2, 3, 32, 32)
    clip = image.unsqueeze(2).expand(-1, -1, 8, -1, -1).contiguous()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(clip), net2d(image), atol=1e-4, rtol=1e-4)
    # default time_dim=3: 3x3x3 kernels hold the 2D kernel / 3 at every time step,
    # the 7-tap stem only at its centre 3
    inflate_from_2d(model, net2d.state_dict())
    w2 = net2d.layer2[0].conv1.weight
    for t in range(3):
        torch.testing.assert_close(model.layer2[0].conv1.weight[:, :, t], w2 / 3)
    assert model.conv1.weight[:, :, [0, 1, 5, 6]].abs().max() == 0
    torch.testing.assert_close(model.conv1.weight.sum(2), net2d.conv1.weight)
    torch.testing.assert_close(model.layer1[0].bn1.running_var, net2d.layer1[0].bn1.running_var)


def test_inflation_kernel_and_errors() -> None:
    w = torch.randn(4, 2, 3, 3)
    k = inflate_kernel(w, 5, 3)
    assert k.shape == (4, 2, 5, 3, 3)
    torch.testing.assert_close(k.sum(2), w)
    torch.testing.assert_close(inflate_kernel(w, 3, 7).sum(2), w)  # time_dim beyond the kernel: all 3 taps
    with pytest.raises(CheckpointError, match="missing from the 2D weights"):
        inflate_from_2d(create_model("r2plus1d_10", widen_factor=0.25), _ResNet10_2d(6).state_dict())
    with pytest.raises(ValueError, match="time_dim"):
        inflate_from_2d(create_model("resnet10", widen_factor=0.25), {}, time_dim=0)


def test_finetune_param_groups_freeze_before_begin_module() -> None:
    model = create_model("resnet18", num_classes=4, widen_factor=0.25)
    groups = finetune_param_groups(model, "layer4", lr=0.01, weight_decay=1e-3)
    tuned = {id(p) for p in groups[0]["params"]}
    assert groups[0]["lr"] == 0.01 and groups[0]["weight_decay"] == 1e-3
    for name, p in model.named_parameters():
        later = name.startswith(("layer4.", "fc."))
        assert p.requires_grad == later and (id(p) in tuned) == later
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    everything = finetune_param_groups(model, None, lr=0.1)
    assert len(everything[0]["params"]) == len(list(model.parameters()))
    assert all(p.requires_grad for p in model.parameters())
    dense = create_model("densenet121", num_classes=4, widen_factor=0.25)
    tuned = {id(p) for p in finetune_param_groups(dense, "denseblock4", lr=0.1)[0]["params"]}
    for name, p in dense.named_parameters():
        assert (id(p) in tuned) == name.startswith(
            ("features.denseblock4.", "features.norm5.", "classifier.")
        )
    with pytest.raises(ValueError, match="layer9"):
        finetune_param_groups(model, "layer9", lr=0.1)

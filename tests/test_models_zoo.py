"""Every registered model builds, trains one step and honours the common interface; registry behaviour;
channels_last_3d / autocast agreement; the cubic-puzzle network."""

from __future__ import annotations

import pytest
import torch

from vidfast.models import PuzzleNet, create_model, list_models, model_card, model_options
from vidfast.models.c3d import C3D_POOL5_SIZE, pool5_to_fc6_grid
from vidfast.models.registry import DEFAULT_CLIP

TINY = (2, 3, 8, 32, 32)


def tiny_config(name: str) -> tuple[dict, tuple[int, ...]]:
    """Smallest sensible options and clip for a registered model.

    DenseNet halves T in three transitions and C3D in four pools, so they need more frames than the ResNets
    (DenseNet runs without the stem max pool on a 16x16 frame; C3D needs 16 frames). torchvision's models take
    no width option."""
    family = model_card(name).family
    if family == "densenet":
        return {"widen_factor": 0.25, "no_max_pool": True}, (2, 3, 8, 16, 16)
    if family == "c3d":
        return {"widen_factor": 0.125}, (2, 3, 16, 32, 32)
    if family == "resnext":
        # 32 groups need at least 32 grouped channels per stage: widen 0.25 keeps 32 in stage 1
        return {"widen_factor": 0.25}, TINY
    if family == "torchvision":  # torchvision's architectures as they are: no width option
        return {}, TINY
    return {"widen_factor": 0.25 if model_card(name).depth < 100 else 0.125}, TINY


def test_registry_lists_every_family_and_depth() -> None:
    names = set(list_models())
    expected = (
        {f"resnet{d}" for d in (10, 18, 34, 50, 101, 152, 200)}
        | {f"preact_resnet{d}" for d in (10, 18, 34, 50, 101, 152, 200)}
        | {f"r2plus1d_{d}" for d in (10, 18, 34, 50, 101, 152, 200)}
        | {"wide_resnet50", "wide_resnet101"}
        | {f"resnext{d}" for d in (50, 101, 152, 200)}
        | {f"densenet{d}" for d in (121, 169, 201, 264)}
        | {"c3d"}
        | {"tv_r3d_18", "tv_mc3_18", "tv_r2plus1d_18"}
    )
    assert names == expected
    assert list_models("densenet") == ["densenet121", "densenet169", "densenet201", "densenet264"]


@pytest.mark.parametrize("name", list_models())
def test_model_builds_trains_and_exposes_interface(name: str) -> None:
    torch.manual_seed(0)
    kwargs, shape = tiny_config(name)
    model = create_model(name, num_classes=5, **kwargs)
    assert model.arch == name and model.model_kwargs == kwargs and model.num_classes == 5
    x = torch.randn(shape)
    logits = model(x)
    assert logits.shape == (shape[0], 5)
    logits.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (shape[0], model.num_features)
        torch.testing.assert_close(model.forward_head(feats), model(x))
        model.reset_classifier(3)
        assert model.num_classes == 3 and model(x).shape == (shape[0], 3)
        model.reset_classifier(0)
        torch.testing.assert_close(model(x), feats)
    card = model_card(name)
    assert isinstance(getattr(model, card.classifier), torch.nn.Identity)


def test_model_card_fields() -> None:
    card = model_card("resnet18")
    assert (card.family, card.depth, card.classifier, card.clip) == ("resnet", 18, "fc", DEFAULT_CLIP)
    with torch.device("meta"):
        assert card.num_params == sum(p.numel() for p in create_model("resnet18").parameters())
    assert len(card.mean) == 3 and len(card.std) == 3
    assert model_card("densenet121").classifier == "classifier"


def test_create_model_rejects_bad_names_and_options() -> None:
    with pytest.raises(ValueError, match="did you mean resnet18"):
        create_model("resnet81")
    with pytest.raises(ValueError, match="cardinality"):
        create_model("resnet18", cardinality=8)
    with pytest.raises(ValueError, match="shortcut_type"):
        create_model("resnet18", shortcut_type="C")
    with pytest.raises(ValueError, match="cardinality"):
        create_model("resnext50", widen_factor=0.1)
    assert "cardinality" in model_options("resnext50") and "k" in model_options("wide_resnet50")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet18", {"shortcut_type": "A", "no_max_pool": True, "conv1_t_size": 3, "conv1_t_stride": 2}),
        ("resnet50", {"shortcut_type": "A", "n_input_channels": 2, "dropout": 0.5}),
        ("preact_resnet50", {"shortcut_type": "A"}),
        ("resnext50", {"cardinality": 8}),
        ("wide_resnet50", {"k": 1}),
        ("r2plus1d_18", {"conv1_t_size": 3, "shortcut_type": "A"}),
    ],
)
def test_options_change_the_network(name: str, kwargs: dict) -> None:
    model = create_model(name, num_classes=4, widen_factor=0.25, **kwargs)
    x = torch.randn(2, kwargs.get("n_input_channels", 3), 8, 32, 32)
    assert model(x).shape == (2, 4)
    keys = model.state_dict().keys()
    if kwargs.get("shortcut_type") == "A":
        assert not any("downsample" in k for k in keys)
    if "conv1_t_size" in kwargs:
        stem = model.conv1.weight if hasattr(model, "conv1") else model.conv1_t.weight
        assert stem.shape[2] == kwargs["conv1_t_size"]


AMP_CASES = [
    ("resnet18", TINY),
    ("preact_resnet18", TINY),
    ("wide_resnet50", TINY),
    ("resnext50", TINY),
    ("r2plus1d_18", TINY),
    ("densenet121", (2, 3, 8, 16, 16)),
    ("c3d", (2, 3, 16, 32, 32)),
]


@pytest.mark.parametrize(("name", "shape"), AMP_CASES)
def test_channels_last_and_autocast_match_fp32(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    kwargs, _ = tiny_config(name)
    model = create_model(name, num_classes=6, **kwargs).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last_3d)
        x_cl = x.contiguous(memory_format=torch.channels_last_3d)
        out_cl = model_cl(x_cl)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_amp = model_cl(x_cl)
    scale = ref.abs().max().item()
    torch.testing.assert_close(out_cl, ref, atol=1e-4 * max(scale, 1.0), rtol=1e-4)
    assert out_amp.dtype == torch.bfloat16
    # bf16 keeps ~3 significant digits per op; errors accumulate over depth: compare to the output's scale
    assert (out_amp.float() - ref).abs().max().item() <= 0.05 * scale + 1e-2


def test_channels_last_autocast_train_step() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=4, widen_factor=0.25).to(
        memory_format=torch.channels_last_3d
    )
    x = torch.randn(TINY).contiguous(memory_format=torch.channels_last_3d)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 3]))
    loss.backward()
    assert model.conv1.weight.grad.dtype == torch.float32 and torch.isfinite(model.conv1.weight.grad).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_autocast_matches_fp32() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=6, widen_factor=0.25).eval().cuda()
    model = model.to(memory_format=torch.channels_last_3d)
    x = torch.randn(TINY, device="cuda").contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(x)
    assert (out.float() - ref).abs().max().item() <= 0.02 * ref.abs().max().item() + 1e-2


@pytest.mark.parametrize("rotation_classes", [4, 0])
def test_puzzle_net_shapes_and_piece_order(rotation_classes: int) -> None:
    torch.manual_seed(0)
    backbone = create_model("resnet10", num_classes=9, widen_factor=0.25)
    net = PuzzleNet(backbone, num_pieces=4, num_perm_classes=24, rotation_classes=rotation_classes, hidden=32)
    assert isinstance(net.backbone.fc, torch.nn.Identity)
    x = torch.randn(2, 4, 3, 4, 32, 32)
    out = net(x)
    assert out.perm.shape == (2, 24) and out.rot.shape == (2, 4, rotation_classes)
    (out.perm.sum() + out.rot.sum()).backward()
    assert all(p.grad is not None for p in net.backbone.parameters())

    net.eval()
    with torch.no_grad():
        out = net(x)
        pieces = [net.backbone.forward_features(x[:, i]) for i in range(4)]
        torch.testing.assert_close(out.perm, net.perm_head(torch.cat(pieces, dim=1)), atol=1e-5, rtol=1e-4)
        if rotation_classes:
            torch.testing.assert_close(out.rot[:, 2], net.rot_head(pieces[2]), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="expects input"):
        net(torch.randn(2, 3, 3, 4, 32, 32))
    assert set(net.backbone_state_dict()) == set(net.backbone.state_dict())
    assert not any(k.startswith("fc.") for k in net.backbone_state_dict())


@pytest.mark.parametrize("shape", [(2, 5, 1, 4, 4), (2, 5, 2, 2, 2), (2, 5, 1, 7, 5), (1, 3, 3, 3, 9)])
def test_c3d_pool_to_fc6_grid_is_adaptive_average_pooling(shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    expected = torch.nn.functional.adaptive_avg_pool3d(x, C3D_POOL5_SIZE)
    torch.testing.assert_close(pool5_to_fc6_grid(x), expected)

"""Input conventions: presets, overrides, the value-scale fold, and the convention a training run records
being the one its loaders applied and the one eval and export apply to its checkpoint."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from helpers import make_dataset

from vidfast import conventions
from vidfast.conventions import Convention, Override
from vidfast.ops import cube_crop


def test_presets_hold_the_published_values() -> None:
    assert conventions.preset("cvpr2018").value_scale == 255.0
    assert conventions.preset("cvpr2018").mean == (114.7748, 107.7354, 99.4750)
    assert conventions.preset("cvpr2018").std == (1.0, 1.0, 1.0)
    assert conventions.preset("3dr2020").mean == (0.4345, 0.4051, 0.3775)
    assert conventions.preset("torchvision").std == (0.22803, 0.22145, 0.216989)
    assert conventions.DEFAULT.name == "kinetics"
    with pytest.raises(ValueError, match="known: kinetics"):
        conventions.preset("imagenet21k")


def test_value_scale_folds_into_the_unit_mean_and_std() -> None:
    """0..255 input minus the ActivityNet mean, no std: cube_crop with the unit mean/std gives exactly
    ``x - mean`` (what the 2018 code fed its networks)."""
    conv = conventions.preset("cvpr2018")
    frames = torch.randint(0, 256, (1, 4, 8, 8, 3), dtype=torch.uint8)
    idx = torch.arange(4).view(1, 1, 4)
    boxes = torch.tensor([[[0, 0, 8, 8]]])
    out = cube_crop(frames, idx, boxes, (4, 8, 8), mean=conv.unit_mean, std=conv.unit_std)[:, 0]
    mean = torch.tensor(conv.mean, dtype=torch.float64).view(3, 1, 1, 1)
    expected = frames.permute(0, 4, 1, 2, 3).double() - mean
    torch.testing.assert_close(out.double(), expected, atol=2e-5, rtol=0)


def test_overrides_rename_and_validate() -> None:
    base = conventions.preset("torchvision")
    assert conventions.resolve(base) is base
    assert conventions.resolve(base, Override(preset="cvpr2018")).name == "cvpr2018"
    custom = conventions.resolve(base, Override(mean=(0.5, 0.5, 0.5)))
    assert custom.name == "custom" and custom.std == base.std and custom.value_scale == 1.0
    back = conventions.resolve(base, Override(mean=conventions.KINETICS_MEAN, std=conventions.KINETICS_STD))
    assert back.name in ("kinetics", "3dr2020")
    with pytest.raises(ValueError, match="value scale"):
        conventions.resolve(base, Override(value_scale=100))
    with pytest.raises(ValueError, match="positive"):
        Convention("x", 1.0, (0.0, 0.0, 0.0), (1.0, 0.0, 1.0))


def test_from_data_reads_old_and_new_checkpoints() -> None:
    conv = conventions.preset("cvpr2018")
    assert conventions.from_data(conv.to_data()) == replace(conv, clip=None)
    trained = conventions.from_data({**conv.to_data(), "clip_len": 8, "size": 32})
    assert trained.clip == (8, 32, 32) and trained.note == conv.note
    old = conventions.from_data({"mean": [0.4345, 0.4051, 0.3775], "std": [0.2768, 0.2713, 0.2737]})
    assert old.value_scale == 1.0 and old.same_values(conventions.DEFAULT)
    assert conventions.from_data(None) is conventions.DEFAULT


def test_training_records_the_convention_it_used_and_eval_and_export_apply_it(tmp_path, monkeypatch) -> None:
    """Train with a non-default convention (0..255 values, own mean and std): the loaders normalise with it,
    the checkpoint records it, and eval and the exported graph normalise with it (issue 10 item 4)."""
    from vidfast.engine import fit, resolve_config
    from vidfast.engine import loaders as loaders_module
    from vidfast.export import export_onnx
    from vidfast.models import read_checkpoint
    from vidfast.scoring import load_classifier

    manifest, _, _ = make_dataset(tmp_path / "data", classes=2, per_class=2, split="train")
    seen = []
    real = loaders_module.make_loader

    def spy(*args, **kwargs):
        output = args[1].output
        seen.append((tuple(output.mean), tuple(output.std)))
        return real(*args, **kwargs)

    monkeypatch.setattr(loaders_module, "make_loader", spy)
    mean, std = [100.0, 110.0, 120.0], [50.0, 60.0, 70.0]
    cfg = resolve_config("classify", None, {
        "epochs": 1,
        "data": {"manifest": str(manifest), "clip_len": 4, "size": 16, "batch_size": 2, "workers": 0,
                 "value_scale": 255, "mean": mean, "std": std},
        "model": {"arch": "resnet10", "widen_factor": 0.25},
        "runtime": {"run_dir": str(tmp_path / "run"), "tensorboard": False, "progress": "none",
                    "plots": False},
    })
    result = fit(cfg)
    unit = (tuple(m / 255 for m in mean), tuple(s / 255 for s in std))
    assert seen and all(s == unit for s in seen)
    data = read_checkpoint(result.last_checkpoint)["data"]
    assert data["value_scale"] == 255.0 and data["mean"] == mean and data["std"] == std
    assert data["convention"] == "custom"

    spec = load_classifier(result.last_checkpoint).spec
    assert (spec.mean, spec.std) == unit
    exported = export_onnx(result.last_checkpoint, tmp_path / "m.onnx", with_preprocess=True)
    meta = exported.metadata
    assert meta.value_scale == 255.0 and list(meta.mean) == mean and list(meta.std) == std
    assert (meta.input_convention.unit_mean, meta.input_convention.unit_std) == unit
    assert exported.parity is not None and exported.parity.passed

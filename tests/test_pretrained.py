"""Weights from the ecosystem: torchvision's video ResNets, the 3D-ResNets-PyTorch 2018 release (with its
fixed pool and 0..255 input), detection of every layout from the file alone, ``models convert``.

References: torchvision's own ``models/video/resnet.py`` from the installed torchvision distribution (its
compiled ops do not load with this CPU torch, so only that pure-Python file is executed, its package-relative
imports replaced by inert stand-ins), and an independent transcription of the 2018 code's ResNet below.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import run_cli
from torch import nn

from vidfast import conventions
from vidfast.data.video_io import write_video
from vidfast.errors import CheckpointError
from vidfast.models import create_model, load_checkpoint, read_checkpoint
from vidfast.models.identify import identify

TV_NAMES = {"tv_r3d_18": "r3d_18", "tv_mc3_18": "mc3_18", "tv_r2plus1d_18": "r2plus1d_18"}
#: what torchvision's r3d_18 / mc3_18 / r2plus1d_18 builders pass to its VideoResNet: conv makers, stem
TV_CONFIGS = {
    "r3d_18": (["Conv3DSimple"] * 4, "BasicStem"),
    "mc3_18": (["Conv3DSimple"] + ["Conv3DNoTemporal"] * 3, "BasicStem"),
    "r2plus1d_18": (["Conv2Plus1D"] * 4, "R2Plus1dStem"),
}
ACTIVITYNET_MEAN = (114.7748, 107.7354, 99.4750)


def torchvision_video_module():
    """torchvision's ``models/video/resnet.py`` executed on its own (None when torchvision is absent)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(spec.submodule_search_locations[0], "models", "video", "resnet.py").read_text()
    source = re.sub(r"^from \.+[\w.]* import .*$", "", source, flags=re.M)  # package-relative imports

    def passthrough(*_args, **_kwargs):
        return lambda f: f

    namespace = {
        "__name__": "tv_video_resnet",
        "VideoClassification": object,
        "_log_api_usage_once": lambda _obj: None,
        "register_model": passthrough,
        "handle_legacy_interface": passthrough,
        "Weights": SimpleNamespace,
        "WeightsEnum": object,
        "_KINETICS400_CATEGORIES": [],
        "_ovewrite_named_param": lambda *a: None,
        "_ModelURLs": dict,
    }
    exec(compile(source, "torchvision/models/video/resnet.py", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def tv():
    module = torchvision_video_module()
    if module is None:
        pytest.skip("torchvision is not installed (make install puts it in the dev environment)")
    return module


def _perturb_bn(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("name", sorted(TV_NAMES))
def test_torchvision_models_give_torchvision_logits(tmp_path, tv, name) -> None:
    torch.manual_seed(0)
    makers, stem = TV_CONFIGS[TV_NAMES[name]]
    reference = tv["VideoResNet"](tv["BasicBlock"], [tv[m] for m in makers], [2, 2, 2, 2], tv[stem],
                                  num_classes=10).eval()
    _perturb_bn(reference, 1)
    path = tmp_path / f"{TV_NAMES[name]}.pth"
    torch.save(reference.state_dict(), path)  # torchvision's weight files are raw state dicts
    found = identify(read_checkpoint(path))
    assert (found.origin, found.arch, found.num_classes) == ("torchvision", name, 10)
    assert found.certainty == "recognised"
    assert found.convention.name == "torchvision"
    ours = load_checkpoint(None, path).eval()
    assert ours.arch == name
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())


# --- the 2018 code's ResNet, transcribed: fixed AvgPool3d sized for the training clip, shortcut A ---------


class Ref2018Block(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.planes, self.stride, self.project = planes, stride, stride != 1 or inplanes != planes

    def forward(self, x):
        residual = x
        if self.project:  # downsample_basic_block: avg_pool3d(kernel 1, stride) then zero channels appended
            out = F.avg_pool3d(x, kernel_size=1, stride=self.stride)
            pad = out.new_zeros(out.size(0), self.planes - out.size(1), *out.shape[2:])
            residual = torch.cat([out, pad], dim=1)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + residual)


class Ref2018ResNet(nn.Module):
    def __init__(self, layers, sample_size: int = 112, sample_duration: int = 16, num_classes: int = 400):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=(3, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.maxpool = nn.MaxPool3d(kernel_size=(3, 3, 3), stride=2, padding=1)
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [Ref2018Block(inplanes, planes, stride)] + [Ref2018Block(planes, planes, 1)
                                                                for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            inplanes = planes
        last_duration, last_size = math.ceil(sample_duration / 16), math.ceil(sample_size / 32)
        self.avgpool = nn.AvgPool3d((last_duration, last_size, last_size), stride=1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).view(x.size(0), -1))


@pytest.fixture(scope="module")
def release_2018(tmp_path_factory):
    """A 2018-release-shaped file of the 2018 ResNet-10 (5 classes), a 16-frame video, and the reference."""
    root = tmp_path_factory.mktemp("r2018")
    torch.manual_seed(0)
    reference = Ref2018ResNet((1, 1, 1, 1), num_classes=5).eval()
    _perturb_bn(reference, 2)
    with torch.no_grad():
        reference.fc.weight.mul_(50)  # logits far apart, so that a wrong normalisation shows
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    torch.save({"epoch": 200, "arch": "resnet-10", "state_dict": state, "optimizer": {"state": {}}},
               root / "resnet-10-kinetics.pth")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(16, 28, 28, 3), dtype=np.uint8)
    frames = np.repeat(np.repeat(frames, 4, axis=1), 4, axis=2)  # 112x112: the crop is the frame, no resize
    write_video(root / "clip.mp4", frames)
    return root / "resnet-10-kinetics.pth", root / "clip.mp4", reference


def _reference_logits(reference: nn.Module, raw: torch.Tensor) -> torch.Tensor:
    """The 2018 code's input: uint8 ``[k, T, H, W, 3]`` as 0..255 floats minus the ActivityNet mean."""
    mean = torch.tensor(ACTIVITYNET_MEAN, dtype=torch.float64).view(3, 1, 1, 1)
    x = raw.permute(0, 4, 1, 2, 3).double() - mean
    with torch.no_grad():
        return reference(x.float())


def test_2018_release_gives_the_2018_logits_through_eval_preprocessing(release_2018) -> None:
    from vidfast.data.reader import load_clips
    from vidfast.scoring import load_classifier

    path, video, reference = release_2018
    found = identify(read_checkpoint(path))
    assert (found.origin, found.arch, found.certainty) == ("3dr2018", "resnet10", "recognised")
    assert found.model_kwargs["shortcut_type"] == "A"
    loaded = load_classifier(path)
    spec = loaded.spec
    assert (spec.clip_len, spec.size) == (16, 112)
    clips = load_clips(video, clip_len=16, size=112, clips=2, mean=spec.mean, std=spec.std)
    raw = load_clips(video, clip_len=16, size=112, clips=2, normalize=False)
    expected = _reference_logits(reference, raw)
    with torch.no_grad():
        got = loaded.model(clips)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    # what vidfast did before: the 0..1 Kinetics convention on these weights gives other logits
    wrong = load_clips(video, clip_len=16, size=112, clips=2)
    with torch.no_grad():
        assert (loaded.model(wrong) - expected).abs().max() > 0.1 * expected.abs().max()


@pytest.mark.slow
def test_2018_release_export_with_preprocess_takes_raw_frames(release_2018, tmp_path) -> None:
    import onnxruntime as ort

    from vidfast.data.reader import load_clips
    from vidfast.export import export_onnx

    path, video, reference = release_2018
    result = export_onnx(path, tmp_path / "r2018.onnx", with_preprocess=True)
    meta = result.metadata
    assert (meta.convention, meta.value_scale, meta.mean, meta.clip) == ("cvpr2018", 255.0, ACTIVITYNET_MEAN,
                                                                          (16, 112, 112))
    raw = load_clips(video, clip_len=16, size=112, clips=2, normalize=False)  # [k, T, H, W, 3] uint8
    session = ort.InferenceSession(str(tmp_path / "r2018.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"rgb_uint8": raw.numpy()})
    expected = _reference_logits(reference, raw)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4,
                               atol=1e-4 * expected.abs().max().item())


def test_every_layout_is_recognised_from_the_file_alone(tmp_path) -> None:
    torch.manual_seed(0)
    small = create_model("resnet18", num_classes=4, widen_factor=0.25)
    sd = small.state_dict()
    files = {
        "2018": {"epoch": 1, "arch": "resnet-18", "state_dict": {f"module.{k}": v for k, v in sd.items()},
                 "optimizer": {}},
        "2020": {"epoch": 1, "arch": "resnet-18", "state_dict": sd, "optimizer": {}, "scheduler": {}},
        "bare": {f"module.{k}": v for k, v in sd.items()},
        "vidfast": {"arch": "resnet18", "model_kwargs": {"widen_factor": 0.25}, "task": "classify",
                    "num_classes": 4, "class_names": list("abcd"), "state_dict": sd,
                    "data": {"clip_len": 8, "size": 32, "frame_step": 1,
                             **conventions.preset("torchvision").to_data()}},
        "tv": create_model("tv_mc3_18", num_classes=3).state_dict(),
        "densenet": create_model("densenet121", num_classes=2).state_dict(),
        "c3d": create_model("c3d", num_classes=2).state_dict(),
    }
    expected = {
        "2018": ("3dr2018", "resnet18", "cvpr2018", "recognised"),
        "2020": ("3dr2020", "resnet18", "3dr2020", "recognised"),
        "bare": ("state_dict", "resnet18", "3dr2020", "guessed"),
        "vidfast": ("vidfast", "resnet18", "torchvision", "recorded"),
        "tv": ("torchvision", "tv_mc3_18", "torchvision", "recognised"),
        "densenet": ("state_dict", "densenet121", "3dr2020", "guessed"),
        "c3d": ("state_dict", "c3d", "3dr2020", "guessed"),
    }
    for key, obj in files.items():
        torch.save(obj, tmp_path / f"{key}.pth")
        found = identify(read_checkpoint(tmp_path / f"{key}.pth"))
        assert (found.origin, found.arch, found.convention.name, found.certainty) == expected[key], key
        model = load_checkpoint(None, tmp_path / f"{key}.pth")
        assert model.arch == expected[key][1]


def test_a_foreign_file_is_refused_naming_the_candidates(tmp_path) -> None:
    foreign = {"encoder.weight": torch.zeros(4, 4), "decoder.weight": torch.zeros(4, 4)}
    torch.save(foreign, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(None, tmp_path / "foreign.pth")
    message = str(err.value)
    assert "fit no supported architecture" in message and "\n" not in message
    for candidate in ("resnet", "densenet", "tv_r3d_18", "tv_r2plus1d_18", "c3d"):
        assert candidate in message
    # a torchvision file with a mis-shaped key: every candidate rejected, the torchvision ones by that key
    sd = create_model("tv_r3d_18", num_classes=3).state_dict()
    sd["layer1.0.conv1.0.weight"] = torch.zeros(64, 64, 3, 3, 1)
    torch.save(sd, tmp_path / "broken_tv.pth")
    result = run_cli("models", "show", tmp_path / "broken_tv.pth")
    assert result.exit_code != 0 and "mis-shaped" in result.stderr and "tv_r3d_18" in result.stderr


def test_contradicting_convention_is_refused_unless_forced(release_2018, tmp_path) -> None:
    path, _, _ = release_2018
    out = tmp_path / "converted.pt"
    refused = run_cli("models", "convert", path, out, "--preset", "torchvision")
    assert refused.exit_code != 0 and not out.exists()
    assert "contradicts" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    forced = run_cli("models", "convert", path, out, "--preset", "torchvision", "--force")
    assert forced.exit_code == 0 and read_checkpoint(out)["data"]["convention"] == "torchvision"


def test_convert_then_eval_equals_eval_on_the_original(release_2018, tmp_path) -> None:
    from helpers import make_dataset

    from vidfast.scoring import load_classifier

    path, _, _ = release_2018
    manifest, names, _ = make_dataset(tmp_path / "data", classes=5, per_class=1)
    converted = tmp_path / "r2018_vidfast.pt"
    result = run_cli("models", "convert", path, converted)
    assert result.exit_code == 0, result.stderr
    assert "cvpr2018" in result.stdout
    data = read_checkpoint(converted)["data"]
    assert (data["convention"], data["value_scale"]) == ("cvpr2018", 255.0)
    assert (data["clip_len"], data["size"]) == (16, 112)
    reports = []
    for ckpt in (path, converted):
        run = run_cli("eval", manifest, "-c", ckpt, "--clips", 1, "--workers", 0, "--device", "cpu",
                      "--run-dir", tmp_path / ckpt.stem, "--json")
        assert run.exit_code == 0, run.stderr
        report = json.loads(run.stdout)
        report.pop("checkpoints")
        report["predictions"] = (tmp_path / ckpt.stem / "predictions.csv").read_text()  # per-video scores
        reports.append(report)
    assert reports[0] == reports[1]
    original, again = load_classifier(path), load_classifier(converted)
    assert original.spec == again.spec
    clip = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        assert torch.equal(original.model(clip), again.model(clip))
    shown = run_cli("models", "show", converted)
    assert shown.exit_code == 0 and "recorded" in shown.stdout and "cvpr2018" in shown.stdout


def test_models_list_and_show_name() -> None:
    listed = run_cli("models", "list", "--family", "torchvision")
    assert listed.exit_code == 0
    for name in TV_NAMES:
        assert name in listed.stdout
    shown = run_cli("models", "show", "tv_r2plus1d_18")
    assert shown.exit_code == 0 and "torchvision (values 0..1, mean 0.43216" in shown.stdout
    unknown = run_cli("models", "show", "resnt18")
    assert unknown.exit_code != 0 and "did you mean" in unknown.stderr


def test_finetune_inflate_from_2d_weights(tmp_path) -> None:
    """``finetune --inflate-from`` starts the 3D ResNet from a torchvision-format 2D state dict and records
    the ImageNet convention."""
    from helpers import make_dataset

    manifest, _, _ = make_dataset(tmp_path / "data", classes=2, per_class=2, split="train")
    three_d = create_model("resnet10", num_classes=2, widen_factor=0.25)
    two_d = {k: (v[:, :, v.shape[2] // 2] if v.dim() == 5 else v) for k, v in three_d.state_dict().items()}
    torch.save(two_d, tmp_path / "resnet10_2d.pth")
    result = run_cli("finetune", manifest, "--inflate-from", tmp_path / "resnet10_2d.pth",
                     "--arch", "resnet10", "--widen-factor", 0.25, "--epochs", 1, "--clip-len", 4,
                     "--size", 16, "--batch-size", 2, "--workers", 0, "--run-dir", tmp_path / "run",
                     "--lr", 0.0)
    assert result.exit_code == 0, result.stderr
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["data"]["convention"] == "imagenet"
    inflated = ckpt["state_dict"]["conv1.weight"]
    torch.testing.assert_close(inflated.sum(dim=2), two_d["conv1.weight"])
    both = run_cli("finetune", manifest, "--run-dir", tmp_path / "run2")
    assert both.exit_code != 0 and "--inflate-from" in both.stderr


def test_finetune_keeps_the_2018_convention_and_refuses_to_change_it(release_2018, tmp_path) -> None:
    from helpers import make_dataset

    path, _, _ = release_2018
    manifest, _, _ = make_dataset(tmp_path / "data", classes=2, per_class=2, split="train")
    common = ("--epochs", 1, "--clip-len", 4, "--size", 32, "--batch-size", 2, "--workers", 0, "--lr", 0.0)
    refused = run_cli("finetune", manifest, "--from", path, "--preset", "kinetics",
                      "--run-dir", tmp_path / "x", *common)
    assert refused.exit_code != 0 and "contradicts" in refused.stderr
    assert not (tmp_path / "x" / "last.pt").exists()
    kept = run_cli("finetune", manifest, "--from", path, "--run-dir", tmp_path / "run", *common)
    assert kept.exit_code == 0, kept.stderr
    data = read_checkpoint(tmp_path / "run" / "last.pt")["data"]
    assert (data["convention"], data["value_scale"]) == ("cvpr2018", 255.0)



def test_a_guessed_convention_is_said_in_one_line(tmp_path, caplog) -> None:
    torch.save(create_model("resnet10", num_classes=3, widen_factor=0.25).state_dict(), tmp_path / "bare.pth")
    result = run_cli("models", "convert", tmp_path / "bare.pth", tmp_path / "out.pt")
    assert result.exit_code == 0, result.stderr
    guesses = [r.getMessage() for r in caplog.records if "guessed" in r.getMessage()]
    assert len(guesses) == 1 and "\n" not in guesses[0] and "3dr2020" in guesses[0]
    caplog.clear()
    run_cli("models", "convert", tmp_path / "bare.pth", tmp_path / "out2.pt", "--preset", "torchvision")
    assert not [r for r in caplog.records if "guessed" in r.getMessage()]  # told, not guessed
    assert read_checkpoint(tmp_path / "out2.pt")["data"]["convention"] == "torchvision"

"""ONNX export: parity in onnxruntime for every model family, dynamic batch, metadata, in-graph preprocessing,
fp16, puzzle networks, error messages and the ``vidfast export`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from typer.testing import CliRunner
from vidfast_cli.app import app

from vidfast.data.samplers import center_box
from vidfast.deploy import read_metadata
from vidfast.deploy.preprocess import preprocess_graph
from vidfast.errors import CheckpointError, VidfastError
from vidfast.export import ExportResult, export_onnx, parse_batch, parse_clip
from vidfast.models import PuzzleNet, create_model
from vidfast.ops import cube_crop

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLIP = (8, 32, 32)
MEAN = (0.45, 0.4, 0.35)
STD = (0.25, 0.24, 0.23)
CLASSES = ["archery", "bowling", "cooking", "diving", "eating"]


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial batch-norm statistics, so that folding them into the graph is actually exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return model.eval()


def save_checkpoint(path: Path, model: nn.Module, arch: str, model_kwargs: dict, task: str = "classify",
                    class_names: list[str] | None = None, puzzle: dict | None = None) -> Path:
    """A checkpoint in the vidfast format (CONTRACTS.md), as the training engine writes it."""
    ckpt = {
        "arch": arch, "model_kwargs": model_kwargs, "task": task,
        "num_classes": getattr(model, "num_classes", 0), "class_names": class_names or [],
        "state_dict": model.state_dict(),
        "data": {"clip_len": CLIP[0], "size": CLIP[1], "frame_step": 2, "mean": list(MEAN), "std": list(STD)},
        "epoch": 3, "step": 30, "best_metric": 0.5, "config": {"model": arch},
    }
    if puzzle is not None:
        ckpt["puzzle"] = puzzle
    torch.save(ckpt, path)
    return path


def run_onnx(path: Path, x: torch.Tensor) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def assert_close_rel(got: np.ndarray, want: torch.Tensor, rel: float = 1e-4) -> None:
    want_np = want.detach().float().numpy()
    assert got.shape == want_np.shape
    scale = float(np.abs(want_np).max())
    assert float(np.abs(got - want_np).max()) <= rel * scale, (np.abs(got - want_np).max(), scale)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def resnet(workdir: Path) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = randomize_bn(create_model("resnet18", num_classes=5, widen_factor=0.25))
    return model, save_checkpoint(workdir / "resnet18.pt", model, "resnet18", {"widen_factor": 0.25},
                                  class_names=CLASSES)


@pytest.fixture(scope="module")
def resnet_export(resnet, workdir: Path) -> ExportResult:
    """Export from the checkpoint with every default (clip, mean, std, frame step read from its data)."""
    return export_onnx(resnet[1], workdir / "resnet18.onnx")


@pytest.fixture(scope="module")
def puzzle(workdir: Path) -> tuple[PuzzleNet, Path]:
    torch.manual_seed(1)
    net = PuzzleNet(create_model("resnet18", num_classes=0, widen_factor=0.25), num_pieces=4,
                    num_perm_classes=24, rotation_classes=4, hidden=32)
    randomize_bn(net, seed=1)
    puzzle_kwargs = {"num_pieces": 4, "num_perm_classes": 24, "rotation_classes": 4, "hidden": 32}
    ckpt = save_checkpoint(workdir / "puzzle.pt", net, "resnet18", {"widen_factor": 0.25}, task="puzzle",
                           puzzle=puzzle_kwargs)
    return net, ckpt


def test_checkpoint_export_parity_and_dynamic_batch(resnet, resnet_export: ExportResult) -> None:
    model, _ = resnet
    assert resnet_export.parity is not None and resnet_export.parity.passed
    assert resnet_export.parity.max_rel < 1e-5 and resnet_export.parity.top1_agreement == 1.0
    assert resnet_export.exporter == "dynamo" and resnet_export.opset == 18
    for batch in (1, 3):
        x = torch.randn(batch, 3, *CLIP, generator=torch.Generator().manual_seed(batch))
        (logits,) = run_onnx(resnet_export.path, x)
        assert_close_rel(logits, model(x))


def test_graph_signature_checker_and_shape_inference(resnet_export: ExportResult) -> None:
    proto = onnx.load(str(resnet_export.path))
    onnx.checker.check_model(proto, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)

    def dims(value: onnx.ValueInfoProto) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    (inp,), (out,) = inferred.graph.input, inferred.graph.output
    assert inp.name == "clip" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(inp)[1:] == [3, *CLIP] and isinstance(dims(inp)[0], str)  # symbolic batch axis
    assert out.name == "logits" and dims(out)[1] == 5 and isinstance(dims(out)[0], str)
    assert [o.version for o in proto.opset_import if o.domain == ""] == [18]


def test_metadata_round_trip(resnet_export: ExportResult) -> None:
    meta = read_metadata(resnet_export.path)
    assert meta == resnet_export.metadata
    assert (meta.arch, meta.task, meta.class_names) == ("resnet18", "classify", CLASSES)
    assert meta.mean == MEAN and meta.std == STD and meta.clip == CLIP and meta.frame_step == 2
    assert (meta.input_format, meta.precision) == ("clip", "fp32")
    props = {p.key: p.value for p in onnx.load(str(resnet_export.path)).metadata_props}
    assert json.loads(props["vidfast.class_names"]) == CLASSES
    assert props["vidfast.clip"] == "8,32,32" and props["vidfast.frame_step"] == "2"


# ResNeXt-101 and DenseNet-121 go through the TorchScript exporter (opset 17): their many layers make the
# dynamo export several times slower, and this also covers the legacy path; resnet18 covers dynamo's.
@pytest.mark.parametrize(("arch", "kwargs", "clip", "exporter", "opset"), [
    ("resnext101", {"widen_factor": 0.25, "cardinality": 8}, CLIP, "torchscript", 17),
    ("densenet121", {"growth_rate": 8, "num_init_features": 16}, (16, 32, 32), "torchscript", 17),
    ("r2plus1d_18", {"widen_factor": 0.25}, CLIP, "auto", 18),
    ("c3d", {"widen_factor": 0.125}, (16, 32, 32), "auto", 18),  # pool5 -> 4x4 needs the pool rewrite
])
def test_model_family_parity(arch: str, kwargs: dict, clip: tuple, exporter: str, opset: int,
                             workdir: Path) -> None:
    torch.manual_seed(2)
    model = randomize_bn(create_model(arch, num_classes=7, **kwargs), seed=2)
    result = export_onnx(model, workdir / f"{arch}.onnx", clip=clip, exporter=exporter, opset=opset)
    assert result.parity is not None and result.parity.passed and result.parity.max_rel < 1e-4
    assert result.metadata.arch == arch and result.opset == opset
    x = torch.randn(2, 3, *clip, generator=torch.Generator().manual_seed(5))
    (logits,) = run_onnx(result.path, x)
    assert_close_rel(logits, model(x))


def test_puzzle_backbone_export(puzzle, workdir: Path) -> None:
    net, ckpt = puzzle
    result = export_onnx(ckpt, workdir / "puzzle_backbone.onnx")
    assert result.output_names == ("features",) and result.metadata.task == "features"
    x = torch.randn(3, 3, *CLIP, generator=torch.Generator().manual_seed(6))
    (features,) = run_onnx(result.path, x)
    assert_close_rel(features, net.backbone.forward_features(x))


def test_puzzle_full_export(puzzle, workdir: Path) -> None:
    net, ckpt = puzzle
    result = export_onnx(ckpt, workdir / "puzzle_full.onnx", puzzle_full=True)
    assert result.output_names == ("perm", "rot") and result.metadata.task == "puzzle"
    assert result.input_name == "pieces" and result.input_shape[1:] == (4, 3, *CLIP)
    x = torch.randn(2, 4, 3, *CLIP, generator=torch.Generator().manual_seed(7))
    perm, rot = run_onnx(result.path, x)
    want = net.eval()(x)
    assert_close_rel(perm, want.perm)
    assert_close_rel(rot, want.rot)
    assert rot.shape == (2, 4, 4)


def random_frames(n: int, seed: int, size: tuple[int, int] = CLIP[1:]) -> torch.Tensor:
    """uint8 frames ``[n, T, H, W, 3]``, of the clip size unless ``size`` = ``(H, W)``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, CLIP[0], *size, 3), dtype=torch.uint8, generator=gen)


def evaluation_crop(frames: torch.Tensor) -> torch.Tensor:
    """The evaluation path's preprocessing (``center_clip``'s box through ``cube_crop``) of whole clips of
    frames ``[n, T, H, W, 3]`` -> ``[n, 3, T, h, w]``."""
    n, t, height, width, _ = frames.shape
    boxes = torch.tensor(center_box(height, width)).expand(n, 1, 4)
    return cube_crop(frames, torch.arange(t).expand(n, 1, t), boxes, CLIP, mean=MEAN, std=STD)[:, 0]


# (H, W): the clip's size (a copy), upscaling, landscape and portrait downscaling, odd margins, 720p
FRAME_SIZES = [(32, 32), (20, 20), (48, 64), (90, 40), (33, 97), (240, 320), (720, 1280)]


def test_preprocess_graph_is_the_evaluation_crop() -> None:
    """The in-graph crop and resize against ``cube_crop``: equal up to the float rounding of the bilinear
    weights (onnxruntime derives them from out/in, cube_crop from in/out), at most 1e-4 of a normalised
    value, i.e. 0.007 of a uint8 level at std 0.27."""
    session = ort.InferenceSession(preprocess_graph(CLIP, MEAN, STD).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    for i, size in enumerate(FRAME_SIZES):
        frames = random_frames(2, seed=20 + i, size=size)
        (got,) = session.run(None, {"rgb_uint8": frames.numpy()})
        np.testing.assert_allclose(got, evaluation_crop(frames).numpy(), rtol=0, atol=1e-4, err_msg=str(size))


def test_with_preprocess_takes_frames_of_any_size(resnet, workdir: Path) -> None:
    model, ckpt = resnet
    result = export_onnx(ckpt, workdir / "resnet18_frames.onnx", with_preprocess=True)
    assert result.input_name == "rgb_uint8"
    assert result.input_shape[1] == CLIP[0] and result.input_shape[4] == 3
    assert all(isinstance(d, str) for d in (result.input_shape[0], *result.input_shape[2:4]))  # N, H, W
    assert result.parity is not None and result.parity.frame_sizes == ("8x32x32", "8x69x98")
    meta = read_metadata(result.path)
    assert meta.input_format == "rgb_uint8" and meta.crop == "center" and meta.any_frame_size
    props = {p.key: p.value for p in onnx.load(str(result.path)).metadata_props}
    assert "every 2-th frame" in props["vidfast.sampling"] and "any H, W" in props["vidfast.sampling"]
    proto = onnx.load(str(result.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    for i, size in enumerate(FRAME_SIZES[:5]):
        frames = random_frames(3, seed=9 + i, size=size)
        (logits,) = run_onnx(result.path, frames)
        assert_close_rel(logits, model(evaluation_crop(frames)), rel=1e-4)


def test_with_preprocess_refuses_the_puzzle_network(puzzle, workdir: Path) -> None:
    with pytest.raises(ValueError, match="puzzle pieces"):
        export_onnx(puzzle[1], workdir / "never.onnx", puzzle_full=True, with_preprocess=True)


def test_fp16_export_runs_on_cpu_provider(resnet, workdir: Path) -> None:
    model, ckpt = resnet
    result = export_onnx(ckpt, workdir / "resnet18_fp16.onnx", fp16=True)
    assert result.parity is not None
    if result.parity.skipped:
        pytest.skip(result.parity.skipped)
    assert result.metadata.precision == "fp16" and result.parity.passed
    proto = onnx.load(str(result.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    x = torch.randn(2, 3, *CLIP, generator=torch.Generator().manual_seed(10))
    (logits,) = run_onnx(result.path, x.half())
    assert logits.dtype == np.float16
    assert_close_rel(logits.astype(np.float32), model(x), rel=2e-2)


def test_failed_parity_rejects_and_writes_nothing(workdir: Path) -> None:
    model = randomize_bn(create_model("resnet10", num_classes=3, widen_factor=0.25))
    out = workdir / "rejected.onnx"
    with pytest.raises(VidfastError, match="rejected, parity .* FAILED"):
        export_onnx(model, out, clip=CLIP, opset=17, batch=2, tolerance=0.0)
    assert not out.exists()


def test_errors_are_one_clear_message(resnet, workdir: Path) -> None:
    model, ckpt = resnet
    out = workdir / "never.onnx"
    bad = torch.load(ckpt, weights_only=True) | {"arch": "mobilenet3d"}
    with pytest.raises(CheckpointError, match="unknown architecture 'mobilenet3d'"):
        export_onnx(bad, out)
    with pytest.raises(VidfastError, match="opset 5 cannot be served"):
        export_onnx(model, out, opset=5)
    with pytest.raises(VidfastError, match="dynamo exporter writes opset 18 or newer"):
        export_onnx(model, out, opset=13, exporter="dynamo")
    with pytest.raises(VidfastError, match=r"c3d cannot take clip 4x32x32"):
        export_onnx(create_model("c3d", num_classes=3, widen_factor=0.125), out, clip=(4, 32, 32))
    with pytest.raises(ValueError, match="puzzle_full needs a puzzle checkpoint"):
        export_onnx(ckpt, out, puzzle_full=True)
    with pytest.raises(ValueError, match="5 class names for a 3-class model"):
        export_onnx(create_model("resnet10", num_classes=3, widen_factor=0.25), out, clip=CLIP,
                    class_names=CLASSES)
    assert not out.exists()


def test_parse_clip_and_batch() -> None:
    assert parse_clip("16x112x112") == (16, 112, 112)
    assert parse_clip("8x64") == (8, 64, 64)
    assert parse_batch("dynamic") == "dynamic" and parse_batch("4") == 4
    for text in ("16x112x", "0x112x112", "abc"):
        with pytest.raises(ValueError, match="--clip"):
            parse_clip(text)
    for text in ("0", "many"):
        with pytest.raises(ValueError, match="--batch"):
            parse_batch(text)


def test_cli_export_static_batch(resnet, workdir: Path) -> None:
    model, ckpt = resnet
    out = workdir / "cli.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(out), "--opset", "17",
                                      "--batch", "2", "--clip", "8x32x32"])
    assert result.exit_code == 0, result.output
    assert "parity vs PyTorch at batch 2" in result.output and "torchscript exporter" in result.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [2, 3, *CLIP]
    assert read_metadata(out).class_names == CLASSES
    x = torch.randn(2, 3, *CLIP)
    assert_close_rel(session.run(None, {"clip": x.numpy()})[0], model(x))


@pytest.mark.parametrize(("args", "message"), [
    (["--checkpoint", "missing.pt"], "error: checkpoint not found"),
    (["--clip", "16by112"], "error: ValueError: --clip must look like TxHxW"),
    (["--opset", "3"], "error: opset 3 cannot be served"),
    (["--batch", "0"], "error: ValueError: --batch must be 'dynamic' or a positive integer"),
])
def test_cli_export_errors(args: list[str], message: str, resnet, workdir: Path) -> None:
    base = {"--checkpoint": str(resnet[1]), "--out": str(workdir / "cli_error.onnx")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value if flag != "--checkpoint" else str(workdir / value)
    result = CliRunner().invoke(app, ["export", *[item for pair in base.items() for item in pair]])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output and not (workdir / "cli_error.onnx").exists()

"""vidfast.deploy: provider choice, session options, OnnxClassifier on clips and videos, metadata errors
and the default-backend rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from vidfast.conventions import Override
from vidfast.data.reader import load_clips
from vidfast.data.video_io import write_video
from vidfast.deploy import (
    ModelMetadata,
    OnnxClassifier,
    available_providers,
    best_backend,
    read_metadata,
    resolve_providers,
    session_options,
    softmax,
)
from vidfast.deploy.backend import COMPILE_PAYBACK_CLIPS
from vidfast.errors import BackendUnavailable, VidfastError
from vidfast.export import export_onnx
from vidfast.models import create_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLIP = (8, 32, 32)
MEAN = (0.43, 0.4, 0.37)
STD = (0.27, 0.27, 0.27)
NAMES = ["a", "b", "c", "d"]
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only choices")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(3)
    net = create_model("resnet10", num_classes=len(NAMES), widen_factor=0.25).eval()
    gen = torch.Generator().manual_seed(3)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    net.fc.weight.data.mul_(20)  # spread the logits so that softmax scores differ between classes
    return net


def _export(model: nn.Module, out: Path, **kw):
    return export_onnx(model, out, clip=CLIP, class_names=NAMES, convention=Override(mean=MEAN, std=STD),
                       frame_step=2, **kw)


@pytest.fixture(scope="module")
def float_model(model: nn.Module, workdir: Path) -> Path:
    return _export(model, workdir / "float.onnx").path


@pytest.fixture(scope="module")
def frames_model(model: nn.Module, workdir: Path) -> Path:
    return _export(model, workdir / "frames.onnx", with_preprocess=True).path


@pytest.fixture(scope="module")
def video(workdir: Path) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8).repeat(12, 0).repeat(10, 1)  # blocky 48x60 frames
    frames = np.stack([np.roll(base, 2 * i, axis=1) for i in range(40)])
    return write_video(workdir / "synthetic.mp4", frames, fps=25, codec="mjpeg")


def test_auto_providers_are_ordered_and_keep_cpu() -> None:
    chosen = resolve_providers("auto")
    order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert chosen == [p for p in order if p in available_providers()]
    assert chosen[-1] == "CPUExecutionProvider"
    assert resolve_providers("cpu") == resolve_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_unavailable_provider_is_one_clear_error() -> None:
    if "TensorrtExecutionProvider" in available_providers():
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BackendUnavailable, match="tensorrt not available in this onnxruntime build; .*CPU"):
        resolve_providers("tensorrt")
    with pytest.raises(BackendUnavailable, match="NoSuchExecutionProvider"):
        resolve_providers(["cpu", "NoSuchExecutionProvider"])


def test_session_options() -> None:
    options = session_options()
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.intra_op_num_threads == len(__import__("os").sched_getaffinity(0))
    assert session_options(threads=1).intra_op_num_threads == 1


def test_predict_matches_pytorch(model: nn.Module, float_model: Path) -> None:
    clf = OnnxClassifier(float_model)
    assert clf.provider in [*available_providers(), "OpenVINO"]
    assert clf.class_names == NAMES and clf.clip == CLIP and clf.batch_size is None
    x = torch.randn(5, 3, *CLIP, generator=torch.Generator().manual_seed(0))
    want = model(x).detach().numpy()
    np.testing.assert_allclose(clf.predict(x), want, rtol=0, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(clf.predict(x.numpy()), clf.predict(x), rtol=0, atol=0)
    small = OnnxClassifier(float_model, providers="cpu", max_batch=2)  # chunks of 2, 2 and 1
    np.testing.assert_allclose(small.predict(x), clf.predict(x), rtol=0, atol=1e-5 * np.abs(want).max())


def test_predict_rejects_bad_input(float_model: Path, frames_model: Path) -> None:
    clf = OnnxClassifier(float_model)
    with pytest.raises(ValueError, match=r"must be float clips \[N, 3, 8, 32, 32\], got \[2, 3, 8, 16, 16\]"):
        clf.predict(np.zeros((2, 3, 8, 16, 16), np.float32))
    with pytest.raises(ValueError, match="floating-point"):
        clf.predict(np.zeros((1, 3, *CLIP), np.uint8))
    with pytest.raises(ValueError, match="takes uint8 frames"):
        OnnxClassifier(frames_model).predict(np.zeros((1, *CLIP, 3), np.float32))


def test_static_batch_model_pads_the_last_chunk(model: nn.Module, workdir: Path) -> None:
    path = _export(model, workdir / "static.onnx", batch=2, opset=17).path
    clf = OnnxClassifier(path)
    assert clf.batch_size == 2
    x = torch.randn(3, 3, *CLIP, generator=torch.Generator().manual_seed(1))
    want = model(x).detach().numpy()
    np.testing.assert_allclose(clf.predict(x), want, rtol=0, atol=1e-4 * np.abs(want).max())


def _pytorch_video_scores(model: nn.Module, video: Path, clips: int) -> np.ndarray:
    """The PyTorch path: the same decoding, the float clips through the model, softmax averaged."""
    x = load_clips(video, clip_len=CLIP[0], frame_step=2, size=CLIP[1], clips=clips, mean=MEAN, std=STD)
    with torch.no_grad():
        return torch.softmax(model(x), dim=1).mean(0).numpy()


def test_predict_video_agrees_with_pytorch(model: nn.Module, float_model: Path, video: Path) -> None:
    scores = OnnxClassifier(float_model).predict_video(video, clips=3)
    assert scores.shape == (len(NAMES),) and abs(float(scores.sum()) - 1) < 1e-5
    np.testing.assert_allclose(scores, _pytorch_video_scores(model, video, 3), rtol=0, atol=1e-5)


def test_predict_video_uint8_path(model: nn.Module, frames_model: Path, video: Path) -> None:
    clf = OnnxClassifier(frames_model)
    assert clf.metadata.any_frame_size and clf.expected_shape() == (CLIP[0], "H", "W", 3)
    # the graph crops and resizes in float like cube_crop: no uint8 rounding between, so the float path's
    # scores up to the bilinear weights' float rounding
    np.testing.assert_allclose(clf.predict_video(video, clips=3), _pytorch_video_scores(model, video, 3),
                               rtol=0, atol=1e-5)


def test_frames_model_takes_any_size_and_clip_sized_frames(model: nn.Module, frames_model: Path) -> None:
    """Raw frames of any size, and frames already resized to the clip (e.g. by swscale) as they are."""
    clf = OnnxClassifier(frames_model)
    gen = torch.Generator().manual_seed(4)
    for size in ((32, 32), (48, 64), (70, 30)):
        frames = torch.randint(0, 256, (2, CLIP[0], *size, 3), dtype=torch.uint8, generator=gen)
        (x,) = load_clips_from_frames(frames)
        want = model(x).detach().numpy()
        np.testing.assert_allclose(clf.predict(frames), want, rtol=0, atol=1e-4 * np.abs(want).max())
    with pytest.raises(ValueError, match=r"uint8 frames \[N, 8, H, W, 3\], got \[1, 4, 32, 32, 3\]"):
        clf.predict(np.zeros((1, 4, 32, 32, 3), np.uint8))


def load_clips_from_frames(frames: torch.Tensor) -> tuple[torch.Tensor]:
    """The evaluation crop of whole clips ``[n, T, H, W, 3]``, normalised: ``([n, 3, T, h, w],)``."""
    from vidfast.data.samplers import center_box
    from vidfast.ops import cube_crop

    n, t, height, width, _ = frames.shape
    boxes = torch.tensor(center_box(height, width)).expand(n, 1, 4)
    return (cube_crop(frames, torch.arange(t).expand(n, 1, t), boxes, CLIP, mean=MEAN, std=STD)[:, 0],)


@pytest.mark.parametrize(("size", "codec"), [
    ((48, 60), "mjpeg"), ((90, 40), "h264"), ((64, 64), "mpeg4"), ((120, 212), "h264"),
])
def test_video_parity_with_the_torch_evaluation_path(model: nn.Module, float_model: Path,
                                                     frames_model: Path, workdir: Path,
                                                     size: tuple[int, int], codec: str) -> None:
    """Both graph kinds, on videos of several sizes and aspect ratios, against the training pipeline's
    evaluation path (PyAV decode, ``uniform_clips``, ``cube_crop``, the PyTorch model): scores within 1e-5
    (only the bilinear weights' float rounding and the network's float32 summation order differ)."""
    rng = np.random.default_rng(size[0])
    h, w = size
    blocks = rng.integers(0, 256, (h // 6 + 1, w // 6 + 1, 3), dtype=np.uint8)
    base = blocks.repeat(6, 0).repeat(6, 1)[:h, :w]
    frames = np.stack([np.roll(base, 3 * i, axis=1) for i in range(37)])
    path = write_video(workdir / f"parity_{h}x{w}_{codec}.mp4", frames, fps=25, codec=codec)
    want = _pytorch_video_scores(model, path, 4)
    for graph in (float_model, frames_model):
        got = OnnxClassifier(graph).predict_video(path, clips=4)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_deploy_frame_reading_matches_the_training_decoder(workdir: Path) -> None:
    """Frame numbering, seeking and the clip plan of ``vidfast.deploy.video`` equal the training side's."""
    from vidfast.data.decoders import open_video
    from vidfast.data.policies import uniform_clips
    from vidfast.deploy.video import VideoFile, uniform_clip_indices

    plans = [(40, 3, 8, 2), (5, 4, 8, 1), (100, 10, 16, 1), (17, 1, 16, 3), (1, 2, 4, 1)]
    for n, clips, clip_len, frame_step in plans:
        want = uniform_clips(clips, clip_len, frame_step).plan(n, 8, 8).frame_idx[:, 0].numpy()
        np.testing.assert_array_equal(uniform_clip_indices(n, clips, clip_len, frame_step), want)
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (60, 32, 48, 3), dtype=np.uint8)
    path = write_video(workdir / "gop.mp4", frames, fps=30, codec="h264", gop=12)
    wanted = [59, 0, 13, 13, 40, 25, 26]
    with VideoFile(path) as video, open_video(str(path), "pyav") as reference:
        assert (video.num_frames, video.height, video.width) == (reference.num_frames, 32, 48)
        np.testing.assert_array_equal(video.frames(wanted), reference.get_frames(wanted).numpy())
        with pytest.raises(VidfastError, match="frame 60 is outside"):
            video.frames([60])


def _fixed_size_frames_graph(float_model: Path, out: Path) -> Path:
    """A preprocessing graph as exports before the any-size one were: uint8 ``[N, T, h, w, 3]`` of exactly the
    clip size, normalised in-graph, no ``vidfast.crop`` key, and the input and ``vidfast.input`` still named
    "frames" (now "rgb_uint8")."""
    from onnx import TensorProto, helper, numpy_helper

    from vidfast.conventions import normalising_affine

    proto = onnx.load(str(float_model))
    scale, bias = (np.array(v, np.float32).reshape(3, 1, 1, 1) for v in normalising_affine(MEAN, STD))
    proto.graph.initializer.extend([numpy_helper.from_array(scale, "old_scale"),
                                    numpy_helper.from_array(bias, "old_bias")])
    nodes = [helper.make_node("Cast", ["frames"], ["old_f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["old_f"], ["old_t"], perm=[0, 4, 1, 2, 3]),
             helper.make_node("Mul", ["old_t", "old_scale"], ["old_s"]),
             helper.make_node("Add", ["old_s", "old_bias"], ["clip"])]
    old_nodes = list(proto.graph.node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes + old_nodes)
    del proto.graph.input[:]
    proto.graph.input.append(helper.make_tensor_value_info("frames", TensorProto.UINT8, ["N", *CLIP, 3]))
    for prop in proto.metadata_props:
        if prop.key == "vidfast.input":
            prop.value = "frames"
    keep = [p for p in proto.metadata_props if p.key != "vidfast.crop"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    onnx.save(proto, str(out))
    return out


def test_fixed_size_frames_graphs_of_older_exports(model: nn.Module, float_model: Path, video: Path,
                                                   workdir: Path) -> None:
    """They get the evaluation crop's frames rounded to uint8 (as before): scores within the rounding."""
    clf = OnnxClassifier(_fixed_size_frames_graph(float_model, workdir / "old_frames.onnx"))
    assert clf.metadata.preprocess and not clf.metadata.any_frame_size and clf.expected_shape() == (*CLIP, 3)
    scores, want = clf.predict_video(video, clips=3), _pytorch_video_scores(model, video, 3)
    np.testing.assert_allclose(scores, want, rtol=0, atol=2e-2)
    assert scores.argmax() == want.argmax()


def test_predict_video_undecodable_file(float_model: Path, workdir: Path) -> None:
    bad = workdir / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VidfastError):
        OnnxClassifier(float_model).predict_video(bad, clips=2)


def test_metadata_errors(float_model: Path, workdir: Path) -> None:
    proto = onnx.load(str(float_model))
    del proto.metadata_props[:]
    plain = workdir / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(VidfastError, match="is not a vidfast export: metadata lacks vidfast.arch"):
        OnnxClassifier(plain)
    with pytest.raises(VidfastError, match="ONNX model not found"):
        OnnxClassifier(workdir / "missing.onnx")
    garbage = workdir / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 definitely not protobuf")
    with pytest.raises(VidfastError, match="cannot read ONNX model"):
        read_metadata(garbage)
    props = read_metadata(float_model).to_props() | {"vidfast.clip": "8,32"}
    with pytest.raises(VidfastError, match="malformed vidfast metadata"):
        ModelMetadata.from_props(props)
    puzzle = onnx.load(str(float_model))
    for prop in puzzle.metadata_props:
        if prop.key == "vidfast.task":
            prop.value = "puzzle"
    onnx.save(puzzle, str(workdir / "puzzle.onnx"))
    with pytest.raises(VidfastError, match="full cubic-puzzle export"):
        OnnxClassifier(workdir / "puzzle.onnx")


def test_softmax_is_stable() -> None:
    p = softmax(np.array([[1000.0, 1000.0], [0.0, -1000.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [1.0, 0.0]], atol=1e-7)


@no_gpu
def test_best_backend_rule_on_cpu() -> None:
    small = best_backend(batch_size=1)
    assert (small.engine, small.provider) == ("onnxruntime", "CPUExecutionProvider")
    eager = best_backend(batch_size=10)
    assert eager.engine == "torch" and not eager.compile and eager.dtype is None  # precision measured
    long_run = best_backend(batch_size=8, total_clips=COMPILE_PAYBACK_CLIPS)
    assert long_run.compile and long_run.channels_last and long_run.dtype == torch.float32
    with pytest.raises(ValueError, match="batch_size"):
        best_backend(batch_size=0)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        best_backend(device="cuda")

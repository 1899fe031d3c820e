"""ONNX export of vidfast models and checkpoints, with metadata, optional in-graph preprocessing and fp16.

Exporters (torch 2.13): the ``dynamo`` exporter (``torch.export`` + onnxscript) is the default. It is exact
(~1e-8 on ResNet-18) and writes opset 18 or newer only: asked for an older opset it quietly keeps 18, so
older opsets go to the legacy ``torchscript`` exporter (deprecated by PyTorch, still exact here), and the
opset of the written graph is always verified. The dynamo exporter specialises a batch of 1, so the example
input has a batch of 2 when the batch axis is dynamic (``torch.export.Dim``); the legacy exporter takes
``dynamic_axes`` instead. Neither translates ``adaptive_avg_pool3d`` to a size other than 1, so the one model
that needs such a pool (C3D before ``fc6``) writes it as a mean and two matrix products
(:func:`vidfast.models.c3d.pool5_to_fc6_grid`), which both export as they are.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidfast import __version__, conventions
from vidfast.conventions import Convention, Override
from vidfast.data.samplers import center_box
from vidfast.deploy.metadata import ModelMetadata, write_metadata
from vidfast.deploy.preprocess import MIN_OPSET, RGB_INPUT, prepend_preprocess_graph
from vidfast.errors import CheckpointError, VidfastError
from vidfast.export.parity import FP16_TOLERANCE, FP32_TOLERANCE, ParityReport, check_parity, random_inputs
from vidfast.export.quantize import DEFAULT_CALIBRATION_CLIPS, QuantReport, calibration_clips, quantize_int8
from vidfast.models import PuzzleNet, create_model, is_model, load_checkpoint, model_card, read_checkpoint
from vidfast.models.identify import FileIdentity, choose_convention, identify
from vidfast.models.registry import DEFAULT_CLIP
from vidfast.ops import cube_crop

DEFAULT_OPSET = 18
#: opsets each exporter can write: the dynamo exporter from 18 up to what the installed onnx package knows
DYNAMO_MIN_OPSET = 18
TORCHSCRIPT_OPSETS = (9, 20)
EXPORTERS = ("auto", "dynamo", "torchscript")
_PROTOBUF_LIMIT = 2**31 - 1

PathLike = str | os.PathLike[str]


def max_opset() -> int:
    """The newest opset the installed ``onnx`` package defines."""
    import onnx

    return int(onnx.defs.onnx_opset_version())


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote: file, opset, exporter, input/output signature, metadata and parity."""

    path: Path
    opset: int
    exporter: str
    input_name: str
    input_shape: tuple[int | str, ...]
    output_names: tuple[str, ...]
    metadata: ModelMetadata
    parity: ParityReport | None
    seconds: float
    quantization: QuantReport | None = None

    def summary(self) -> list[str]:
        """Human-readable lines for the CLI."""
        shape = ", ".join(map(str, self.input_shape))
        meta = self.metadata
        lines = [
            f"wrote {self.path} ({self.path.stat().st_size / 2**20:.1f} MiB, opset {self.opset}, "
            f"{self.exporter} exporter, {self.seconds:.1f} s)",
            f"{meta.arch} ({meta.task}, {meta.precision}): input {self.input_name} [{shape}] -> "
            f"{', '.join(self.output_names)}; {len(meta.class_names)} class names",
        ]
        if self.quantization is not None:
            lines += self.quantization.summary()
        lines.append(str(self.parity) if self.parity is not None else "parity check not run (--no-check)")
        return lines


def parse_clip(text: str) -> tuple[int, int, int]:
    """``"16x112x112"`` -> ``(16, 112, 112)``; ``"16x112"`` means a square ``112x112`` frame."""
    parts = re.split(r"[x,]", text.strip().lower())
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 2:
        values.append(values[1])
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"--clip must look like TxHxW (e.g. 16x112x112) with positive sizes, got {text!r}")
    return values[0], values[1], values[2]


def parse_batch(text: str | int) -> str | int:
    """``"dynamic"`` or a positive batch size."""
    if isinstance(text, int) or text.strip().isdigit():
        size = int(text)
        if size >= 1:
            return size
    elif text.strip().lower() == "dynamic":
        return "dynamic"
    raise ValueError(f"--batch must be 'dynamic' or a positive integer, got {text!r}")


class CenterCropPreprocess(nn.Module):
    """The PyTorch reference of the in-graph preprocessing (:mod:`vidfast.deploy.preprocess`): uint8 frames
    ``[N, T, H, W, 3]`` of any size -> the evaluation crop (central square of the short side, bilinear to the
    clip's ``h x w``, normalised) through :func:`vidfast.ops.cube_crop` -> float ``[N, 3, T, h, w]``."""

    def __init__(self, clip: tuple[int, int, int], mean: tuple[float, float, float],
                 std: tuple[float, float, float]) -> None:
        super().__init__()
        self.clip, self.mean, self.std = clip, mean, std

    def forward(self, frames: Tensor) -> Tensor:
        n, t, height, width, _ = frames.shape
        box = torch.tensor(center_box(height, width)).view(1, 1, 4).expand(n, 1, 4)
        frame_idx = torch.arange(t).view(1, 1, t).expand(n, 1, t)
        return cube_crop(frames, frame_idx, box, self.clip, mean=self.mean, std=self.std)[:, 0]


class ExportGraph(nn.Module):
    """What gets exported: a cast to the compute dtype, the network, and the outputs cast to
    ``output_dtype`` (always a tuple of tensors); with ``preprocess`` (the parity reference of a frames
    graph) :class:`CenterCropPreprocess` first."""

    def __init__(self, net: nn.Module, preprocess: CenterCropPreprocess | None, compute_dtype: torch.dtype,
                 output_dtype: torch.dtype) -> None:
        super().__init__()
        self.net = net
        self.preprocess = preprocess
        self.compute_dtype = compute_dtype
        self.output_dtype = output_dtype

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if self.preprocess is not None:
            x = self.preprocess(x)
        out = self.net(x.to(self.compute_dtype))
        outs = tuple(out) if isinstance(out, tuple) else (out,)
        return tuple(o.to(self.output_dtype) for o in outs)


@dataclass
class _Source:
    """The network to export and what is known about it from its checkpoint or attributes."""

    net: nn.Module
    arch: str
    task: str
    class_names: list[str]
    data: Mapping[str, Any]
    num_pieces: int | None = None
    identity: FileIdentity | None = None


def _from_module(model: nn.Module, puzzle_full: bool) -> _Source:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    if isinstance(model, PuzzleNet):
        arch = getattr(model.backbone, "arch", type(model.backbone).__name__)
        if puzzle_full:
            return _Source(model, arch, "puzzle", [], {}, model.num_pieces)
        model = model.backbone
    elif puzzle_full:
        raise ValueError("puzzle_full needs a PuzzleNet or a puzzle checkpoint")
    task = "classify" if getattr(model, "num_classes", 1) > 0 else "features"
    return _Source(model, getattr(model, "arch", type(model).__name__), task, [], {})


def _from_checkpoint(ckpt: Mapping[str, Any], puzzle_full: bool) -> _Source:
    found = identify(ckpt)
    data = ckpt.get("data") if isinstance(ckpt.get("data"), Mapping) else {}
    puzzle = found.task == "puzzle"
    if puzzle_full and not puzzle:
        raise ValueError("puzzle_full needs a puzzle checkpoint (task 'puzzle'), this one is a classifier")
    if not puzzle:
        net = load_checkpoint(None, ckpt)
        return _Source(net, found.arch, "classify" if net.num_classes > 0 else "features",
                       found.class_names, data, identity=found)
    name = found.arch
    if not puzzle_full:
        return _Source(load_checkpoint(None, ckpt, num_classes=0), name, "features", [], data, identity=found)
    kwargs = ckpt.get("model_kwargs") if isinstance(ckpt.get("model_kwargs"), Mapping) else {}
    puzzle_kw = ckpt.get("puzzle") if isinstance(ckpt.get("puzzle"), Mapping) else {}
    try:
        net = PuzzleNet(create_model(name, num_classes=0, **kwargs), **puzzle_kw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot build the puzzle network of the checkpoint: {exc}") from None
    return _Source(load_checkpoint(net, ckpt), name, "puzzle", [], data, net.num_pieces, found)


def _resolve_source(model_or_checkpoint: nn.Module | PathLike | Mapping[str, Any],
                    puzzle_full: bool) -> _Source:
    if isinstance(model_or_checkpoint, nn.Module):
        source = _from_module(model_or_checkpoint, puzzle_full)
    else:
        ckpt = (read_checkpoint(model_or_checkpoint) if isinstance(model_or_checkpoint, str | os.PathLike)
                else model_or_checkpoint)
        source = _from_checkpoint(ckpt, puzzle_full)
    source.net = copy.deepcopy(source.net).float().cpu().eval()
    return source


def _default_clip(source: _Source, convention: Override) -> tuple[int, int, int]:
    data = source.data
    if "clip_len" in data and "size" in data:
        size = data["size"]
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        return int(data["clip_len"]), int(h), int(w)
    trained = _input_convention(source, convention).clip
    if trained is not None:
        return trained
    return model_card(source.arch).clip if is_model(source.arch) else DEFAULT_CLIP


def _input_convention(source: _Source, override: Override) -> Convention:
    """The checkpoint's convention (or the model card's) with ``override`` on top."""
    if source.identity is not None:
        return choose_convention(source.identity, override, source="the checkpoint")
    base = conventions.DEFAULT
    if is_model(source.arch):
        base = conventions.preset(model_card(source.arch).convention)
    try:
        return conventions.resolve(base, override)
    except ValueError as exc:
        raise VidfastError(str(exc)) from None


def _triple(name: str, values: Any, kind: type) -> tuple:
    """``values`` as a 3-tuple of ``kind`` (clip sizes, mean, std); ValueError naming ``name`` otherwise."""
    items = tuple(kind(v) for v in values)
    if len(items) != 3:
        raise ValueError(f"{name} needs 3 values, got {list(values)}")
    return items


def _pick_exporter(exporter: str, opset: int) -> str:
    top = max_opset()
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    lo, hi = TORCHSCRIPT_OPSETS
    if not lo <= opset <= top:
        raise VidfastError(f"opset {opset} cannot be served: the exporters write opsets {lo}..{top}")
    if exporter == "auto":
        return "dynamo" if opset >= DYNAMO_MIN_OPSET else "torchscript"
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        raise VidfastError(
            f"the dynamo exporter writes opset {DYNAMO_MIN_OPSET} or newer, not {opset}; use the torchscript "
            f"exporter for opsets {lo}..{hi}"
        )
    if exporter == "torchscript" and opset > hi:
        raise VidfastError(
            f"the torchscript exporter serves opsets {lo}..{hi}, not {opset}; use the dynamo exporter"
        )
    return exporter


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' progress prints, deprecation warnings and registration log lines."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _trace_to_onnx(graph: ExportGraph, example: Tensor, exporter: str, opset: int, dynamic: bool,
                   input_name: str, output_names: list[str]):
    """Run the chosen exporter and return the ``onnx.ModelProto``."""
    import onnx

    with _quiet():
        if exporter == "dynamo":
            shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
            program = torch.onnx.export(
                graph, (example,), dynamo=True, input_names=[input_name], output_names=output_names,
                opset_version=opset, dynamic_shapes=shapes, optimize=True, verbose=False,
            )
            return program.model_proto
        buffer = io.BytesIO()
        axes = {name: {0: "batch"} for name in [input_name, *output_names]} if dynamic else None
        torch.onnx.export(
            graph, (example,), buffer, dynamo=False, input_names=[input_name], output_names=output_names,
            opset_version=opset, dynamic_axes=axes, do_constant_folding=True,
        )
        return onnx.load_model_from_string(buffer.getvalue())


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of the innermost cause of ``exc`` (the exporters wrap the real reason), shortened."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _validate(proto, opset: int, exporter: str, full: bool = True) -> None:
    """The written opset is the one asked for; ``onnx.checker`` with strict shape inference passes (with
    ``full``)."""
    import onnx

    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise VidfastError(
            f"the {exporter} exporter wrote opset {written} instead of {opset}; choose another opset"
        )
    if proto.ByteSize() > _PROTOBUF_LIMIT or not full:
        return  # the checker needs a file for models over 2 GiB; the parity check's load still runs
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise VidfastError(f"exported graph fails onnx.checker: {_first_line(exc)}") from None


def _save(proto, out: Path) -> None:
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    if proto.ByteSize() > _PROTOBUF_LIMIT:
        onnx.save_model(proto, str(out), save_as_external_data=True, location=out.name + ".data")
    else:
        onnx.save_model(proto, str(out))


def export_onnx(
    model_or_checkpoint: nn.Module | PathLike | Mapping[str, Any],
    out: PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    batch: str | int = "dynamic",
    clip: tuple[int, int, int] | str | None = None,
    fp16: bool = False,
    fp32_io: bool = False,
    with_preprocess: bool = False,
    check: bool = True,
    puzzle_full: bool = False,
    class_names: list[str] | None = None,
    convention: Override = Override(),
    frame_step: int | None = None,
    exporter: str = "auto",
    tolerance: float | None = None,
    seed: int = 0,
    int8: bool = False,
    calibrate: PathLike | None = None,
    calibration_split: str = "train",
    calibration_count: int = DEFAULT_CALIBRATION_CLIPS,
) -> ExportResult:
    """Export a model, a checkpoint file or a read checkpoint dict to ONNX at ``out``.

    Graph: input ``clip`` float ``[N, 3, T, H, W]`` -> output ``logits`` ``[N, num_classes]`` (``features``
    ``[N, F]`` for a puzzle backbone; ``perm`` / ``rot`` for the full puzzle network with ``puzzle_full``,
    which takes ``pieces`` ``[N, P, 3, t, h, w]``). ``batch``: "dynamic" or a fixed size. ``clip``:
    ``(T, H, W)`` or "TxHxW", default from the checkpoint's data settings, else the model card.
    ``with_preprocess``: the input is ``rgb_uint8`` uint8 ``[N, T, H, W, 3]`` normalised in-graph with the
    input convention (the checkpoint's, recorded or told by its layout, ``convention`` on top; refused when
    it contradicts the file unless forced; for a module, its card's). ``fp16``:
    half-precision weights and compute; with ``fp32_io`` the graph still takes and returns float32.
    ``vidfast.*`` metadata is attached (see :mod:`vidfast.deploy.metadata`). With ``check``, onnxruntime (CPU)
    and PyTorch run the same random inputs and the export fails when outputs differ by more than ``tolerance``
    relative to the logit scale (1e-3 fp32, 5e-2 fp16). ``int8``: static int8 quantisation
    (:mod:`vidfast.export.quantize`) calibrated on ``calibration_count`` clips of ``calibration_split`` of
    the manifest ``calibrate``, checked against fp32 on held-out clips of it instead of the random-input
    parity check. The file is written only after all checks pass.
    """
    started = time.perf_counter()
    if int8 and (fp16 or calibrate is None):
        raise ValueError("--int8 needs --calibrate MANIFEST and excludes --fp16")
    chosen = _pick_exporter(exporter, opset)
    batch = parse_batch(batch)
    dynamic = batch == "dynamic"
    source = _resolve_source(model_or_checkpoint, puzzle_full)
    if isinstance(clip, str):
        clip = parse_clip(clip)
    clip = _triple("clip", clip, int) if clip is not None else _default_clip(source, convention)
    if min(clip) < 1:
        raise ValueError(f"clip must be (T, H, W) with positive sizes, got {clip}")
    data = source.data
    conv = _input_convention(source, convention)
    meta = ModelMetadata(
        arch=source.arch,
        clip=clip,
        mean=conv.mean,
        std=conv.std,
        value_scale=conv.value_scale,
        convention=conv.name,
        task=source.task,
        class_names=list(class_names if class_names is not None else source.class_names),
        frame_step=int(frame_step or data.get("frame_step") or 1),
        input_format="rgb_uint8" if with_preprocess else "clip",
        crop="center" if with_preprocess else "none",
        precision="int8" if int8 else "fp16" if fp16 else "fp32",
        version=__version__,
    )
    if with_preprocess and meta.task == "puzzle":
        raise ValueError("--with-preprocess crops whole frames; the full puzzle network takes puzzle pieces")
    if with_preprocess and opset < MIN_OPSET:
        raise VidfastError(f"--with-preprocess needs opset {MIN_OPSET} or newer (its Resize), not {opset}")
    t, h, w = clip
    pieces = (source.num_pieces,) if source.num_pieces else ()
    clip_shape = (*pieces, 3, t, h, w)
    preprocess = CenterCropPreprocess(clip, conv.unit_mean, conv.unit_std) if with_preprocess else None
    reference = ExportGraph(source.net, preprocess, torch.float32, torch.float32).eval()
    example = random_inputs((2 if dynamic else batch, *clip_shape), False, seed)
    exported_net = copy.deepcopy(source.net)
    try:
        with torch.no_grad():
            probe = exported_net(example[:1])
    except (RuntimeError, ValueError) as exc:
        raise VidfastError(f"{source.arch} cannot take clip {t}x{h}x{w}: {_first_line(exc)}") from None
    if meta.task == "classify" and meta.class_names and len(meta.class_names) != probe.shape[-1]:
        raise ValueError(f"{len(meta.class_names)} class names for a {probe.shape[-1]}-class model")
    compute = torch.float16 if fp16 else torch.float32
    io_dtype = torch.float32 if fp32_io else compute
    graph = ExportGraph(exported_net.to(compute), None, compute, io_dtype).eval()
    example = example.to(torch.float32 if with_preprocess else io_dtype)  # preprocessing feeds float32
    net_input = "pieces" if meta.task == "puzzle" else "clip"
    input_name = RGB_INPUT if with_preprocess else net_input
    output_names = {"puzzle": ["perm", "rot"], "features": ["features"]}.get(meta.task, ["logits"])
    try:
        proto = _trace_to_onnx(graph, example, chosen, opset, dynamic, net_input, output_names)
    except Exception as exc:  # exporter failures come as many types (torch.onnx errors, RuntimeError, ...)
        raise VidfastError(
            f"cannot export {source.arch} with the {chosen} exporter at opset {opset}: {_first_line(exc)}"
        ) from None
    quantization = None
    if int8:
        clips = calibration_clips(calibrate, clip, meta.frame_step, conv.unit_mean, conv.unit_std,
                                  calibration_count, calibration_split, seed)
        proto, quantization = quantize_int8(proto, clips)
    if with_preprocess:
        prepend_preprocess_graph(proto, conv.unit_mean, conv.unit_std)
    write_metadata(proto, meta)
    if quantization is not None:
        proto.metadata_props.add(key="vidfast.int8", value=quantization.to_json())
    proto.doc_string = f"vidfast {meta.arch} ({meta.task}): {meta.sampling()}"
    _validate(proto, opset, chosen, full=quantization is None)  # onnx cannot check com.microsoft int8 ops

    parity = None
    if check and int8:
        parity = ParityReport((), float("nan"), float("nan"), float("nan"), 0.0,
                              skipped="int8 is checked against fp32 on held-out calibration clips (above)")
    elif check:
        default_tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
        batches = (1, 3) if dynamic else (batch, batch)
        if with_preprocess:  # the clip's size, then larger frames of another aspect ratio: crop and resize
            shapes = [(batches[0], t, h, w, 3), (batches[1], t, 2 * h + 5, 3 * w + 2, 3)]
        else:
            shapes = [(b, *clip_shape) for b in dict.fromkeys(batches)]
        parity = check_parity(
            proto.SerializeToString(), reference, shapes, with_preprocess, io_dtype,
            default_tolerance if tolerance is None else tolerance, seed + 1, fp16,
        )
        if not parity.passed:
            raise VidfastError(f"export of {source.arch} rejected, {parity}")
    out_path = Path(out)
    _save(proto, out_path)
    in_shape = tuple(d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim)
    return ExportResult(out_path, opset, chosen, input_name, in_shape, tuple(output_names), meta, parity,
                        time.perf_counter() - started, quantization)

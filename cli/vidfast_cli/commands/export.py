"""``vidfast export``: a checkpoint to an ONNX model with metadata, checked against PyTorch in onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidfast_cli import options as opt

_GRAPH = "Graph"
_INT8 = "int8"


@opt.with_convention_options
def export(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", "-c", help="Checkpoint to export: vidfast (classifier or puzzle), "
                           "3D-ResNets 2018/2020 or torchvision video weights.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write.")],
    opset: Annotated[
        int, typer.Option("--opset", help="ONNX opset (18+: dynamo exporter; 9-17: TorchScript exporter).",
                          rich_help_panel=_GRAPH)
    ] = 18,
    batch: Annotated[
        str, typer.Option("--batch", help="'dynamic' or a fixed batch size.", rich_help_panel=_GRAPH)
    ] = "dynamic",
    clip: Annotated[
        str | None,
        typer.Option("--clip", help="Clip size TxHxW (default: the checkpoint's training clip, else the "
                     "model's).", rich_help_panel=_GRAPH),
    ] = None,
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Half-precision weights and compute (for GPU providers).",
                           rich_help_panel=_GRAPH)
    ] = False,
    fp32_io: Annotated[
        bool, typer.Option("--fp32-io", help="With --fp16: keep float32 inputs and outputs (casts in-graph).",
                           rich_help_panel=_GRAPH)
    ] = False,
    with_preprocess: Annotated[
        bool,
        typer.Option("--with-preprocess", help="Input uint8 frames [N,T,H,W,3]; float conversion, "
                     "normalization and layout change happen in the graph.", rich_help_panel=_GRAPH),
    ] = False,
    puzzle_full: Annotated[
        bool, typer.Option("--puzzle-full", help="Puzzle checkpoint: export the whole puzzle network (pieces "
                           "-> perm, rot) instead of its backbone.", rich_help_panel=_GRAPH)
    ] = False,
    exporter: Annotated[
        str, typer.Option("--exporter", help="auto, dynamo or torchscript.", rich_help_panel=_GRAPH)
    ] = "auto",
    int8: Annotated[
        bool, typer.Option("--int8", help="Static int8 quantisation (onnxruntime; per-channel weights); the "
                           "format and the ops kept in float are chosen by measurement on the installed "
                           "runtimes (onnxruntime, OpenVINO).", rich_help_panel=_INT8)
    ] = False,
    calibrate: Annotated[
        Path | None, typer.Option("--calibrate", help="Manifest whose clips calibrate --int8 (and check it "
                                  "against fp32 on held-out clips).", rich_help_panel=_INT8)
    ] = None,
    calibration_split: Annotated[
        str, typer.Option("--calibration-split", help="Manifest split the calibration clips come from.",
                          rich_help_panel=_INT8)
    ] = "train",
    calibration_clips: Annotated[
        int, typer.Option("--calibration-clips", min=4, help="Clips to calibrate and check with (a quarter "
                          "held out).", rich_help_panel=_INT8)
    ] = 64,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Compare onnxruntime with PyTorch on random clips; "
                           "fail beyond 1e-3 relative (5e-2 for fp16).")
    ] = True,
    convention: Any = None,
) -> None:
    """Export a checkpoint to ONNX: input `clip` float [N,3,T,H,W] (or `rgb_uint8` with --with-preprocess),
    output `logits` [N,classes]; arch, class names, input convention (value scale, mean, std), clip size
    and frame step travel as metadata. A puzzle checkpoint exports its backbone (output `features`) unless
    --puzzle-full."""
    from vidfast.export import export_onnx, parse_batch, parse_clip

    result = export_onnx(
        checkpoint, out, opset=opset, batch=parse_batch(batch), clip=parse_clip(clip) if clip else None,
        fp16=fp16, fp32_io=fp32_io, with_preprocess=with_preprocess, check=check, puzzle_full=puzzle_full,
        exporter=exporter, convention=convention, int8=int8, calibrate=calibrate,
        calibration_split=calibration_split, calibration_count=calibration_clips,
    )
    for line in result.summary():
        typer.echo(line)

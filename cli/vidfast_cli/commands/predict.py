"""``vidfast predict``: video-level labels with scores for one or many files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidfast_cli import options as opt

_MODEL = "Model"


@opt.with_convention_options
def predict(
    videos: Annotated[list[Path], typer.Argument(help="Video files (or JPEG frame folders) to classify.")],
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", "-c", help="Classifier checkpoint (PyTorch path; repeat it for a score "
                     "ensemble).", rich_help_panel=_MODEL),
    ] = None,
    onnx: Annotated[
        Path | None,
        typer.Option("--onnx", help="Model written by `vidfast export` (onnxruntime path; class names, clip "
                     "size and normalization come from its metadata).", rich_help_panel=_MODEL),
    ] = None,
    topk: Annotated[int, typer.Option("--topk", min=1, help="Classes to show per video.")] = 5,
    clips: Annotated[
        int, typer.Option("--clips", min=1, help="Evenly spaced clips per video whose scores are averaged.")
    ] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list: path, labels [{label, score}], error.")
    ] = False,
    device: opt.Device = None,
    amp: opt.Amp = None,
    channels_last: opt.ChannelsLast = None,
    convention: Any = None,
) -> None:
    """Classify whole videos: the softmax scores of CLIPS evenly spaced clips are averaged per video.

    With --checkpoint the PyTorch model runs with channels_last_3d in the precision measured fastest among
    those whose convolutions pass a check against fp32 on this machine (--amp/--no-amp force it); with
    --onnx the exported model runs in onnxruntime on the best installed provider. A file that cannot be
    decoded gets one `error: FILE: reason` line on stderr; the other files are still predicted and the exit
    code is 1.
    """
    import json

    from vidfast.deploy.predict import open_scorer, predict_videos

    scorer = open_scorer(checkpoint or [], onnx=onnx, device=device or "auto",
                         autocast=amp,
                         channels_last=True if channels_last is None else channels_last,
                         convention=convention)
    results = predict_videos(scorer, videos, topk=topk, clips=clips)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
    for result in results:
        if result.error is not None:
            typer.echo(f"error: {result.path}: {result.error}", err=True)
        elif not as_json:
            labels = ", ".join(f"{name} {score:.3f}" for name, score in result.top)
            typer.echo(f"{result.path}: {labels}")
    if any(r.error is not None for r in results):
        raise typer.Exit(code=1)

"""``vidfast eval``: clip- and video-level accuracy of one checkpoint or a score ensemble of several."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidfast_cli import options as opt

_EVAL = "Evaluation"


@opt.with_convention_options
def evaluate(
    manifest: opt.ManifestArg,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", "-c", help="Classifier checkpoint; repeat it to average the softmax "
                     "scores of several models (score ensemble).", rich_help_panel=_EVAL),
    ] = None,
    onnx: Annotated[
        Path | None,
        typer.Option("--onnx", help="Model written by `vidfast export` (fp32 or --int8) instead of "
                     "checkpoints; --device auto times onnxruntime and OpenVINO on it and keeps the faster.",
                     rich_help_panel=_EVAL),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="Manifest split to evaluate: train, val or test.",
                          rich_help_panel=_EVAL)
    ] = "test",
    clips: Annotated[
        int, typer.Option("--clips", min=1, help="Evenly spaced clips per video whose scores are averaged.",
                          rich_help_panel=_EVAL)
    ] = 10,
    sliding: Annotated[
        bool, typer.Option("--sliding/--no-sliding", help="Score every non-overlapping window of each video "
                           "instead of --clips evenly spaced clips.", rich_help_panel=_EVAL)
    ] = False,
    run_dir: Annotated[
        Path, typer.Option("--run-dir", help="Where report.json, confusion.png and predictions.csv go.",
                           rich_help_panel=_EVAL)
    ] = Path("runs/eval"),
    batch_size: opt.BatchSize = None,
    workers: opt.Workers = None,
    clip_len: opt.ClipLen = None,
    size: opt.Size = None,
    frame_step: opt.FrameStep = None,
    device: opt.Device = None,
    amp: opt.Amp = None,
    channels_last: opt.ChannelsLast = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table.")
    ] = False,
    convention: Any = None,
) -> None:
    """Evaluate classifier checkpoint(s) on a manifest split: clip- and video-level top-1/top-k, per-class
    accuracy and a confusion matrix, written to RUN_DIR/report.json and RUN_DIR/confusion.png, and the top-k
    classes of every video to RUN_DIR/predictions.csv. Videos without a label (-1, e.g. a test split) are
    predicted but not counted in the accuracy.

    Clip geometry (--clip-len, --size, --frame-step) and the input convention (--preset, --mean, --std,
    --value-scale) default to what each checkpoint records or its layout tells.
    """
    import json

    from vidfast.engine.evaluate import EvalConfig
    from vidfast.engine.evaluate import evaluate as run_evaluation

    if bool(checkpoint) == (onnx is not None):
        raise ValueError("give either --checkpoint (one or more) or --onnx, not both and not neither")
    ensemble = None
    if onnx is not None:
        from vidfast.deploy.predict import OnnxEnsemble

        ensemble = OnnxEnsemble(onnx, providers=device or "auto")
    config = EvalConfig(
        manifest=str(manifest), checkpoints=[str(c) for c in checkpoint or []], split=split, clips=clips,
        sliding=sliding, batch_size=batch_size or 16, workers=2 if workers is None else workers,
        device=device or "auto", amp=amp,
        channels_last=True if channels_last is None else channels_last,
        clip_len=clip_len, size=size, frame_step=frame_step, run_dir=str(run_dir),
        convention=convention, onnx=str(onnx) if onnx is not None else None,
    )
    report = run_evaluation(config, progress=not as_json, ensemble=ensemble)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    _print_report(report, run_dir)


def _print_report(report, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    def pct(value: float | None) -> str:
        return "n/a" if value is None or value != value else f"{100 * value:.1f} %"

    console = Console()
    if report.num_unlabelled:
        console.print(report.extra["labels"])
    if not report.num_videos:
        console.print(f"report: {run_dir / 'report.json'}, predictions: {run_dir / 'predictions.csv'}")
        return
    table = Table(title="accuracy",
                  caption=f"{report.num_videos} videos, {report.num_clips} clips, {report.skipped} skipped")
    table.add_column("level")
    table.add_column("top-1", justify="right")
    table.add_column(f"top-{report.topk}", justify="right")
    table.add_row("clip", pct(report.clip_top1), pct(report.clip_top5))
    table.add_row("video", pct(report.video_top1), pct(report.video_top5))
    console.print(table)
    worst = sorted((acc, name) for name, acc in report.per_class.items() if acc is not None)[:5]
    if worst:
        console.print("lowest per-class accuracy: " + ", ".join(f"{name} {pct(acc)}" for acc, name in worst))
    console.print(f"report: {run_dir / 'report.json'}, confusion matrix: {run_dir / 'confusion.png'}")

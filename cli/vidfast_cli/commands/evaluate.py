"""``vidfast eval``: clip- and video-level accuracy of one checkpoint or a score ensemble of several."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from vidfast.engine.config import EvalConfig
from vidfast_cli import options as opt

#: what ``vidfast eval`` evaluates unless an option says otherwise
DEFAULTS = EvalConfig(run_dir="runs/eval")


@opt.with_convention_options
@opt.with_config(EvalConfig, panel="Evaluation", defaults=DEFAULTS)
def evaluate(
    manifest: opt.ManifestArg,
    as_json: opt.AsJson = False,
    overrides: Any = None,
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

    from vidfast.engine.evaluate import evaluate as run_evaluation

    config = opt.configured(DEFAULTS, {**overrides, "manifest": str(manifest), "convention": convention})
    if bool(config.checkpoints) == (config.onnx is not None):
        raise ValueError("give either --checkpoint (one or more) or --onnx, not both and not neither")
    ensemble = None
    if config.onnx is not None:
        from vidfast.deploy.predict import OnnxEnsemble

        ensemble = OnnxEnsemble(Path(config.onnx), providers=config.device)
    report = run_evaluation(config, progress=not as_json, ensemble=ensemble)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    _print_report(report, Path(config.run_dir))


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

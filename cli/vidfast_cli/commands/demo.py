"""``vidfast demo``: the papers' comparison in miniature, end to end on synthetic data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidfast.demo import DemoConfig
from vidfast_cli import options as opt


@opt.with_config(DemoConfig)
def demo(
    quick: Annotated[
        bool, typer.Option("--quick", help="About a minute: 4 classes, 2 epochs, tiny clips (a smoke test; "
                           "its accuracies mean little).")
    ] = False,
    overrides: Any = None,
) -> None:
    """Synthesize a motion dataset in the paper's setting (a large unlabelled pool, a few labelled videos
    per class, held-out videos), pretrain on Space-Time Cubic Puzzles on the pool, fine-tune on the labelled
    videos, train the same network from scratch with the same budget, evaluate both on the held-out videos,
    export to ONNX and predict with onnxruntime; print random init vs puzzle-pretrained accuracy, puzzle
    accuracy and throughput (about 6 minutes on 2 CPU cores; --quick about one). Numbers are whatever this
    run measures, reported as they are.
    """
    from rich.console import Console
    from rich.table import Table

    from vidfast.demo import format_summary, run_demo

    cfg = opt.configured(DemoConfig.quick() if quick else DemoConfig(), overrides)
    out = Path(cfg.out)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    result = run_demo(cfg, say=console.print)
    g = cfg.geometry
    table = Table(title=f"{result.num_classes} motion classes, {result.num_pool_videos} unlabelled pool / "
                  f"{result.num_train_videos} labelled / {result.num_val_videos} held-out videos, "
                  f"{g.arch} x{g.widen_factor:g}, {g.clip_len}x{g.size}x{g.size} clips")
    table.add_column("")
    table.add_column("random init", justify="right")
    table.add_column("puzzle-pretrained", justify="right")
    for row in format_summary(result):
        table.add_row(*row)
    console.print(table)
    console.print(result.verdict)
    console.print(f"runs, plots and reports: {out}/ (pretrain, finetune, scratch: curves.png; eval_*: "
                  f"confusion.png, report.json); numbers: {out / 'summary.json'}; "
                  f"total {sum(result.seconds.values()):.0f} s")

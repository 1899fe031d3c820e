"""``vidfast study``: the label-efficiency comparison of random init and cubic-puzzle pretraining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidfast.study.config import StudyConfig
from vidfast_cli import options as opt


@opt.with_config(StudyConfig)
def study(
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Seconds per run: 2 classes, tiny videos, 2 seeds (a smoke test; its "
            "accuracies mean nothing).",
        ),
    ] = False,
    overrides: Any = None,
) -> None:
    """Pretrain on an unlabelled pool (ST puzzles, rotation only, the pool's labels), fine-tune every row on k
    labelled videos per class with the learning rate and length chosen on validation, compare with random
    init (also with the pretraining's compute) on held-out test videos, paired, with 95 % intervals, on the
    aligned and the control data: report.md, results.json, a plot per catalogue.
    """
    from vidfast.study import run_study

    cfg = opt.configured(StudyConfig.quick() if quick else StudyConfig(), overrides)
    out = Path(cfg.out)
    results = run_study(cfg, say=typer.echo)
    typer.echo((out / "report.md").read_text())
    plots = ", ".join(str(out / f"accuracy_vs_labels-{c}.png") for c in results["catalogues"])
    typer.echo(
        f"outputs: {out / 'report.md'}, {out / 'results.json'}, {plots} ({results['seconds'] / 60:.1f} min)"
    )

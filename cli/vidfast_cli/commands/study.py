"""``vidfast study``: the label-efficiency comparison of random init and cubic-puzzle pretraining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vidfast_cli import options as opt


def _ints(text: str | None, option: str) -> tuple[int, ...] | None:
    from vidfast.errors import VidfastError

    try:
        return None if text is None else tuple(int(k) for k in text.split(","))
    except ValueError:
        raise VidfastError(f"{option} must be comma-separated integers, got {text!r}") from None


def study(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder of the study (data, runs, cache, report.md, results.json, plots); a "
            "study already there is continued, its finished work reused.",
        ),
    ] = Path("study_runs"),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Seconds per run: 2 classes, tiny videos, 2 seeds (a smoke test; its "
            "accuracies mean nothing).",
        ),
    ] = False,
    catalogues: Annotated[
        str | None,
        typer.Option(
            "--catalogues",
            help="Synthetic data catalogues, comma-separated: aligned (drifts "
            "right/left/down/up, particles fall down), control (spins, slides, swings in any "
            "direction, gravity drawn per video). Default: both.",
        ),
    ] = None,
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="Also the rows of Kim et al.'s Tables 2 and 4 (spatial-only, "
            "temporal-only, no regularisation, + channel replication, + jittering, S+T ensemble).",
        ),
    ] = False,
    ks: Annotated[
        str | None,
        typer.Option(
            "--ks", help="Labelled videos per class of the cells, comma-separated, each >= 2 (default 2,4,8)."
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", help="Pretrainings per row, each reused by its cells (default 3)."),
    ] = None,
    pool: Annotated[
        Path | None,
        typer.Option(
            "--pool",
            help="Your unlabelled pretraining manifest (all its usable rows; with "
            "--labelled and --test instead of synthetic data).",
        ),
    ] = None,
    labelled: Annotated[
        Path | None, typer.Option("--labelled", help="Your labelled manifest (its train rows).")
    ] = None,
    test: Annotated[Path | None, typer.Option("--test", help="Your test manifest (its test rows).")] = None,
    frames: Annotated[
        int | None,
        typer.Option(
            "--frames", help="Frames of every labelled and test video held in memory (its middle ones)."
        ),
    ] = None,
    pretrain_epochs: Annotated[
        int | None, typer.Option("--pretrain-epochs", help="Epochs of every pretraining on the pool.")
    ] = None,
    arch: opt.Arch = None,
    widen_factor: opt.WidenFactor = None,
    clip_len: opt.ClipLen = None,
    size: opt.Size = None,
    batch_size: opt.BatchSize = None,
    device: opt.Device = None,
    workers: opt.Workers = None,
    seed: opt.Seed = None,
) -> None:
    """Pretrain on an unlabelled pool (ST puzzles, rotation only, the pool's labels), fine-tune every row on k
    labelled videos per class with the learning rate and length chosen on validation, compare with random
    init (also with the pretraining's compute) on held-out test videos, paired, with 95 % intervals, on the
    aligned and the control data: report.md, results.json, a plot per catalogue.
    """
    import dataclasses

    from vidfast.study import StudyConfig, run_study

    cfg = StudyConfig.quick(str(out)) if quick else StudyConfig(out=str(out))
    given = {
        "catalogues": None if catalogues is None else tuple(c.strip() for c in catalogues.split(",")),
        "ablation": ablation or None,
        "ks": _ints(ks, "--ks"),
        "seeds": seeds,
        "pool": pool and str(pool),
        "labelled": labelled and str(labelled),
        "test": test and str(test),
        "frames": frames,
        "pretrain_epochs": pretrain_epochs,
        "seed": seed,
    }
    shape = {
        "arch": arch,
        "widen_factor": widen_factor,
        "clip_len": clip_len,
        "size": size,
        "batch_size": batch_size,
        "device": device,
        "workers": workers,
    }
    geometry = dataclasses.replace(cfg.geometry, **{k: v for k, v in shape.items() if v is not None})
    cfg = dataclasses.replace(cfg, geometry=geometry, **{k: v for k, v in given.items() if v is not None})
    results = run_study(cfg, say=typer.echo)
    typer.echo((out / "report.md").read_text())
    plots = ", ".join(str(out / f"accuracy_vs_labels-{c}.png") for c in results["catalogues"])
    typer.echo(
        f"outputs: {out / 'report.md'}, {out / 'results.json'}, {plots} ({results['seconds'] / 60:.1f} min)"
    )

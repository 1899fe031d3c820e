"""``vidfast pretrain|train|finetune``: parse options, resolve the run config, call ``vidfast.engine.fit``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from vidfast.engine.config import TrainConfig
from vidfast_cli.options import (
    ManifestArg,
    overrides_from_options,
    training_options,
    with_options,
)

# exit codes besides 0 (done), 1 (error) and 2 (usage); the README's "Long runs on a cluster" lists them
EXIT_INTERRUPTED = 130  # Ctrl-C: checkpoint saved
EXIT_PREEMPTED = 75  # SIGTERM or --preempt-signal: checkpoint saved, requeue (sysexits EX_TEMPFAIL)
EXIT_CHECKPOINT_WRITES = 74  # --checkpoint-failures writes failed in a row: stopped (sysexits EX_IOERR)


def _run(task: str, manifest: Path, config_file: Path | None, given: dict[str, Any],
         config_type: type[TrainConfig] = TrainConfig) -> None:
    """Resolve defaults <- --config <- options, train, print where the results are."""
    from vidfast.engine import fit, resolve_config
    from vidfast.engine.checkpoint import CheckpointWriteError
    from vidfast.ranks import launched_rank

    overrides = overrides_from_options(given)
    overrides.setdefault("data", {})["manifest"] = str(manifest)
    cfg = resolve_config(task, config_file, overrides, config_type=config_type)  # type: ignore[arg-type]
    try:
        result = fit(cfg)
    except CheckpointWriteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=EXIT_CHECKPOINT_WRITES) from None
    if result.status == "interrupted":
        typer.echo(
            f"interrupted by {result.stopped_by}: saved {result.last_checkpoint}; continue with the same "
            f"command and --auto-resume (or --resume)",
            err=True,
        )
        raise typer.Exit(code=EXIT_INTERRUPTED if result.stopped_by == "SIGINT" else EXIT_PREEMPTED)
    if not launched_rank().is_main:  # under torchrun only rank 0 reports
        return
    metric = "puzzle accuracy" if task == "puzzle" else "accuracy"
    best = f"{result.best_metric:.4f}" if result.best_metric is not None else "n/a"
    typer.echo(
        f"done: {result.epochs_completed} epochs, {result.steps} steps, best {metric} {best}; "
        f"checkpoints {result.last_checkpoint} and {result.best_checkpoint}; plots and metrics in "
        f"{result.run_dir}"
    )


def training_command(command: str, task: str, doc: str,
                     config_type: type[TrainConfig] = TrainConfig) -> Callable[..., None]:
    """The Typer command ``command`` (pretrain, train or finetune): task ``task``, help ``doc``, an option for
    every field of ``config_type`` it takes (:func:`vidfast_cli.options.training_options`)."""

    def run(manifest: ManifestArg, given: dict[str, Any]) -> None:
        given = dict(given)
        config_file = given.pop("config")
        if command == "finetune" and (given["finetune__checkpoint"] is None) == (
                given["finetune__inflate_from"] is None):
            raise typer.BadParameter("give one of --from CHECKPOINT or --inflate-from 2D_WEIGHTS")
        _run(task, manifest, config_file, given, config_type)

    run.__doc__, run.__name__ = doc, command
    return with_options(training_options(command, config_type))(run)


pretrain = training_command("pretrain", "puzzle", """Self-supervised Space-Time Cubic Puzzle pretraining
    (Kim et al., AAAI 2019) -> RUN/last.pt, RUN/best.pt.

    Labels are not used; the network learns to order four shuffled spatio-temporal cubes (and their
    rotation).""")

train = training_command("train", "classify", """Supervised training from scratch; the number of classes
    comes from the manifest.""")

finetune = training_command("finetune", "classify", """Fine-tune a pretrained network (vidfast puzzle or
    classifier checkpoint, 3D-ResNets 2018/2020 file, torchvision video weights, or a 2D ResNet inflated with
    --inflate-from) on the manifest's classes.

    The source's input convention is kept (fine-tuning 2018 weights on 0-1 input ruins them); a --preset,
    --mean, --std or --value-scale that contradicts it is refused unless --force.""")

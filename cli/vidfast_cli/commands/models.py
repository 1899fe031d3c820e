"""``vidfast models list|show|convert``: the model zoo, what a weights file is, conversion to vidfast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vidfast_cli import options as opt

app = typer.Typer(help="List the model zoo, identify weight files, convert them to vidfast checkpoints.",
                  no_args_is_help=True)


@app.command("list")
def list_(
    family: Annotated[
        str | None, typer.Option("--family", help="Only this family (e.g. resnet, torchvision).")
    ] = None,
) -> None:
    """Registered models: name, family, parameters (400 classes), training clip, input convention."""
    from rich.console import Console
    from rich.table import Table

    from vidfast.models import list_models, model_card

    table = Table(caption="vidfast's models pool adaptively: clips other than the listed one run too")
    for column in ("name", "family", "params", "clip", "convention"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for name in list_models(family):
        card = model_card(name)
        table.add_row(name, card.family, f"{card.num_params / 1e6:.1f} M", "x".join(map(str, card.clip)),
                      card.convention)
    Console().print(table)


@app.command("show")
def show(
    what: Annotated[str, typer.Argument(help="A model name (its card) or a weights file (what it is).")],
) -> None:
    """A model's card, or what a weights file is: origin, arch, classes, input convention and how sure."""
    from vidfast import conventions
    from vidfast.models import is_model, model_card, read_checkpoint
    from vidfast.models.identify import identify

    if is_model(what):
        card = model_card(what)
        conv = conventions.preset(card.convention)
        lines = [f"name: {card.name}", f"family: {card.family}, depth {card.depth}",
                 f"parameters: {card.num_params:,} (400 classes)", f"clip: {'x'.join(map(str, card.clip))}",
                 f"convention: {conv.describe()}", f"classifier: {card.classifier}"]
    elif Path(what).exists() or Path(what).suffix:
        lines = identify(read_checkpoint(what)).summary()
    else:
        from vidfast.models.registry import model_family

        model_family(what)  # raises with the closest names
        return
    for line in lines:
        typer.echo(line)


@app.command("convert")
@opt.with_convention_options
def convert(
    source: Annotated[Path, typer.Argument(help="A supported checkpoint: 3D-ResNets 2018/2020, torchvision "
                                           "video weights, a bare state dict or a vidfast checkpoint.")],
    out: Annotated[Path, typer.Argument(help="vidfast checkpoint to write.")],
    convention: Any = None,
) -> None:
    """Convert SOURCE into a vidfast checkpoint OUT that records its input convention and training clip."""
    from vidfast.models.identify import ORIGINS, convert_checkpoint

    opened = convert_checkpoint(source, out, convention)
    found = opened.identity
    typer.echo(f"wrote {out}: {found.arch} from {ORIGINS[found.origin]}, {found.num_classes} classes, "
               f"convention {opened.convention.describe()}")

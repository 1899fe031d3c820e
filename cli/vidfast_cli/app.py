"""The Typer application behind the ``vidfast`` console script.

Command modules import only Typer at module level; the library and torch are imported inside each
command so that ``vidfast --help`` answers instantly.
"""

from __future__ import annotations

import typer

from vidfast_cli.commands import bench, data, demo, evaluate, export, info, models, predict, study, train
from vidfast_cli.errors import ErrorReportingGroup

app = typer.Typer(
    cls=ErrorReportingGroup,
    help="vidfast: fast 3D-CNN video recognition and Space-Time Cubic Puzzle pretraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.command("pretrain")(train.pretrain)
app.command("train")(train.train)
app.command("finetune")(train.finetune)
app.command("eval")(evaluate.evaluate)
app.command("predict")(predict.predict)
app.command("export")(export.export)
app.command("bench")(bench.bench)
app.command("info")(info.info)
app.command("demo")(demo.demo)
app.command("study")(study.study)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

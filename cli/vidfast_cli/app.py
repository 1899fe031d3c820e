"""The Typer application behind the ``vidfast`` console script.

Command modules import only Typer at module level; the library and torch are imported inside each
command so that ``vidfast --help`` answers instantly.
"""

from __future__ import annotations

import typer

from vidfast_cli.commands import bench, data, demo, evaluate, export, info, models, predict, study, train
from vidfast_cli.errors import ErrorReportingGroup
from vidfast_cli.options import paragraphs

app = typer.Typer(
    cls=ErrorReportingGroup,
    help="vidfast: fast 3D-CNN video recognition and Space-Time Cubic Puzzle pretraining.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
for group in (data.app, models.app):
    for registered in group.registered_commands:
        registered.help = paragraphs(registered.callback.__doc__ or "")
COMMANDS = {
    "pretrain": train.pretrain, "train": train.train, "finetune": train.finetune, "eval": evaluate.evaluate,
    "predict": predict.predict, "export": export.export, "bench": bench.bench, "info": info.info,
    "demo": demo.demo, "study": study.study,
}
for name, command in COMMANDS.items():
    app.command(name, help=paragraphs(command.__doc__ or ""))(command)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()

"""Turns any exception escaping a command into one line on stderr and a non-zero exit code.

``VIDFAST_DEBUG=1`` re-raises instead, so the full traceback is shown.
"""

from __future__ import annotations

import os

import typer
from typer.core import TyperGroup

EXIT_USER_ERROR = 1
#: packages of the training install (``vidfast[train]``) that the deployment install lacks
TRAINING_PACKAGES = ("torch", "yaml", "matplotlib", "tensorboard")


def one_line(exc: BaseException) -> str:
    """The exception as one line: its message, whitespace collapsed, prefixed by its type if foreign."""
    from vidfast.errors import VidfastError

    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in TRAINING_PACKAGES:
        return (f"this command needs the training install ({message}): pip install \"vidfast[train]\"; "
                "the deployment install runs `vidfast predict --onnx` and `vidfast info`")
    if isinstance(exc, VidfastError):
        return message
    if isinstance(exc, KeyError):
        return f"missing key {message}"
    return f"{type(exc).__name__}: {message}"


def _is_cli_control_flow(exc: BaseException) -> bool:
    """Exit/abort/usage-error signals of Typer (or the click it wraps) pass through untouched."""
    module = type(exc).__module__ or ""
    return module.split(".")[0] in ("typer", "click")


class ErrorReportingGroup(TyperGroup):
    """A Typer group whose subcommands report failures as one line instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if _is_cli_control_flow(exc) or os.environ.get("VIDFAST_DEBUG") == "1":
                raise
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(code=EXIT_USER_ERROR) from None

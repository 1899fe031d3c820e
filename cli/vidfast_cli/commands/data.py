"""``vidfast data index|synth|transcode`` (owned by the data work; placeholder until it lands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Build manifests, synthesize demo datasets, transcode videos.", no_args_is_help=True)

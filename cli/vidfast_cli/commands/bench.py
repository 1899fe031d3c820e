"""``vidfast bench``: a throughput table of the pipeline's parts on this machine."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vidfast.bench import BenchConfig
from vidfast_cli import options as opt


@opt.with_config(BenchConfig)
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny sizes (resnet18 x0.25, 8x32x32 clips): under a minute "
                           "on 2 cores.")
    ] = False,
    section: Annotated[
        list[str] | None,
        typer.Option("--section", "-s", help="Run only this section (repeatable): cube, loader, train, "
                     "inference."),
    ] = None,
    as_json: opt.AsJson = False,
    overrides: Any = None,
) -> None:
    """Measure throughput side by side: the cube op vs its PyTorch reference vs a plain copy, the
    classification and puzzle loaders, a training step and inference in fp32 NCDHW, fp32 and each autocast
    dtype channels-last, and in what the default (--amp unset) chooses (its own check and measurement), and
    onnxruntime inference. Rows are timed interleaved; ratios within a section are the meaningful numbers.
    """
    import dataclasses
    import json

    from vidfast.bench import SECTIONS, describe, run_bench

    cfg = opt.configured(BenchConfig.quick() if quick else BenchConfig(), overrides)
    sections = tuple(section) if section else SECTIONS
    if as_json:
        results = run_bench(cfg, sections)
        typer.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 120))
    with console.status("benchmarking") as status:
        results = run_bench(cfg, sections, on_section=lambda name: status.update(f"benchmarking: {name}"))
    table = Table(title=f"vidfast bench{' --quick' if quick else ''}: throughput on this machine",
                  caption=f"{describe(cfg)}. vs = ratio to the section's first row, measured side by side.")
    for column, justify in (("section", "left"), ("variant", "left"), ("rate", "right"), ("vs", "right"),
                            ("note", "left")):
        table.add_column(column, justify=justify)
    previous = None
    for r in results:
        rate = "n/a" if r.rate != r.rate else f"{r.rate:,.1f} {r.unit}"
        ratio = "" if r.ratio != r.ratio else f"{r.ratio:.2f}x"
        table.add_row(r.section if r.section != previous else "", r.variant, rate, ratio, r.note,
                      end_section=False)
        previous = r.section
    console.print(table)

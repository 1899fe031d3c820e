"""``vidfast info``: versions, devices, native kernels in use, optional backends."""

from __future__ import annotations

import typer

from vidfast_cli import options as opt


def info(
    as_json: opt.AsJson = False,
) -> None:
    """Report torch/CUDA/cuDNN, which cube_crop kernels are in use (cpu/cuda native or reference) and whether
    DALI, PyAV and onnxruntime are importable."""
    import json

    import vidfast

    report = vidfast.info()
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"vidfast {report['vidfast']}", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    table.add_row("python", report["python"])
    if report["torch"] is None:
        table.add_row("torch", "not installed (deployment install: `vidfast predict --onnx` only)")
        for name, ok in report["optional"].items():
            table.add_row(name, "importable" if ok else "not installed")
        Console().print(table)
        return
    table.add_row("torch", f"{report['torch']} (CUDA build: {report['torch_cuda_build'] or 'no'})")
    table.add_row("CUDA available", str(report["cuda_available"]) + (
        f" {report['cuda_devices']}" if report["cuda_devices"] else ""))
    table.add_row("cuDNN", str(report["cudnn_version"]) if report["cudnn_available"] else "not available")
    table.add_row("threads", str(report["threads"]))
    build = report["native_build"]
    if build is None:
        table.add_row("native extension", f"not built ({report['native_load_error']})")
    else:
        table.add_row("native extension", f"{build['compiler']}; OpenMP {build['openmp']}; "
                      f"kernels {','.join(build['kernels'])}; CUDA arch [{build['cuda_arch_list']}]")
    for op, devices in report["kernels"].items():
        table.add_row(f"op {op}", f"cpu: {devices['cpu']}, cuda: {devices['cuda']}")
    for name, ok in report["optional"].items():
        table.add_row(name, "importable" if ok else "not installed")
    Console().print(table)

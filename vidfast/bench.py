"""Throughput of the pipeline's parts on this machine: cube op, loader, training step, inference.

Every section measures its variants side by side in one process, so the ratios (``vs`` column, relative to
the section's first row) are meaningful even on a busy machine; absolute numbers are not. ``quick`` uses tiny
sizes (a few seconds per section) so that ``vidfast bench --quick`` finishes in well under a minute on 2 CPU
cores. Importing it loads no torch (the sections do), so that the CLI makes its options from
:class:`BenchConfig`.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vidfast.engine.config import Geometry, option
from vidfast.errors import VidfastError

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class BenchResult:
    """One measured variant: ``rate`` items per second of ``unit`` (e.g. "clips/s")."""

    section: str
    variant: str
    rate: float
    unit: str
    ratio: float = 1.0
    note: str = ""


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of the benchmark (the network and clips in ``geometry``, the demo's and the study's dataclass;
    its cube fields are not used here: the cube op's sizes are ``cube_*``); :meth:`quick` gives tiny ones."""

    geometry: Geometry = Geometry(widen_factor=1.0, clip_len=16, size=112, batch_size=8, workers=2)
    cube_batch: int = 8
    cube_frames: int = 64
    cube_side: int = 224
    cube_out: tuple[int, int, int] = (16, 80, 80)
    loader_videos: int = 16
    loader_frames: int = 64
    loader_side: int = 128
    min_seconds: float = 2.0
    rounds: int = 5
    onnx: bool = option(True, help="Include onnxruntime inference (exports the model first).")

    @classmethod
    def quick(cls) -> BenchConfig:
        """Tiny sizes: each section takes a few seconds on 2 CPU cores."""
        return cls(
            geometry=Geometry(widen_factor=0.25, clip_len=8, size=32, batch_size=4, workers=0),
            cube_batch=4,
            cube_frames=32,
            cube_side=112,
            cube_out=(8, 40, 40),
            loader_videos=8,
            loader_frames=32,
            loader_side=64,
            min_seconds=0.5,
            rounds=3,
        )


def measure(fn: Callable[[], object], items: int, min_seconds: float, warmup: int = 1) -> float:
    """Items per second of ``fn`` (which handles ``items`` items per call): warm up, then call it for at least
    ``min_seconds`` (at least twice) and divide."""
    for _ in range(warmup):
        fn()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return items * calls / (time.perf_counter() - start)


def _section(name: str, unit: str, rates: list[tuple[str, float, str]]) -> list[BenchResult]:
    base = rates[0][1]
    return [
        BenchResult(name, variant, rate, unit, rate / base if base else float("nan"), note)
        for variant, rate, note in rates
    ]


def bench_cube_crop(cfg: BenchConfig, device: torch.device) -> list[BenchResult]:
    """Puzzle samples/s: the cube op (native kernel when built) vs its PyTorch reference vs a plain copy of
    the source clips (the memory-bandwidth floor of any crop)."""
    import torch

    from vidfast.ops import cube_crop, cube_crop_reference, native_available

    g = torch.Generator().manual_seed(0)
    n, p, (t, oh, ow) = cfg.cube_batch, 4, cfg.cube_out
    video = torch.randint(
        0, 256, (n, cfg.cube_frames, cfg.cube_side, cfg.cube_side, 3), dtype=torch.uint8, generator=g
    ).to(device)
    start = torch.randint(0, cfg.cube_frames - t + 1, (n, p, 1), generator=g)
    frame_idx = (start + torch.arange(t)).to(device)
    side = cfg.cube_side // 2
    y0 = torch.randint(0, cfg.cube_side - side + 1, (n, p, 1), generator=g)
    x0 = torch.randint(0, cfg.cube_side - side + 1, (n, p, 1), generator=g)
    boxes = torch.cat([y0, x0, torch.full_like(y0, side), torch.full_like(x0, side)], dim=2).to(device)
    perm = torch.stack([torch.randperm(p, generator=g) for _ in range(n)]).to(device)
    rot = torch.randint(0, 4, (n, p), generator=g).to(device)
    args = (video, frame_idx, boxes, (t, oh, ow), perm, None, rot)
    sync = _synchronizer(device)
    rates = [
        (
            "cube_crop",
            measure(lambda: sync(cube_crop(*args)), n, cfg.min_seconds),
            "native kernel" if native_available(device) else "no native op: reference",
        ),
        (
            "cube_crop_reference",
            measure(lambda: sync(cube_crop_reference(*args)), n, cfg.min_seconds),
            "plain PyTorch ops",
        ),
        (
            "copy of the source",
            measure(lambda: sync(video.clone()), n, cfg.min_seconds),
            f"{video.numel() // n / 1e6:.1f} MB/sample",
        ),
    ]
    return _section("cube op", "samples/s", rates)


def _synchronizer(device: torch.device) -> Callable[[object], object]:
    import torch

    if device.type == "cuda":
        return lambda out: (torch.cuda.synchronize(device), out)[1]
    return lambda out: out


def bench_loader(cfg: BenchConfig, workdir: Path) -> list[BenchResult]:
    """Clips/s of the classification and puzzle loaders over a synthetic dataset (decode + crop + batch)."""
    from vidfast.data import (
        CubicPuzzle,
        LoaderConfig,
        build_manifest,
        make_loader,
        read_manifest,
        synthesize_dataset,
        training_clips,
    )

    classes = 4
    synthesize_dataset(
        workdir / "videos",
        classes=classes,
        per_class=max(1, cfg.loader_videos // classes),
        frames=cfg.loader_frames,
        size=(cfg.loader_side, cfg.loader_side),
    )
    build_manifest("folder", workdir / "videos", workdir / "manifest.csv", progress=False)
    manifest = read_manifest(workdir / "manifest.csv")
    rates = []
    g = cfg.geometry
    policies = {"classify": training_clips(g.clip_len, size=g.size), "puzzle": CubicPuzzle()}
    for task, policy in policies.items():
        loader = make_loader(manifest, policy, LoaderConfig(batch_size=g.batch_size, workers=g.workers))
        clips = sum(len(batch) for batch in loader)

        def epoch(loader=loader) -> None:
            for _ in loader:
                pass

        rate = measure(epoch, clips, cfg.min_seconds, warmup=0)
        rates.append((f"{task}, {cfg.geometry.workers} workers", rate, f"{clips} clips/epoch"))
    return _section("loader", "clips/s", rates)


def _variants(device: torch.device) -> list[tuple[str, str, bool]]:
    """(row, precision, channels_last): fp32 NCDHW and channels-last, each autocast dtype channels-last."""
    from vidfast.runtime import candidates

    low = [(f"{name} + channels_last", name, True) for name in candidates(device)[1:]]
    return [("fp32 NCDHW", "fp32", False), ("fp32 + channels_last", "fp32", True), *low]


def _model_and_clips(cfg: BenchConfig, device: torch.device, batch: int, channels_last: bool
                     ) -> tuple[nn.Module, torch.Tensor]:
    import torch

    from vidfast.models import create_model

    torch.manual_seed(0)
    kwargs = {"widen_factor": cfg.geometry.widen_factor} if cfg.geometry.widen_factor != 1.0 else {}
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = create_model(cfg.geometry.arch, num_classes=10, **kwargs).to(device, memory_format=fmt)
    clips = torch.randn(batch, 3, cfg.geometry.clip_len, cfg.geometry.size, cfg.geometry.size, device=device)
    return model, clips.contiguous(memory_format=fmt)


def _step(model: nn.Module, clips: torch.Tensor, precision: str, train: bool) -> Callable[[], None]:
    """One training step (the engine's classification step, backward, SGD update) or one forward pass of
    ``model`` on ``clips`` under ``precision`` autocast; waits for the device."""
    import torch

    from vidfast.data.batch import Batch
    from vidfast.engine.tasks import ClassifyTask
    from vidfast.runtime import PRECISIONS

    device = clips.device
    sync = _synchronizer(device)
    autocast = {"device_type": device.type, "dtype": PRECISIONS[precision], "enabled": precision != "fp32"}
    channels_last = clips.is_contiguous(memory_format=torch.channels_last_3d)
    if not train:
        model.eval()

        @torch.inference_mode()
        def forward() -> None:
            with torch.autocast(**autocast):
                sync(model(clips))

        return forward
    task = ClassifyTask()
    batch = Batch((clips,), torch.arange(len(clips)) % 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        with torch.autocast(**autocast):
            out = task.step(model, batch, device, channels_last)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        sync(out.loss)

    return step


def precision_rates(cfg: BenchConfig, device: torch.device, batch: int, train: bool
                    ) -> list[tuple[str, float, str]]:
    """Clips/s of each precision variant and of what ``--amp`` auto chooses (its own decision, with its fp32
    layers), timed interleaved in ``cfg.rounds`` rounds (median). A low-precision variant runs every layer
    in that dtype; its note says "unsafe" where some layers fail the per-layer check (wrong results)."""
    import copy

    from vidfast.runtime import PRECISIONS, check_model, interleaved_seconds, plan_precision

    steps: dict[str, Callable[[], None]] = {}
    notes: dict[str, str] = {}
    for name, precision, channels_last in _variants(device):
        model, clips = _model_and_clips(cfg, device, batch, channels_last)
        steps[name] = _step(model, clips, precision, train)
        if precision != "fp32":
            failed = check_model(model, clips[:1], batch, PRECISIONS[precision], device, grads=train)
            notes[name] = f"unsafe: {len(failed)} layers fail the check" if failed else ""
    model, clips = _model_and_clips(cfg, device, batch, True)
    plan = plan_precision([(model, clips[:1])], batch, device,
                          lambda name: _step(copy.deepcopy(model), clips, name, train), grads=train)
    steps[f"auto: {plan.name} + channels_last"] = _step(model, clips, plan.name, train)
    seconds = interleaved_seconds(steps, rounds=cfg.rounds, warmup=1)
    notes[next(reversed(steps))] = (f"{plan.how}; {len(plan.fp32_layers)} layers in fp32" if plan.fp32_layers
                                    else plan.how)
    return [(name, batch / statistics.median(s), notes.get(name, "")) for name, s in seconds.items()]


def bench_train_step(cfg: BenchConfig, device: torch.device) -> list[BenchResult]:
    """Clips/s of one SGD step (the engine's classification step: forward, cross-entropy; then backward and
    update) on in-memory clips, per precision variant and for the automatic choice."""
    rates = precision_rates(cfg, device, cfg.geometry.batch_size, train=True)
    return _section(f"train step b{cfg.geometry.batch_size}", "clips/s", rates)


def describe(cfg: BenchConfig) -> str:
    """One line naming the sizes a bench run uses."""
    width = f" x{cfg.geometry.widen_factor:g}" if cfg.geometry.widen_factor != 1.0 else ""
    t, oh, ow = cfg.cube_out
    return (
        f"model {cfg.geometry.arch}{width}, clips "
        f"{cfg.geometry.clip_len}x{cfg.geometry.size}x{cfg.geometry.size}; cube op: 4 cubes "
        f"{t}x{oh}x{ow} from {cfg.cube_frames}x{cfg.cube_side}x{cfg.cube_side} uint8 clips; "
        f"loader: {cfg.loader_videos} videos {cfg.loader_frames}x{cfg.loader_side}x{cfg.loader_side}"
    )


def bench_inference(cfg: BenchConfig, device: torch.device, workdir: Path) -> list[BenchResult]:
    """Clips/s of inference at batch 1 and ``batch_size``: each precision variant, the automatic choice, and
    onnxruntime."""
    import torch

    results = []
    for batch in (1, cfg.geometry.batch_size):
        rates = [(name, rate, note or "PyTorch eager") for name, rate, note in
                 precision_rates(cfg, device, batch, train=False)]
        if cfg.onnx:
            model, clips = _model_and_clips(cfg, torch.device("cpu"), batch, False)
            rates.append(_onnx_rate(cfg, model, clips, workdir))
        results += _section(f"inference b{batch}", "clips/s", rates)
    return results


def _onnx_rate(
    cfg: BenchConfig, model: nn.Module, clips: torch.Tensor, workdir: Path
) -> tuple[str, float, str]:
    """onnxruntime through vidfast.export + vidfast.deploy (exported once per run, batch axis dynamic)."""
    import torch

    try:
        from vidfast.deploy import OnnxClassifier
        from vidfast.export import export_onnx
    except ImportError as exc:
        return ("onnxruntime", float("nan"), f"not available: {exc}")
    path = workdir / "bench.onnx"
    if not path.exists():
        export_onnx(
            model.float().to(memory_format=torch.contiguous_format).cpu(),
            path,
            clip=(cfg.geometry.clip_len, cfg.geometry.size, cfg.geometry.size),
            check=False,
        )
    classifier = OnnxClassifier(path)
    x = clips.float().cpu().contiguous()
    rate = measure(lambda: classifier.predict(x), len(x), cfg.min_seconds)
    return ("onnxruntime", rate, classifier.provider)


SECTIONS = ("cube", "loader", "train", "inference")


def run_bench(
    cfg: BenchConfig, sections: tuple[str, ...] = SECTIONS, on_section: Callable[[str], None] | None = None
) -> list[BenchResult]:
    """Run the chosen sections in order; a section whose dependency is unusable yields a row saying why."""
    from vidfast.devices import resolve_device

    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown bench section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    device = resolve_device(cfg.geometry.device)
    results: list[BenchResult] = []
    with _workdir() as workdir:
        runners: dict[str, Callable[[], list[BenchResult]]] = {
            "cube": lambda: bench_cube_crop(cfg, device),
            "loader": lambda: bench_loader(cfg, workdir),
            "train": lambda: bench_train_step(cfg, device),
            "inference": lambda: bench_inference(cfg, device, workdir),
        }
        for name in sections:
            if on_section is not None:
                on_section(name)
            try:
                results += runners[name]()
            except (ImportError, VidfastError) as exc:
                results.append(BenchResult(name, "skipped", float("nan"), "", float("nan"), str(exc)))
    return results


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vidfast-bench-") as tmp:
        yield Path(tmp)

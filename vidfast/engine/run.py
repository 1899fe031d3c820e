"""Everything a training run needs before its first step, built once from its config: ``build_run(cfg) ->
RunParts`` (the :class:`~vidfast.engine.trainer.Trainer` only runs the loop over them).

In order: runtime flags, the checkpoint to resume from (``--resume``/``--auto-resume``), the manifest's
classes, the task's model, the :class:`~vidfast.engine.plan.RunPlan` (its precision measured once, or reused
from a recorded plan, which must otherwise match), the loaders, optimizer, schedule and scaler, and the state
restored from the checkpoint. The config is only read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vidfast.data.manifest import read_manifest
from vidfast.devices import resolve_device
from vidfast.engine.build import Setup, apply_runtime_flags, puzzle_config
from vidfast.engine.checkpoint import (
    LoopState,
    RunCheckpoints,
    recorded_plan,
    recorded_precision,
    restore_training,
    seed_everything,
)
from vidfast.engine.config import TrainConfig
from vidfast.engine.distributed import DistInfo
from vidfast.engine.loaders import run_loader
from vidfast.engine.optim import Schedule, build_optimizer
from vidfast.engine.plan import PlanMismatch, RunPlan
from vidfast.engine.run_precision import plan_run_precision
from vidfast.engine.signals import StopRequest
from vidfast.engine.tasks import Task, make_task
from vidfast.errors import DataError
from vidfast.runtime import PrecisionPlan


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of every generator at the start of ``epoch`` on ``rank`` (-1: the build)."""
    return (seed * 1_000_003 + epoch * 7919 + rank) % 2**63


@dataclass
class Resumed:
    """Where a resumed run continues: the checkpoint (None: a fresh start), the generator states to restore
    at its batch (None at an epoch boundary), and one line per newer checkpoint ``--auto-resume`` passed
    over."""

    path: Path | None = None
    rng: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class RunParts:
    """The built run: its config (as given) and plan, where it runs, the task, the model (``model``
    unwrapped, ``net`` the one to train: DDP-wrapped under torchrun), the chosen precision, loaders,
    optimizer, schedule, scaler, checkpoints, stop signals, loop state and where it resumed."""

    cfg: TrainConfig
    plan: RunPlan
    device: torch.device
    info: DistInfo
    task: Task
    setup: Setup
    model: nn.Module
    net: nn.Module
    precision: PrecisionPlan
    train_loader: Any
    val_loader: Any | None
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler
    checkpoints: RunCheckpoints
    stop: StopRequest
    state: LoopState
    resumed: Resumed

    def stateful(self) -> dict[str, Any]:
        """What a checkpoint saves with ``state_dict()``, by checkpoint key."""
        return {"state_dict": self.model, "optimizer": self.optimizer, "scheduler": self.schedule,
                "scaler": self.scaler}


def sample_geometry(cfg: TrainConfig) -> tuple[int, int, int, dict[str, Any]]:
    """``(clip_len, size, frame_step, options)`` of the samples the task cuts: a classifier's clips from the
    data section and ``data.clips``; the puzzle's cubes and sampler choices from its sampler config
    (:func:`~vidfast.engine.build.puzzle_config`, the one place that derives them)."""
    if cfg.task == "puzzle":
        sampler = puzzle_config(cfg)
        return sampler.cube_len, sampler.out_size, sampler.frame_step, dataclasses.asdict(sampler.options)
    return cfg.data.clip_len, cfg.data.size, cfg.data.frame_step, cfg.data.clips.policy_options()


def _loader_plan(cfg: TrainConfig) -> dict[str, Any]:
    """The loader settings that change the batches: batch size, backend, ``data.loader``."""
    return {"batch_size": cfg.data.batch_size, "backend": cfg.data.backend,
            **dataclasses.asdict(cfg.data.loader)}


def _checked(plan: RunPlan, recorded: RunPlan, source: str) -> None:
    """PlanMismatch naming every entry where ``plan`` differs from ``recorded`` (``source``'s)."""
    differences = plan.differences(recorded)
    if differences:
        raise PlanMismatch("; ".join(f"{source} has {name} {old!r} but this run has {new!r}"
                                     for name, old, new in differences))


def build_run(cfg: TrainConfig, device: torch.device | None = None, info: DistInfo | None = None) -> RunParts:
    """The parts of the run ``cfg`` describes (see the module docstring), on ``device`` (default:
    ``runtime.device``) as rank ``info`` of a torchrun job (default: a single process)."""
    rt = cfg.runtime
    info = info or DistInfo()
    device = device or resolve_device(rt.device)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    checkpoints = RunCheckpoints(Path(rt.run_dir), info, rt.keep_checkpoints)
    stop = StopRequest(rt.preempt_signal)
    apply_runtime_flags(cfg)
    resumed, resume_ckpt = Resumed(), None
    if rt.resume:
        resume_ckpt, resumed.path = checkpoints.read_last(), checkpoints.last
    elif rt.auto_resume:
        resume_ckpt, resumed.path, resumed.notes = checkpoints.find_newest()
    checkpoints.remove_stale_temporaries()
    seed_everything(epoch_seed(rt.seed, -1, info.rank))

    manifest = read_manifest(cfg.data.manifest)
    if not manifest.select(split=cfg.data.train_split):
        raise DataError(f"manifest {cfg.data.manifest} has no ok row in split {cfg.data.train_split!r}")
    task = make_task(cfg)
    setup = task.build(cfg, list(manifest.class_names))
    model = setup.model.to(device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    sample_shape = task.sample_shape

    recorded, source = None, ""
    if resume_ckpt is not None:
        recorded, source = recorded_plan(resume_ckpt, resumed.path), f"--resume: {resumed.path}"
    elif rt.plan is not None:
        recorded, source = RunPlan.read(rt.plan), f"runtime.plan {rt.plan}"
    reuse = rt.precision or (recorded.precision if recorded is not None else None)
    if reuse is None and resume_ckpt is not None:
        reuse = recorded_precision(resume_ckpt)
    precision = plan_run_precision(cfg, model, task, sample_shape, device, info, reuse)
    clip_len, size, frame_step, options = sample_geometry(cfg)
    plan = RunPlan(
        task=cfg.task, arch=setup.arch, model_kwargs=dict(setup.model_kwargs), num_classes=setup.num_classes,
        class_names=list(setup.class_names), convention=setup.convention.to_data(), precision=precision.name,
        clip_len=clip_len, size=size, frame_step=frame_step, sample_shape=list(sample_shape), options=options,
        loader=_loader_plan(cfg),
    )
    if recorded is not None:
        _checked(plan, recorded, source)

    dtype = precision.dtype or torch.float32  # clips leave the workers in the autocast dtype
    conv, quiet = setup.convention, stop.signals  # the workers leave stop signals to this process
    train_loader = run_loader(manifest, cfg, task, cfg.data.train_split, True, device, dtype, conv, quiet)
    val_loader = (
        run_loader(manifest, cfg, task, cfg.data.val_split, False, device, dtype, conv, quiet)
        if manifest.select(split=cfg.data.val_split)
        else None
    )
    if len(train_loader) == 0:
        raise DataError(
            f"split {cfg.data.train_split!r} has fewer clips than one batch ({cfg.data.batch_size})"
        )
    optimizer = build_optimizer(setup.param_groups, cfg.optim)
    schedule = Schedule(optimizer, cfg.optim, len(train_loader), cfg.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.dtype == torch.float16)
    parts = RunParts(cfg, plan, device, info, task, setup, model, model, precision, train_loader, val_loader,
                     optimizer, schedule, scaler, checkpoints, stop, LoopState(), resumed)
    if resume_ckpt is not None:
        resumed.rng = restore_training(resume_ckpt, resumed.path, plan, parts.stateful(), parts.state, info)
    if rt.compile:
        model.compile()
    if info.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        parts.net = DistributedDataParallel(model, device_ids=device_ids)
    return parts

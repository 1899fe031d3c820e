"""The training loop behind ``vidfast pretrain|train|finetune``: ``fit(config) -> RunResult``.

One loop serves supervised classification and the cubic-puzzle pretext task. Per step: batch to the device
(non-blocking, channels_last_3d), forward + loss under autocast, backward (GradScaler for fp16), optional
gradient clipping, optimizer and schedule step. Per epoch: validation on the manifest's val split when it has
rows, metrics to CSV/TensorBoard, ``last.pt`` written atomically and ``best.pt`` when the monitored accuracy
improves.

Exact resume: every epoch reseeds the generators from (seed, epoch, rank) and the loaders are seeded per
epoch; a checkpoint written mid-epoch (Ctrl-C/SIGTERM) records how many batches of the epoch were done and the
generator states, so ``--resume`` replays the epoch's loader up to there and continues bit-for-bit
(deterministic mode).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vidfast import conventions
from vidfast.conventions import Convention, Override
from vidfast.data.loader import LoaderConfig, make_loader
from vidfast.data.manifest import read_manifest
from vidfast.data.policies import ClipOutput, ClipPolicy, CubicPuzzle, clip_policy
from vidfast.engine.checkpoint import atomic_save, capture_rng_state, restore_rng_state, seed_everything
from vidfast.engine.config import TrainConfig, save_config
from vidfast.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    any_rank,
    barrier,
    broadcast_buffers,
    broadcast_object,
    cleanup,
    init_distributed,
)
from vidfast.engine.logging import RunLogger
from vidfast.engine.optim import Schedule, build_optimizer
from vidfast.engine.tasks import ClassifyTask, PuzzleTask, StepOutput, to_device
from vidfast.errors import CheckpointError, DataError, VidfastError
from vidfast.models import (
    PuzzleNet,
    create_model,
    finetune_param_groups,
    inflate_from_2d,
    load_checkpoint,
    read_checkpoint,
)
from vidfast.models.identify import FileIdentity, choose_convention, identify
from vidfast.puzzle import PuzzleConfig
from vidfast.runtime import PRECISIONS, PrecisionPlan, plan_precision, route_to_fp32


class TrainingDiverged(VidfastError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


@dataclass
class StepEvent:
    """Passed to ``fit``'s callbacks after every optimizer step."""

    epoch: int
    step: int
    batch_in_epoch: int
    loss: float
    lr: float


@dataclass
class RunResult:
    """Outcome of ``fit``. ``status``: "completed" or "interrupted" (Ctrl-C/SIGTERM, checkpoint saved)."""

    run_dir: Path
    status: str
    epochs_completed: int
    steps: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_metric: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = None


class _StopRequest:
    """SIGINT/SIGTERM handlers that ask the loop to stop after the current step (a second Ctrl-C aborts)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available else cpu; "cuda" without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VidfastError(
            f"--device {name} requested but no CUDA GPU is available (use --device cpu or auto)"
        )
    return torch.device(name)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + rank) % 2**63


@dataclass
class _Setup:
    """Everything ``fit`` builds before the first step."""

    model: nn.Module  # unwrapped
    task: ClassifyTask | PuzzleTask
    class_names: list[str]
    num_classes: int
    puzzle_kwargs: dict[str, Any] | None
    param_groups: list[dict[str, Any]]
    convention: Convention


def puzzle_config(cfg: TrainConfig) -> PuzzleConfig:
    """The puzzle sampler's config: cube length/side/stride from the data section, ``puzzle.sampler`` on
    top."""
    values = {
        "cube_len": cfg.data.clip_len,
        "out_size": cfg.data.size,
        "frame_step": cfg.data.frame_step,
        **cfg.puzzle.sampler,
    }
    try:
        return PuzzleConfig(**values)
    except TypeError as exc:
        raise VidfastError(f"puzzle.sampler: {exc}") from None


def _convention(cfg: TrainConfig, source: FileIdentity | Convention = conventions.DEFAULT) -> Convention:
    """The input convention of the run: the fine-tuned checkpoint's own (ImageNet's for inflated 2D weights,
    vidfast's default from scratch) with ``data.convention`` / ``mean`` / ``std`` / ``value_scale`` on top;
    changing a convention the checkpoint records or its layout tells is refused (those weights would be
    ruined)."""
    data = cfg.data
    override = Override(data.convention, data.mean, data.std, data.value_scale, cfg.finetune.force)
    if isinstance(source, FileIdentity):
        return choose_convention(source, override, source=str(cfg.finetune.checkpoint))
    try:
        return conventions.resolve(source, override)
    except ValueError as exc:
        raise VidfastError(f"data: {exc}") from None


def _finetune_source(cfg: TrainConfig, num_classes: int) -> tuple[nn.Module, Convention]:
    """The model of ``finetune.checkpoint`` (any layout :func:`identify` knows) with a ``num_classes``
    classifier, and the run's convention; records the source's arch/options in cfg."""
    source = read_checkpoint(cfg.finetune.checkpoint)
    found = identify(source)
    cfg.model.arch, cfg.model.widen_factor, cfg.model.kwargs = found.arch, None, dict(found.model_kwargs)
    model = create_model(found.arch, num_classes=num_classes, **found.model_kwargs)
    return load_checkpoint(model, source, num_classes=num_classes), _convention(cfg, found)


def _build(cfg: TrainConfig, manifest_classes: list[str]) -> _Setup:
    """Model (from scratch, from a finetune checkpoint, or a PuzzleNet), task and parameter groups."""
    opt = cfg.optim
    if cfg.task == "puzzle":
        sampler = puzzle_config(cfg)
        backbone = create_model(cfg.model.arch, num_classes=0, **cfg.model.model_kwargs())
        puzzle_kwargs: dict[str, Any] = {
            "num_pieces": 4,
            "num_perm_classes": sampler.num_perm_classes,
            "rotation_classes": sampler.rotation_classes,
        }
        if cfg.puzzle.hidden is not None:
            puzzle_kwargs["hidden"] = cfg.puzzle.hidden
        model = PuzzleNet(backbone, **puzzle_kwargs)
        task: ClassifyTask | PuzzleTask = PuzzleTask(cfg.puzzle.rotation_weight, opt.label_smoothing)
        return _Setup(
            model, task, [], backbone.num_classes, puzzle_kwargs, [{"params": list(model.parameters())}],
            _convention(cfg),
        )
    num_classes = len(manifest_classes)
    if num_classes < 2:
        raise DataError(
            f"manifest {cfg.data.manifest} has {num_classes} class(es); classification needs >= 2"
        )
    task = ClassifyTask(opt.label_smoothing)
    if cfg.finetune.checkpoint is not None:
        model, convention = _finetune_source(cfg, num_classes)
    elif cfg.finetune.inflate_from is not None:
        model = create_model(cfg.model.arch, num_classes=num_classes, **cfg.model.model_kwargs())
        inflate_from_2d(model, read_checkpoint(cfg.finetune.inflate_from))
        convention = _convention(cfg, conventions.PRESETS["imagenet"])
    else:
        model = create_model(cfg.model.arch, num_classes=num_classes, **cfg.model.model_kwargs())
        convention = _convention(cfg)
    begin = cfg.finetune.begin_module
    groups = (
        finetune_param_groups(model, begin_module=begin, lr=opt.lr, weight_decay=opt.weight_decay)
        if begin
        else [{"params": list(model.parameters())}]
    )
    return _Setup(model, task, manifest_classes, num_classes, None, groups, convention)


def _loader(
    manifest: Any, cfg: TrainConfig, split: str, training: bool, device: torch.device, dtype: torch.dtype,
    convention: Convention,
) -> Any:
    """``make_loader`` for the train split (random clips, multi-scale crops, flips, shuffled; or puzzles) or
    validation (center clip and crop); ``data.loader`` entries override :class:`LoaderConfig` fields and the
    clip options of :func:`clip_policy`. The train loader keeps batches whose videos all failed, as empty
    batches: under DDP every rank must take every step, and the batch count a mid-epoch checkpoint records
    must count them to resume at the right sample. Clips are normalised with ``convention`` (set with
    ``data.convention``/``mean``/``std``/``value_scale``, not ``data.loader``, so that the checkpoint
    records it)."""
    data = cfg.data
    options = dict(data.loader)
    if {"mean", "std"} & set(options):
        raise VidfastError("data.loader: set the normalisation with data.mean / data.std / data.convention")
    loader_options = LoaderConfig.take(options)
    output = ClipOutput(convention.unit_mean, convention.unit_std, dtype, cfg.runtime.channels_last)
    try:
        config = LoaderConfig(**{
            "backend": data.backend, "batch_size": data.batch_size, "workers": data.workers,
            "seed": cfg.runtime.seed, "shuffle": training,
            "drop_last": training,  # a last tiny batch makes batch norm statistics (and gradients) explode
            "pin_memory": device.type == "cuda", "device": str(device) if device.type == "cuda" else "cpu",
            "empty_batches": training,
            "pad_shards": training,  # validation: every clip once over all ranks
            **loader_options,
        })
        if cfg.task == "puzzle":
            if options:
                raise TypeError(f"unexpected options for the puzzle task: {', '.join(options)}")
            policy: ClipPolicy = CubicPuzzle(puzzle_config(cfg), output)
        else:
            options.setdefault("sampling", "random" if training else "center")
            policy = clip_policy(clip_len=data.clip_len, step=data.frame_step, size=data.size, output=output,
                                 **options)
        return make_loader(manifest, policy, config, split=split)
    except (TypeError, ValueError) as exc:
        raise VidfastError(f"data.loader: {exc}") from None


class _Trainer:
    """State of one ``fit`` call (kept in one object so that checkpointing sees all of it)."""

    def __init__(
        self,
        cfg: TrainConfig,
        callbacks: Sequence[Callable[[StepEvent], None]],
        device: torch.device,
        info: DistInfo,
    ):
        self.cfg = cfg
        self.callbacks = list(callbacks)
        rt = cfg.runtime
        self.info = info
        self.device = (
            torch.device("cuda", info.local_rank) if info.enabled and device.type == "cuda" else device
        )
        self.run_dir = Path(rt.run_dir)
        self.last_path = self.run_dir / "last.pt"
        self.best_path = self.run_dir / "best.pt"
        if rt.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = rt.cudnn_benchmark and not rt.deterministic
        self.resume_ckpt: dict[str, Any] | None = None
        if rt.resume:
            if not self.last_path.is_file():
                raise CheckpointError(f"--resume: no checkpoint {self.last_path} to resume from")
            self.resume_ckpt = read_checkpoint(self.last_path)
        seed_everything(_epoch_seed(rt.seed, -1, self.info.rank))

        manifest = read_manifest(cfg.data.manifest)
        if not manifest.select(split=cfg.data.train_split):
            raise DataError(f"manifest {cfg.data.manifest} has no ok row in split {cfg.data.train_split!r}")
        self.has_val = bool(manifest.select(split=cfg.data.val_split))
        setup = _build(cfg, list(manifest.class_names))
        self.setup = setup
        self.model = setup.model.to(self.device)
        if rt.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last_3d)
        pieces = (4,) if cfg.task == "puzzle" else ()
        self.clip_shape = (*pieces, 3, cfg.data.clip_len, cfg.data.size, cfg.data.size)
        self.plan = self._plan_precision()
        self.amp_dtype = self.plan.dtype
        cfg.runtime.precision = self.plan.name  # recorded in config.yaml and the checkpoints
        # clips leave the workers in the autocast dtype: half the bytes to move, same values the model sees
        dtype = self.amp_dtype or torch.float32
        conv = setup.convention
        self.train_loader = _loader(manifest, cfg, cfg.data.train_split, True, self.device, dtype, conv)
        self.val_loader = (
            _loader(manifest, cfg, cfg.data.val_split, False, self.device, dtype, conv)
            if self.has_val
            else None
        )
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise DataError(
                f"split {cfg.data.train_split!r} has fewer clips than one batch ({cfg.data.batch_size})"
            )
        self.optimizer = build_optimizer(setup.param_groups, cfg.optim)
        self.schedule = Schedule(self.optimizer, cfg.optim, self.steps_per_epoch, cfg.epochs)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.epoch = 0  # completed epochs
        self.step = 0
        self.batch_in_epoch = 0
        self.best_metric: float | None = None
        self.resume_rng: dict[str, Any] | None = None
        if rt.resume:
            self._resume()
        if rt.compile:
            self.model.compile()
        self.net: nn.Module = (
            DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.info.enabled
            else self.model
        )
        self.logger = RunLogger(
            self.run_dir,
            active=self.info.is_main,
            progress=rt.progress,
            tensorboard=rt.tensorboard,
            append=rt.resume,
            log_every=rt.log_every,
        )
        if self.info.is_main:
            save_config(cfg, self.run_dir / "config.yaml")

    # --- checkpoints ----------------------------------------------------------------------------------------

    def _plan_precision(self) -> PrecisionPlan:
        """The run's precision (``vidfast.runtime.precision``): forced by ``runtime.amp``, else the recorded
        one (``runtime.precision``, or the checkpoint's on resume), else measured. Under DDP every rank takes
        rank 0's and also routes rank 0's failing layers to fp32."""
        rt = self.cfg.runtime
        recorded = rt.precision
        if recorded is None and self.resume_ckpt is not None:
            recorded = (self.resume_ckpt.get("config") or {}).get("runtime", {}).get("precision")
        example = to_device(torch.zeros(1, *self.clip_shape), self.device, rt.channels_last)
        try:
            plan = plan_precision([(self.model, example)], self.cfg.data.batch_size, self.device,
                                  self._probe_step, amp=rt.amp, amp_dtype=rt.amp_dtype, recorded=recorded)
        except ValueError as exc:
            raise VidfastError(f"runtime.amp_dtype: {exc}") from None
        if self.info.enabled:
            plan = broadcast_object(plan, self.info)
            if plan.dtype is not None:
                route_to_fp32(self.model, {layer: [plan.dtype] for layer in plan.fp32_layers})
        return plan

    def _probe_step(self, name: str) -> Callable[[], float]:
        """One training step in precision ``name`` of a copy of the model, with an optimizer of the run's
        kind, on a random batch of the run's shape and dtype (the run's model and optimizer stay as they
        are)."""
        model = copy.deepcopy(self.model)
        optimizer = build_optimizer([{"params": list(model.parameters())}], self.cfg.optim)
        dtype, size = PRECISIONS[name], self.cfg.data.batch_size
        batch = {k: v.expand(size, *v.shape[1:]).clone() for k, v in self.setup.task.blank_batch(
            self.clip_shape).items()}
        noise = torch.randn(batch["video"].shape, generator=torch.Generator().manual_seed(0))
        batch["video"] = noise.to(dtype)

        def step() -> float:
            with torch.autocast(self.device.type, dtype=dtype, enabled=name != "fp32"):
                out = self.setup.task.step(model, batch, self.device, self.cfg.runtime.channels_last)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            return float(out.loss.detach())

        return step

    def _resume(self) -> None:
        ckpt = self.resume_ckpt
        assert ckpt is not None
        for key in ("task", "arch", "num_classes"):
            mine = {
                "task": self.cfg.task,
                "arch": self.cfg.model.arch,
                "num_classes": self.setup.num_classes,
            }[key]
            if ckpt.get(key) != mine:
                raise CheckpointError(
                    f"--resume: {self.last_path} has {key} {ckpt.get(key)!r} but this run has {mine!r}"
                )
        try:
            self.model.load_state_dict(ckpt["state_dict"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.schedule.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
            self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
            self.batch_in_epoch = int(ckpt["batch_in_epoch"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"--resume: {self.last_path} does not fit this run: {' '.join(str(exc).split())[:300]}"
            ) from None
        self.best_metric = ckpt.get("best_metric")
        self.resume_rng = ckpt["rng"] if self.batch_in_epoch else None

    def _checkpoint(self) -> dict[str, Any]:
        cfg, setup = self.cfg, self.setup
        ckpt: dict[str, Any] = {
            "arch": cfg.model.arch,
            "model_kwargs": cfg.model.model_kwargs(),
            "task": cfg.task,
            "num_classes": setup.num_classes,
            "class_names": list(setup.class_names),
            "state_dict": self.model.state_dict(),
            "data": {
                "clip_len": cfg.data.clip_len,
                "size": cfg.data.size,
                "frame_step": cfg.data.frame_step,
                **setup.convention.to_data(),
            },
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": self.batch_in_epoch,
            "rng": capture_rng_state(),
            "config": cfg.to_dict(),
            "best_metric": self.best_metric,
        }
        if setup.puzzle_kwargs is not None:
            ckpt["puzzle"] = dict(setup.puzzle_kwargs)
        return ckpt

    def _save(self, best: bool = False) -> None:
        """``last.pt`` (and a copy as ``best.pt``) on the main rank."""
        if self.info.is_main:
            atomic_save(self._checkpoint(), self.last_path)
            if best:
                tmp = self.best_path.with_name(f".{self.best_path.name}.tmp-{os.getpid()}")
                shutil.copyfile(self.last_path, tmp)
                os.replace(tmp, self.best_path)
        barrier(self.info)

    # --- loop -----------------------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        """The epoch's batches from the first one a mid-epoch checkpoint has not trained on (the sampler skips
        the others: they are not decoded again)."""
        seed_everything(_epoch_seed(self.cfg.runtime.seed, epoch, self.info.rank))
        self.train_loader.set_epoch(epoch, start_batch=self.batch_in_epoch)
        batches = iter(self.train_loader)
        if self.resume_rng is not None:
            restore_rng_state(self.resume_rng)
            self.resume_rng = None
        return batches

    def _train_step(self, batch: dict[str, Any]) -> StepOutput:
        """Forward, backward and update of one batch (a NaN loss is caught by the caller before any save).

        A batch without ``video`` (under DDP: every video of this rank's batch failed to decode) makes an
        idle step: a blank clip in eval mode (batch-norm statistics untouched), its loss times zero. The rank
        still joins the gradient all-reduce and the update, so the ranks stay in step and identical; the
        update is the other ranks' gradients averaged over all ranks."""
        idle = "video" not in batch
        if idle:
            batch = self.setup.task.blank_batch(self.clip_shape)
            self.net.eval()
        try:
            with self._autocast():
                out = self.setup.task.step(self.net, batch, self.device, self.cfg.runtime.channels_last)
        finally:
            self.net.train()
        if idle:
            out = StepOutput(loss=out.loss * 0.0, correct=out.correct * 0, count=0)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        if self.cfg.optim.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        return out

    def _validate(self) -> dict[str, float]:
        """Loss/accuracy over the val split, summed over ranks: each rank scores its unpadded shard (so every
        clip counts once) with the unwrapped model, which needs no collective call per batch."""
        assert self.val_loader is not None
        self.model.eval()
        sums = [0.0] * 5  # loss*n, correct, n, rot_correct, rot_n
        try:
            with torch.no_grad(), self._autocast():
                for batch in self.val_loader:
                    out = self.setup.task.step(self.model, batch, self.device, self.cfg.runtime.channels_last)
                    sums = [a + b for a, b in zip(sums, _counts(out), strict=True)]
        finally:
            self.model.train()
        loss_n, correct, n, rot_correct, rot_n = all_reduce_sum(sums, self.device, self.info)
        return {
            "val_loss": loss_n / max(n, 1),
            "val_acc": correct / max(n, 1),
            "val_clips": int(n),
            **({"val_rot_acc": rot_correct / rot_n} if rot_n else {}),
        }

    def run(self) -> RunResult:
        cfg, log = self.cfg, self.logger
        history: list[dict[str, Any]] = []
        status = "completed"
        what = {"classify": "clip accuracy", "puzzle": "puzzle (permutation) accuracy"}[cfg.task]
        log.info(
            f"{cfg.task} {cfg.model.arch} on {self.device} x{self.info.world_size}: "
            f"{self.steps_per_epoch} steps/epoch, {cfg.epochs} epochs, precision {self.plan.name}, "
            f"channels_last={cfg.runtime.channels_last}, compile={cfg.runtime.compile}; "
            f"best.pt by {'val' if self.has_val else 'train'} {what}"
        )
        log.info(self.plan.describe())
        if self.plan.fp32_layers:
            log.info(f"under {self.plan.name} autocast: {self.plan.describe_fp32_layers()}")
        if self.epoch or self.batch_in_epoch:
            log.info(f"resumed from {self.last_path} at epoch {self.epoch + 1} batch {self.batch_in_epoch}")
        try:
            with _StopRequest() as stop:
                while self.epoch < cfg.epochs:
                    row, stopped = self._run_epoch(stop)
                    if stopped:
                        status = "interrupted"
                        log.info(
                            f"stopped by {stop.requested}: checkpoint {self.last_path} (epoch "
                            f"{self.epoch + 1}, batch {self.batch_in_epoch}); continue with --resume"
                        )
                        break
                    history.append(row)
        finally:
            log.close(plots=cfg.runtime.plots)
        barrier(self.info)
        model = self.model.eval()
        return RunResult(
            run_dir=self.run_dir,
            status=status,
            epochs_completed=self.epoch,
            steps=self.step,
            last_checkpoint=self.last_path if self.last_path.exists() else None,
            best_checkpoint=self.best_path if self.best_path.exists() else None,
            best_metric=self.best_metric,
            history=history,
            model=model,
        )

    def _run_epoch(self, stop: _StopRequest) -> tuple[dict[str, Any], bool]:
        """One epoch (or its remainder); returns (metrics row, whether a stop signal ended it early)."""
        cfg, log = self.cfg, self.logger
        epoch = self.epoch
        batches = self._batches(epoch)
        self.net.train()
        sums = [0.0] * 5
        started = time.perf_counter()
        progress = log.epoch_progress(
            f"epoch {epoch + 1}/{cfg.epochs}", self.steps_per_epoch, self.batch_in_epoch
        )
        try:
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except Exception:
                    if stop.requested is None:  # a loader worker killed by the same Ctrl-C is no bug
                        raise
                    self._save()
                    return {}, True
                if "video" not in batch and not self.info.enabled:
                    self.batch_in_epoch += 1  # no video of the batch decoded: nothing to train on
                    continue
                out = self._train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                counts = _counts(out)
                loss = counts[0] / max(out.count, 1)
                sums = [a + b for a, b in zip(sums, counts, strict=True)]
                progress.update(out.count, loss, counts[1] / max(out.count, 1))
                event = StepEvent(epoch, self.step, self.batch_in_epoch, loss, self.schedule.lr)
                for callback in self.callbacks:
                    callback(event)
                diverged, stopping = any_rank(
                    [not math.isfinite(loss), stop.requested is not None], self.device, self.info
                )
                if diverged:
                    kept = (
                        f"last good checkpoint {self.last_path}"
                        if self.last_path.exists()
                        else "no checkpoint"
                    )
                    raise TrainingDiverged(
                        f"loss became {loss} at epoch {epoch + 1} step {self.step}; training "
                        f"stopped ({kept} kept); lower --lr or set --clip-grad"
                    )
                if stopping:
                    self._save()
                    return {}, True
        finally:
            progress.close()
        broadcast_buffers(
            self.model, self.info
        )  # same batch-norm statistics on every rank for eval and saving
        loss_n, correct, n, rot_correct, rot_n = all_reduce_sum(sums, self.device, self.info)
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.step,
            "lr": self.schedule.lr,
            "train_loss": loss_n / max(n, 1),
            "train_acc": correct / max(n, 1),
            "train_rot_acc": rot_correct / rot_n if rot_n else None,
            "clips_per_s": n / seconds if seconds > 0 else None,
            "seconds": seconds,
        }
        if self.val_loader is not None:
            row.update(self._validate())
        monitored = row.get("val_acc", row["train_acc"])
        self.schedule.epoch_end(row.get("val_loss", row["train_loss"]))
        improved = self.best_metric is None or monitored > self.best_metric
        if improved:
            self.best_metric = monitored
        self.epoch += 1
        self.batch_in_epoch = 0
        self._save(best=improved)
        log.write_metrics(row)
        log.info(
            " ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
                if v is not None
            )
        )
        return row, False


def _counts(out: StepOutput) -> list[float]:
    """[loss * n, correct, n, rot_correct, rot_n] of one batch as Python numbers (one device sync)."""
    rot_correct = out.rot_correct if out.rot_correct is not None else torch.zeros((), device=out.loss.device)
    loss, correct, rot = torch.stack(
        [out.loss.detach().float(), out.correct.float(), rot_correct.float()]
    ).tolist()
    return [loss * out.count, correct, float(out.count), rot, float(out.rot_count)]


def fit(config: TrainConfig, callbacks: Sequence[Callable[[StepEvent], None]] = ()) -> RunResult:
    """Train as ``config`` says (task "classify" or "puzzle"); returns where the checkpoints are and the
    history.

    Raises ``VidfastError`` subclasses for user errors (bad manifest, checkpoint, device) and
    ``TrainingDiverged`` when the loss turns NaN/inf. Under ``torchrun`` every rank calls ``fit``; rank 0
    writes the run directory. ``callbacks`` are called with a ``StepEvent`` after every optimizer step.
    """
    device = resolve_device(config.runtime.device)
    info = init_distributed(device.type)
    global_flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    try:
        return _Trainer(config, callbacks, device, info).run()
    finally:
        torch.use_deterministic_algorithms(global_flags[0])
        torch.backends.cudnn.benchmark = global_flags[1]
        cleanup(info)


def measure_training_throughput(
    config: TrainConfig, steps: int = 4, warmup: int = 1, in_memory: bool = False
) -> float:
    """Training clips/s of ``config``'s setup on this machine, without writing checkpoints.

    ``in_memory=False``: the whole pipeline (loader + step, batches as they come); ``True``: the step alone,
    repeating the loader's first batch held in memory. ``warmup`` steps are not timed.
    """
    device = resolve_device(config.runtime.device)
    trainer = _Trainer(config, (), device, DistInfo())
    trainer.logger.close(plots=False)
    batches = trainer._batches(0)
    first = next(batches)

    def next_batch() -> dict[str, Any]:
        if in_memory:
            return first
        try:
            return next(batches)
        except StopIteration as exc:
            raise ValueError(f"the train split has fewer than {warmup + steps} batches") from exc

    clips, started = 0, 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            clips, started = 0, time.perf_counter()
        out = trainer._train_step(first if i == 0 else next_batch())
        clips += out.count
    float(out.loss.detach())  # wait for the device
    return clips / (time.perf_counter() - started)

"""The training loop behind ``vidfast pretrain|train|finetune``: ``fit(config) -> RunResult``.

One loop serves every task of :mod:`vidfast.engine.tasks` (supervised classification, the cubic-puzzle pretext
task). Per step: batch to the device (non-blocking, channels_last_3d), forward + loss under autocast, backward
(GradScaler for fp16), optional gradient clipping, optimizer and schedule step. Per epoch: validation on the
manifest's val split when it has rows, metrics to CSV/TensorBoard, a checkpoint written atomically
(``last.pt``) and ``best.pt`` when the monitored accuracy improves; mid-epoch checkpoints every
``runtime.checkpoint_every`` steps or minutes.

Exact resume: every epoch reseeds the generators from (seed, epoch, rank) and the loaders are seeded per
epoch; a checkpoint written mid-epoch (``checkpoint_every``, Ctrl-C, SIGTERM, the preemption signal) records
how many batches of the epoch were done and every rank's generator states, so ``--resume``/``--auto-resume``
start the epoch's loader there and continue bit-for-bit (deterministic mode).

The parts are built next door, once, by :func:`vidfast.engine.run.build_run` (task, model, the run's
:class:`~vidfast.engine.plan.RunPlan`, loaders, optimizer, the state a checkpoint restores); checkpoints
(:mod:`~vidfast.engine.checkpoint`) and stop signals (:mod:`~vidfast.engine.signals`) too.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidfast.data.batch import Batch
from vidfast.devices import resolve_device
from vidfast.engine.checkpoint import (
    CheckpointWriteError,
    capture_rng_state,
    restore_rng_state,
    seed_everything,
    training_checkpoint,
)
from vidfast.engine.config import TrainConfig, checkpoint_interval, save_config
from vidfast.engine.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    any_rank,
    barrier,
    broadcast_buffers,
    cleanup,
    init_distributed,
)
from vidfast.engine.run import RunParts, build_run, epoch_seed
from vidfast.engine.runlog import EpochProgress, RunLogger
from vidfast.engine.signals import StopRequest
from vidfast.engine.tasks import StepOutput
from vidfast.errors import VidfastError


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
    """Outcome of ``fit``. ``status``: "completed" or "interrupted" (Ctrl-C, SIGTERM or the preemption
    signal, named by ``stopped_by``; checkpoint saved)."""

    run_dir: Path
    status: str
    epochs_completed: int
    steps: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_metric: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = None
    stopped_by: str | None = None


class Trainer:
    """The loop of one training run over its built parts (:func:`vidfast.engine.run.build_run`):
    ``Trainer(build_run(cfg)).run()``.

    ``run()`` trains to the end; ``batches(epoch)`` and ``train_step(batch)`` are the loop's two halves (used
    by :func:`vidfast.engine.throughput.measure_training_throughput`); ``close()`` ends the logging of a
    trainer that is not ``run()``.
    """

    def __init__(self, parts: RunParts, callbacks: Sequence[Callable[[StepEvent], None]] = ()):
        self.parts = parts
        self.cfg, self.plan, self.precision = parts.cfg, parts.plan, parts.precision
        self.callbacks = list(callbacks)
        self.info, self.device = parts.info, parts.device
        self.task, self.setup, self.model, self.net = parts.task, parts.setup, parts.model, parts.net
        self.amp_dtype = parts.precision.dtype
        self.train_loader, self.val_loader = parts.train_loader, parts.val_loader
        self.has_val = parts.val_loader is not None
        self.steps_per_epoch = len(parts.train_loader)
        self.optimizer, self.schedule, self.scaler = parts.optimizer, parts.schedule, parts.scaler
        self.checkpoints, self.stop, self.state = parts.checkpoints, parts.stop, parts.state
        self.resumed_from, self.resume_notes = parts.resumed.path, parts.resumed.notes
        self.resume_rng = parts.resumed.rng
        rt = self.cfg.runtime
        self.run_dir = Path(rt.run_dir)
        self.every_steps, self.every_seconds = checkpoint_interval(rt.checkpoint_every)
        self.write_failures = 0
        self.logger = RunLogger(self.run_dir, active=self.info.is_main, progress=rt.progress,
                                tensorboard=rt.tensorboard, append=self.resumed_from is not None,
                                log_every=rt.log_every)
        self.last_save_time = time.monotonic()
        if self.info.is_main:
            save_config(self.cfg, self.run_dir / "config.yaml")
            self.plan.save(self.run_dir / "plan.yaml")

    def save_checkpoint(self, best: bool = False) -> None:
        """A checkpoint of the run as it stands (published as ``last.pt``, and ``best.pt`` when ``best``),
        written by the main rank with every rank's generator states.

        A write that fails (full disk, I/O error) is one log line; the checkpoints before it stay valid and
        training goes on, unless ``runtime.checkpoint_failures`` writes have failed in a row: then
        CheckpointWriteError stops the run on every rank (going on could lose unbounded work)."""
        rng = all_gather_object(capture_rng_state(), self.info) if self.info.enabled else None
        error = self.checkpoints.save(
            lambda: training_checkpoint(self.cfg, self.plan, self.setup, self.parts.stateful(), self.state,
                                        rng),
            self.state.step, best=best,
        )
        self.last_save_time = time.monotonic()
        if error is None:
            self.write_failures = 0
            return
        self.write_failures += 1
        limit = self.cfg.runtime.checkpoint_failures
        newest = self.checkpoints.last if self.checkpoints.last.exists() else "none"
        if self.write_failures >= limit:
            raise CheckpointWriteError(
                f"{self.write_failures} checkpoint writes in a row failed (last: {error}): training stopped "
                f"at step {self.state.step} rather than go on unsaved; newest checkpoint {newest}; make room "
                f"and continue with --auto-resume"
            )
        self.logger.info(
            f"checkpoint of step {self.state.step} not written ({error}); the newest is still {newest}; "
            f"training goes on ({self.write_failures} failed in a row, it stops at {limit})"
        )

    def close(self) -> None:
        """End the run's logging without plots (for a trainer that is not ``run()``)."""
        self.logger.close(plots=False)

    # --- loop -----------------------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def batches(self, epoch: int) -> Iterator[Batch]:
        """The epoch's batches from the first one a mid-epoch checkpoint has not trained on (the sampler skips
        the others: they are not decoded again)."""
        seed_everything(epoch_seed(self.cfg.runtime.seed, epoch, self.info.rank))
        self.train_loader.set_epoch(epoch, start_batch=self.state.batch_in_epoch)
        batches = iter(self.train_loader)
        if self.resume_rng is not None:
            restore_rng_state(self.resume_rng)
            self.resume_rng = None
        return batches

    def train_step(self, batch: Batch) -> StepOutput:
        """Forward, backward and update of one batch (a NaN loss is caught by the caller before any save).

        A batch without videos (under DDP: every video of this rank's batch failed to decode) makes an
        idle step: a blank clip in eval mode (batch-norm statistics untouched), its loss times zero. The rank
        still joins the gradient all-reduce and the update, so the ranks stay in step and identical; the
        update is the other ranks' gradients averaged over all ranks."""
        idle = batch.video is None
        if idle:
            batch = self.task.blank_batch()
            self.net.eval()
        try:
            with self._autocast():
                out = self.task.step(self.net, batch, self.device, self.cfg.runtime.channels_last)
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
        sums = EpochSums()
        try:
            with torch.no_grad(), self._autocast():
                for batch in self.val_loader:
                    out = self.task.step(self.model, batch, self.device, self.cfg.runtime.channels_last)
                    sums.add(EpochSums.of(out))
        finally:
            self.model.train()
        total = sums.over_ranks(self.device, self.info)
        return {
            "val_loss": total.mean_loss,
            "val_acc": total.accuracy,
            "val_clips": int(total.count),
            **({"val_rot_acc": total.rot_accuracy} if total.rot_count else {}),
        }

    def run(self) -> RunResult:
        cfg, log, state = self.cfg, self.logger, self.state
        history: list[dict[str, Any]] = []
        status = "completed"
        log.info(
            f"{cfg.task} {self.plan.arch} on {self.device} x{self.info.world_size}: "
            f"{self.steps_per_epoch} steps/epoch, {cfg.epochs} epochs, precision {self.precision.name}, "
            f"channels_last={cfg.runtime.channels_last}, compile={cfg.runtime.compile}; "
            f"best.pt by {'val' if self.has_val else 'train'} {self.task.monitored}"
        )
        log.info(self.precision.describe())
        if self.precision.fp32_layers:
            log.info(f"under {self.precision.name} autocast: {self.precision.describe_fp32_layers()}")
        for note in self.resume_notes:
            log.info(note)
        if self.resumed_from is not None:
            log.info(f"resumed from {self.resumed_from} at epoch {state.epoch + 1} batch "
                     f"{state.batch_in_epoch} (step {state.step})")
        elif cfg.runtime.auto_resume:
            log.info(f"auto-resume: no checkpoint in {self.run_dir}: starting fresh")
        try:
            with self.stop as stop:
                while state.epoch < cfg.epochs:
                    row = self._run_epoch(stop)
                    if row is None:
                        status = "interrupted"
                        log.info(
                            f"stopped by {stop.requested}: checkpoint {self.checkpoints.last} (epoch "
                            f"{state.epoch + 1}, batch {state.batch_in_epoch}, step {state.step}); "
                            f"continue with --auto-resume (or --resume)"
                        )
                        break
                    history.append(row)
        finally:
            log.close(plots=cfg.runtime.plots)
        barrier(self.info)
        last, best = self.checkpoints.last, self.checkpoints.best
        return RunResult(
            run_dir=self.run_dir,
            status=status,
            epochs_completed=state.epoch,
            steps=state.step,
            last_checkpoint=last if last.exists() else None,
            best_checkpoint=best if best.exists() else None,
            best_metric=state.best_metric,
            history=history,
            model=self.model.eval(),
            stopped_by=self.stop.requested,
        )

    def _run_epoch(self, stop: StopRequest) -> dict[str, Any] | None:
        """One epoch (or its remainder): its metrics row, or None when a stop signal ended it early (after
        a checkpoint)."""
        batches = self.batches(self.state.epoch)
        self.net.train()
        started = time.perf_counter()
        progress = self.logger.epoch_progress(
            f"epoch {self.state.epoch + 1}/{self.cfg.epochs}", self.steps_per_epoch, self.state.batch_in_epoch
        )
        try:
            sums = self._train_epoch(batches, stop, progress)
        finally:
            progress.close()
        if sums is None:
            self.save_checkpoint()
            return None
        return self._end_epoch(sums, time.perf_counter() - started)

    def _train_epoch(self, batches: Iterator[Batch], stop: StopRequest,
                     progress: EpochProgress) -> EpochSums | None:
        """The training steps of the epoch: the sums of its batches, or None when a stop request (on any
        rank) ends it early."""
        state = self.state
        sums = EpochSums()
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return sums
            except Exception:
                if stop.requested is None:  # a loader worker killed by the same Ctrl-C is no bug
                    raise
                return None
            if batch.video is None and not self.info.enabled:
                state.batch_in_epoch += 1  # no video of the batch decoded: nothing to train on
                continue
            out = self.train_step(batch)
            state.step += 1
            state.batch_in_epoch += 1
            counts = EpochSums.of(out)
            loss = counts.mean_loss
            sums.add(counts)
            progress.update(out.count, loss, counts.accuracy)
            event = StepEvent(state.epoch, state.step, state.batch_in_epoch, loss, self.schedule.lr)
            for callback in self.callbacks:
                callback(event)
            stopping, checkpoint_due = self._after_step(loss, stop)
            if stopping:
                return None
            if checkpoint_due and state.batch_in_epoch < self.steps_per_epoch:  # the epoch end saves anyway
                self.save_checkpoint()

    def _after_step(self, loss: float, stop: StopRequest) -> tuple[bool, bool]:
        """(a stop was requested on any rank, a ``runtime.checkpoint_every`` checkpoint is due), decided for
        all ranks at once (the clock is the main rank's); TrainingDiverged when the loss is not finite on
        one."""
        due = bool(self.every_steps) and self.state.step % self.every_steps == 0
        if self.every_seconds and self.info.is_main:
            due = due or time.monotonic() - self.last_save_time >= self.every_seconds
        diverged, stopping, due = any_rank(
            [not math.isfinite(loss), stop.requested is not None, due], self.device, self.info
        )
        if diverged:
            last = self.checkpoints.last
            kept = f"last good checkpoint {last}" if last.exists() else "no checkpoint"
            raise TrainingDiverged(
                f"loss became {loss} at epoch {self.state.epoch + 1} step {self.state.step}; training "
                f"stopped ({kept} kept); lower --lr or set --clip-grad"
            )
        return stopping, due

    def _end_epoch(self, sums: EpochSums, seconds: float) -> dict[str, Any]:
        """Validation, schedule, checkpoints and the metrics row of a completed epoch."""
        state = self.state
        broadcast_buffers(self.model, self.info)  # same batch-norm statistics on every rank for eval, saving
        total = sums.over_ranks(self.device, self.info)
        row: dict[str, Any] = {
            "epoch": state.epoch + 1,
            "step": state.step,
            "lr": self.schedule.lr,
            "train_loss": total.mean_loss,
            "train_acc": total.accuracy,
            "train_rot_acc": total.rot_accuracy if total.rot_count else None,
            "clips_per_s": total.count / seconds if seconds > 0 else None,
            "seconds": seconds,
        }
        if self.val_loader is not None:
            row.update(self._validate())
        monitored = row.get("val_acc", row["train_acc"])
        self.schedule.epoch_end(row.get("val_loss", row["train_loss"]))
        improved = state.best_metric is None or monitored > state.best_metric
        if improved:
            state.best_metric = monitored
        state.epoch += 1
        state.batch_in_epoch = 0
        self.save_checkpoint(best=improved)
        self.logger.write_metrics(row)
        self.logger.info(
            " ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
                if v is not None
            )
        )
        return row


@dataclass
class EpochSums:
    """Sums over batches: ``loss`` (each batch's mean loss times its samples), ``correct`` and ``count``
    samples, and the puzzle's ``rot_correct`` of ``rot_count`` pieces."""

    loss: float = 0.0
    correct: float = 0.0
    count: float = 0.0
    rot_correct: float = 0.0
    rot_count: float = 0.0

    @classmethod
    def of(cls, out: StepOutput) -> EpochSums:
        """The sums of one batch as Python numbers (one device sync)."""
        zero = torch.zeros((), device=out.loss.device)
        rot_correct = out.rot_correct if out.rot_correct is not None else zero
        loss, correct, rot = torch.stack(
            [out.loss.detach().float(), out.correct.float(), rot_correct.float()]
        ).tolist()
        return cls(loss * out.count, correct, float(out.count), rot, float(out.rot_count))

    def add(self, other: EpochSums) -> None:
        """Add ``other``'s sums to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def over_ranks(self, device: torch.device, info: DistInfo) -> EpochSums:
        """These sums added up over the ranks of a torchrun job (themselves in a single process)."""
        return EpochSums(*all_reduce_sum([getattr(self, f.name) for f in fields(self)], device, info))

    @property
    def mean_loss(self) -> float:
        return self.loss / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)

    @property
    def rot_accuracy(self) -> float:
        return self.rot_correct / max(self.rot_count, 1)


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
        return Trainer(build_run(config, device, info), callbacks).run()
    finally:
        torch.use_deterministic_algorithms(global_flags[0])
        torch.backends.cudnn.benchmark = global_flags[1]
        cleanup(info)

"""Training checkpoints: what they hold, atomic writing, ``--resume``/``--auto-resume``, and the
random-number-generator state that makes resuming exact.

Every save writes ``RUN/checkpoints/step-<optimizer step>.pt`` to a temporary file in that folder, flushed to
disk (fsync), then renamed into place; ``RUN/last.pt`` then becomes a hard link to it (a copy where the file
system has none) by the same rename, and only the newest ``keep`` numbered files stay. A crash, a second
signal or a full disk therefore never leaves a partial file under a checkpoint's name: at worst a
``.tmp-*`` file, which no reader takes and the next start removes. Everything saved is plain containers,
numbers, strings and tensors, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidfast.engine.build import Setup
from vidfast.engine.config import TrainConfig
from vidfast.engine.distributed import DistInfo, broadcast_object
from vidfast.engine.plan import RunPlan
from vidfast.errors import CheckpointError, VidfastError
from vidfast.models import read_checkpoint

_NUMBERED = re.compile(r"step-(\d+)\.pt")


class CheckpointWriteError(VidfastError):
    """Too many checkpoint writes failed in a row (full disk, I/O error): training stopped."""


def _fsync_dir(path: Path) -> None:
    """Make a rename in folder ``path`` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: dict[str, Any], path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` via a temporary file + fsync + rename (never a partial file at
    ``path``; OSError, such as ENOSPC, leaves ``path`` as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def publish(source: Path, target: Path) -> None:
    """Make ``target`` name the finished file ``source`` at once: a hard link renamed over ``target`` (a
    fsynced copy where the file system has no hard links)."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def capture_rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's, torch's CPU and (when present) CUDA generators, checkpoint-safe."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by ``capture_rng_state``."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class LoopState:
    """Where a run stands: completed epochs, optimizer steps, batches done of the current epoch (a mid-epoch
    checkpoint), and the best monitored accuracy so far."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None


def training_checkpoint(cfg: TrainConfig, plan: RunPlan, setup: Setup, parts: Mapping[str, Any],
                        state: LoopState, rng_by_rank: list[dict[str, Any]] | None = None) -> dict:
    """The content of ``last.pt``: model, class names, clip geometry and convention as ``plan`` has them (what
    inference needs), and ``parts`` (``{"state_dict": model, "optimizer": ..., "scheduler": ...,
    "scaler": ...}``, each saved with its ``state_dict()``), counters, generator states (this process's; under
    DDP every rank's in ``rng_by_rank``), the config and the plan (what ``--resume`` needs)."""
    ckpt: dict[str, Any] = {
        "arch": plan.arch,
        "model_kwargs": dict(plan.model_kwargs),
        "task": plan.task,
        "num_classes": plan.num_classes,
        "class_names": list(plan.class_names),
        "data": {"clip_len": plan.clip_len, "size": plan.size, "frame_step": plan.frame_step,
                 **plan.convention},
        **{key: part.state_dict() for key, part in parts.items()},
        "epoch": state.epoch,
        "step": state.step,
        "batch_in_epoch": state.batch_in_epoch,
        "rng": capture_rng_state(),
        "config": cfg.to_dict(),
        "plan": plan.to_dict(),
        "best_metric": state.best_metric,
    }
    if rng_by_rank is not None and len(rng_by_rank) > 1:
        ckpt["rng_by_rank"] = rng_by_rank
    ckpt.update({key: dict(value) for key, value in setup.checkpoint_extra.items()})
    return ckpt


def recorded_plan(ckpt: dict[str, Any], path: Path) -> RunPlan | None:
    """The plan a training checkpoint records (None in one written before plans were)."""
    return None if "plan" not in ckpt else RunPlan.from_dict(ckpt["plan"], str(path))


def recorded_precision(ckpt: dict[str, Any]) -> str | None:
    """The precision a training checkpoint's run used: its plan's, else (older checkpoints) its config's."""
    if "plan" in ckpt:
        return ckpt["plan"].get("precision")
    return (ckpt.get("config") or {}).get("runtime", {}).get("precision")


def restore_training(ckpt: dict[str, Any], path: Path, plan: RunPlan, parts: Mapping[str, Any],
                     state: LoopState, info: DistInfo = DistInfo()) -> dict[str, Any] | None:
    """Load a ``training_checkpoint`` into ``parts`` and ``state``; CheckpointError when it belongs to another
    run than ``plan``'s. Returns the generator states to restore at the resumed batch (None at an epoch
    boundary): this rank's when the checkpoint has every rank's of a job of the same size, else the saving
    rank's."""
    mine = {"task": plan.task, "arch": plan.arch, "num_classes": plan.num_classes}
    for key, value in mine.items():
        if ckpt.get(key) != value:
            raise CheckpointError(f"--resume: {path} has {key} {ckpt.get(key)!r} but this run has {value!r}")
    try:
        for key, part in parts.items():
            part.load_state_dict(ckpt[key])
        state.epoch, state.step = int(ckpt["epoch"]), int(ckpt["step"])
        state.batch_in_epoch = int(ckpt["batch_in_epoch"])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"--resume: {path} does not fit this run: {' '.join(str(exc).split())[:300]}"
        ) from None
    state.best_metric = ckpt.get("best_metric")
    if not state.batch_in_epoch:
        return None
    by_rank = ckpt.get("rng_by_rank")
    return by_rank[info.rank] if by_rank and len(by_rank) == info.world_size else ckpt["rng"]


class RunCheckpoints:
    """The checkpoints of a run directory: ``checkpoints/step-N.pt`` (the newest ``keep``), ``last.pt`` (the
    newest of them) and ``best.pt``; written by the main rank, every rank learns whether the write worked."""

    def __init__(self, run_dir: Path, info: DistInfo, keep: int = 2) -> None:
        self.run_dir = run_dir
        self.folder = run_dir / "checkpoints"
        self.last = run_dir / "last.pt"
        self.best = run_dir / "best.pt"
        self.info = info
        self.keep = keep

    def read_last(self) -> dict[str, Any]:
        """``last.pt`` for ``--resume`` (CheckpointError when there is none)."""
        if not self.last.is_file():
            raise CheckpointError(f"--resume: no checkpoint {self.last} to resume from")
        return read_checkpoint(self.last)

    def numbered(self) -> list[tuple[int, Path]]:
        """(step, path) of ``checkpoints/step-N.pt``, newest first."""
        found = []
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                match = _NUMBERED.fullmatch(path.name)
                if match:
                    found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def find_newest(self) -> tuple[dict[str, Any] | None, Path | None, list[str]]:
        """For ``--auto-resume``: the newest checkpoint that loads and holds a training state, its path, and
        one line per newer file passed over (truncated, corrupt); (None, None, lines) when there is none.
        Chosen by the main rank, read by every rank."""
        chosen: Path | None = None
        notes: list[str] = []
        if self.info.is_main:
            candidates = [path for _, path in self.numbered()]
            if self.last.is_file() and not any(_same_file(self.last, p) for p in candidates):
                candidates.append(self.last)
            for path in candidates:
                try:
                    ckpt = read_checkpoint(path)
                    missing = [k for k in ("state_dict", "epoch", "step", "batch_in_epoch") if k not in ckpt]
                    if missing:
                        raise CheckpointError(f"not a training checkpoint (no {', '.join(missing)})")
                except CheckpointError as exc:
                    notes.append(f"auto-resume: passing over {path}: {' '.join(str(exc).split())[:200]}")
                    continue
                chosen = path
                break
        chosen, notes = broadcast_object((chosen, notes), self.info)
        if chosen is None:
            return None, None, notes
        return (ckpt if self.info.is_main else read_checkpoint(chosen)), chosen, notes

    def remove_stale_temporaries(self) -> None:
        """Remove the ``.tmp-*`` files a killed writer left (main rank, before the first save)."""
        if self.info.is_main:
            for folder in (self.run_dir, self.folder):
                if folder.is_dir():
                    for path in folder.glob(".*.pt.tmp-*"):
                        path.unlink(missing_ok=True)

    def save(self, make: Callable[[], dict[str, Any]], step: int, best: bool = False) -> str | None:
        """``checkpoints/step-{step}.pt`` from ``make()`` (called on the main rank only), published as
        ``last.pt`` (and ``best.pt``); older numbered files beyond ``keep`` are removed.

        Returns None, or the OSError (one line) that stopped the write on every rank; the checkpoints
        written before stay as they were."""
        error = None
        if self.info.is_main:
            target = self.folder / f"step-{step:09d}.pt"
            try:
                atomic_save(make(), target)
                publish(target, self.last)
                if best:
                    publish(target, self.best)
                for _, old in self.numbered()[self.keep:]:
                    old.unlink(missing_ok=True)
            except OSError as exc:
                error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return broadcast_object(error, self.info)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False

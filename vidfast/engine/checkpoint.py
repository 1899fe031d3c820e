"""Training checkpoints: what ``last.pt``/``best.pt`` hold, atomic writing, ``--resume``, and the
random-number-generator state that makes resuming exact.

A checkpoint is written to a temporary file in the target folder, flushed to disk, then renamed over the
target, so a crash or a second Ctrl-C never leaves a half-written ``last.pt``. Everything saved is plain
containers, numbers, strings and tensors, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidfast.engine.build import Setup
from vidfast.engine.config import TrainConfig
from vidfast.engine.distributed import DistInfo, barrier
from vidfast.errors import CheckpointError
from vidfast.models import read_checkpoint


def atomic_save(obj: dict[str, Any], path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` via a temporary file + rename (never a partial file at ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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


def training_checkpoint(cfg: TrainConfig, setup: Setup, parts: Mapping[str, Any], state: LoopState) -> dict:
    """The content of ``last.pt``: model, class names, clip geometry and convention (what inference needs),
    and ``parts`` (``{"state_dict": model, "optimizer": ..., "scheduler": ..., "scaler": ...}``, each saved
    with its ``state_dict()``), counters, generator states and the config (what ``--resume`` needs)."""
    ckpt: dict[str, Any] = {
        "arch": cfg.model.arch,
        "model_kwargs": cfg.model.model_kwargs(),
        "task": cfg.task,
        "num_classes": setup.num_classes,
        "class_names": list(setup.class_names),
        "data": {
            "clip_len": cfg.data.clip_len,
            "size": cfg.data.size,
            "frame_step": cfg.data.frame_step,
            **setup.convention.to_data(),
        },
        **{key: part.state_dict() for key, part in parts.items()},
        "epoch": state.epoch,
        "step": state.step,
        "batch_in_epoch": state.batch_in_epoch,
        "rng": capture_rng_state(),
        "config": cfg.to_dict(),
        "best_metric": state.best_metric,
    }
    ckpt.update({key: dict(value) for key, value in setup.checkpoint_extra.items()})
    return ckpt


def restore_training(ckpt: dict[str, Any], path: Path, cfg: TrainConfig, setup: Setup,
                     parts: Mapping[str, Any], state: LoopState) -> dict[str, Any] | None:
    """Load a ``training_checkpoint`` into ``parts`` and ``state``; CheckpointError when it belongs to another
    run. Returns the generator states to restore at the resumed batch (None at an epoch boundary)."""
    mine = {"task": cfg.task, "arch": cfg.model.arch, "num_classes": setup.num_classes}
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
    return ckpt["rng"] if state.batch_in_epoch else None


class RunCheckpoints:
    """``RUN/last.pt`` and ``RUN/best.pt``: written by the main rank, every rank waits for the write."""

    def __init__(self, run_dir: Path, info: DistInfo) -> None:
        self.last = run_dir / "last.pt"
        self.best = run_dir / "best.pt"
        self.info = info

    def read_last(self) -> dict[str, Any]:
        """``last.pt`` for ``--resume`` (CheckpointError when there is none)."""
        if not self.last.is_file():
            raise CheckpointError(f"--resume: no checkpoint {self.last} to resume from")
        return read_checkpoint(self.last)

    def save(self, make: Callable[[], dict[str, Any]], best: bool = False) -> None:
        """``last.pt`` from ``make()`` (called on the main rank only), and a copy as ``best.pt``."""
        if self.info.is_main:
            atomic_save(make(), self.last)
            if best:
                tmp = self.best.with_name(f".{self.best.name}.tmp-{os.getpid()}")
                shutil.copyfile(self.last, tmp)
                os.replace(tmp, self.best)
        barrier(self.info)

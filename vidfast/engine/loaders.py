"""The loaders of a training run (train and validation splits) from its config."""

from __future__ import annotations

from typing import Any

import torch

from vidfast.conventions import Convention
from vidfast.data.loader import LoaderConfig, make_loader
from vidfast.data.policies import ClipOutput
from vidfast.engine.config import TrainConfig
from vidfast.engine.tasks import Task
from vidfast.errors import VidfastError


def run_loader(
    manifest: Any, cfg: TrainConfig, task: Task, split: str, training: bool, device: torch.device,
    dtype: torch.dtype, convention: Convention, ignore_signals: tuple[int, ...] = (),
) -> Any:
    """``make_loader`` for the train split or validation, cutting clips as ``task`` does
    (:meth:`Task.policy`) with ``data.clips``' options, loading as ``data.loader`` says. The train loader
    keeps batches whose videos all failed, as empty batches: under DDP every rank must take every step, and
    the batch count a mid-epoch checkpoint records must count them to resume at the right sample. Clips are
    normalised with ``convention`` (set with ``data.convention``/``mean``/``std``/``value_scale``, so that the
    checkpoint records it). The workers ignore ``ignore_signals`` (the run's stop signals)."""
    data = cfg.data
    output = ClipOutput(convention.unit_mean, convention.unit_std, dtype, cfg.runtime.channels_last)
    config = LoaderConfig(
        backend=data.backend, batch_size=data.batch_size, workers=data.workers, seed=cfg.runtime.seed,
        shuffle=training,
        drop_last=training,  # a last tiny batch makes batch norm statistics (and gradients) explode
        pin_memory=device.type == "cuda", device=str(device) if device.type == "cuda" else "cpu",
        crop_in=data.loader.crop_in, prefetch_factor=data.loader.prefetch_factor,
        empty_batches=training,
        pad_shards=training,  # validation: every clip once over all ranks
        ignore_signals=ignore_signals,
    )
    try:
        return make_loader(manifest, task.policy(training, output), config, split=split)
    except (TypeError, ValueError) as exc:
        raise VidfastError(f"data.clips: {exc}") from None

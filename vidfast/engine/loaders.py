"""The loaders of a training run (train and validation splits) from its config."""

from __future__ import annotations

from typing import Any

import torch

from vidfast.conventions import Convention
from vidfast.data.loader import make_loader
from vidfast.engine.build import puzzle_config
from vidfast.engine.config import TrainConfig
from vidfast.errors import VidfastError


def run_loader(
    manifest: Any, cfg: TrainConfig, split: str, training: bool, device: torch.device, dtype: torch.dtype,
    convention: Convention,
) -> Any:
    """``make_loader`` for the train split (random clips, multi-scale crops, flips, shuffled) or validation
    (center clip and crop); ``data.loader`` entries override any argument. The train loader keeps batches
    whose videos all failed, as empty batches: under DDP every rank must take every step, and the batch
    count a mid-epoch checkpoint records must count them to resume at the right sample. Clips are normalised
    with ``convention`` (set with ``data.convention``/``mean``/``std``/``value_scale``, not ``data.loader``,
    so that the checkpoint records it)."""
    data = cfg.data
    if {"mean", "std"} & set(data.loader):
        raise VidfastError("data.loader: set the normalisation with data.mean / data.std / data.convention")
    kwargs: dict[str, Any] = dict(
        task=cfg.task,
        split=split,
        backend=data.backend,
        clip_len=data.clip_len,
        frame_step=data.frame_step,
        size=data.size,
        batch_size=data.batch_size,
        workers=data.workers,
        channels_last=cfg.runtime.channels_last,
        dtype=dtype,
        seed=cfg.runtime.seed,
        shuffle=training,
        drop_last=training,  # a last tiny batch makes batch norm statistics (and gradients) explode
        pin_memory=device.type == "cuda",
        device=device if device.type == "cuda" else "cpu",
        empty_batches=training,
        mean=convention.unit_mean,
        std=convention.unit_std,
    )
    if not training:  # every validation clip once over all ranks: no padding of the shards
        kwargs.update(sampling="center", spatial="center", hflip=False, pad_shards=False)
    if cfg.task == "puzzle":
        kwargs["puzzle"] = puzzle_config(cfg)
    kwargs.update(data.loader)
    try:
        return make_loader(manifest, **kwargs)
    except TypeError as exc:
        raise VidfastError(f"data.loader: {exc}") from None

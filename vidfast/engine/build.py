"""The helpers the tasks build their model with: the input convention, a fine-tune source, the puzzle
sampler's config (derived here only), and the runtime flags.

The task-specific parts (which model, which classes) are the task objects' (:mod:`vidfast.engine.tasks`);
they assemble a :class:`Setup` from the helpers here. The whole run is put together by
:func:`vidfast.engine.run.build_run`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vidfast import conventions
from vidfast.conventions import Convention, Override
from vidfast.engine.config import TrainConfig
from vidfast.errors import VidfastError
from vidfast.models import create_model, load_checkpoint, read_checkpoint
from vidfast.models.identify import FileIdentity, choose_convention, identify
from vidfast.puzzle import PuzzleConfig


@dataclass
class Setup:
    """A task's model and what the checkpoints record about it: ``arch`` and ``model_kwargs`` built it (the
    config's, or a fine-tuning source's own)."""

    model: nn.Module  # unwrapped
    class_names: list[str]
    num_classes: int
    param_groups: list[dict[str, Any]]
    convention: Convention
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)  # task entries of the checkpoint
    arch: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceModel:
    """The network of a fine-tuning source, with the source's weights, and what built it."""

    model: nn.Module
    arch: str
    model_kwargs: dict[str, Any]
    convention: Convention


def puzzle_config(cfg: TrainConfig) -> PuzzleConfig:
    """The puzzle sampler's config, the one place that derives it: the choices of ``puzzle.sampler``, cubes of
    ``data.clip_len`` frames ``data.frame_step`` apart, ``data.size`` square."""
    data = cfg.data
    return PuzzleConfig.of(cfg.puzzle.sampler, data.clip_len, data.size, data.frame_step)


def run_convention(cfg: TrainConfig, source: FileIdentity | Convention = conventions.DEFAULT) -> Convention:
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


def finetune_source(cfg: TrainConfig, num_classes: int) -> SourceModel:
    """The model of ``finetune.checkpoint`` (any layout :func:`identify` knows) with a ``num_classes``
    classifier, its arch and options (``model.*`` of the config does not apply), and the run's convention."""
    source = read_checkpoint(cfg.finetune.checkpoint)
    found = identify(source)
    model = create_model(found.arch, num_classes=num_classes, **found.model_kwargs)
    return SourceModel(load_checkpoint(model, source, num_classes=num_classes), found.arch,
                       dict(found.model_kwargs), run_convention(cfg, found))


def apply_runtime_flags(cfg: TrainConfig) -> None:
    """Deterministic algorithms and cuDNN autotuning as ``runtime`` says (``fit`` restores the old flags)."""
    rt = cfg.runtime
    if rt.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = rt.cudnn_benchmark and not rt.deterministic

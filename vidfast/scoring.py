"""Scoring videos with trained classifiers: the clip spec a checkpoint records, its model loaded for
inference, and the score ensemble of several (Kim et al.) that evaluation (``vidfast.engine``) and prediction
(``vidfast.deploy``) both use.

This module sits above ``vidfast.models``, ``vidfast.data`` and ``vidfast.runtime`` and below the engine and
deploy layers, so deployment does not import the training engine.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vidfast.conventions import Override
from vidfast.data.policies import ClipOutput, ClipParams, ClipPolicy, ClipSampling, create_policy
from vidfast.data.reader import Segment, SegmentLike, read_clips
from vidfast.devices import resolve_device
from vidfast.errors import CheckpointError, VidfastError
from vidfast.runtime import PRECISIONS, PrecisionPlan, plan_precision

log = logging.getLogger(__name__)


def ensemble_scores(scores: Sequence[Tensor]) -> Tensor:
    """Score ensemble: the mean of several models' probabilities for the same clips, each ``Tensor[N, C]``."""
    if not scores:
        raise ValueError("ensemble_scores needs at least one score tensor")
    shapes = {tuple(s.shape) for s in scores}
    if len(shapes) != 1:
        raise ValueError(f"all score tensors must have the same shape, got {sorted(shapes)}")
    return torch.stack([s.to(torch.float32) for s in scores]).mean(dim=0)


@dataclass(frozen=True)
class ClipSpec:
    """What clips a model takes: ``clip_len`` frames, one every ``frame_step``, square ``size`` crops."""

    clip_len: int
    size: int
    frame_step: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def policy(self, name: str = "uniform", **options: Any) -> ClipPolicy:
        """The clip policy called ``name`` (:func:`~vidfast.data.policies.create_policy`, with its
        ``options``) in this spec's geometry and normalisation."""
        return create_policy(name, self.clip_len, self.frame_step, self.size, ClipOutput(self.mean, self.std),
                             **options)


@dataclass(frozen=True)
class MatchedClips(ClipSampling):
    """As many evenly spaced clips (of its own geometry) as ``leader`` takes from the same video: the other
    members of a score ensemble, whose scores are averaged clip by clip with the first member's."""

    leader: ClipPolicy | None = None

    def num_samples(self, num_frames: int) -> int:
        assert self.leader is not None
        return self.leader.num_samples(num_frames)

    def plan(self, num_frames: int, height: int, width: int, rng: np.random.Generator | None = None,
             key_frames: np.ndarray | None = None) -> ClipParams:
        temporal = replace(self.temporal, mode="uniform", clips=self.num_samples(num_frames))
        own = ClipSampling(temporal, self.spatial, self.output)
        return own.plan(num_frames, height, width, rng, key_frames)


def ensemble_policies(specs: Sequence[ClipSpec], clips: int = 10, sliding: bool = False,
                      policy: str | None = None) -> list[ClipPolicy]:
    """The clip policy of each spec of an ensemble: the first spec's by name (``policy``), else its sliding
    windows (``sliding``) or ``clips`` evenly spaced clips; the other specs take as many evenly spaced clips
    (:class:`MatchedClips`)."""
    if clips < 1:
        raise ValueError(f"--clips must be at least 1, got {clips}")
    first = specs[0].policy(policy) if policy else specs[0].policy("sliding" if sliding else "uniform",
                                                                    **({} if sliding else {"clips": clips}))
    matched = []
    for spec in specs[1:]:
        own = spec.policy("uniform", clips=1)
        assert isinstance(own, ClipSampling)
        matched.append(MatchedClips(own.temporal, own.spatial, own.output, leader=first))
    return [first, *matched]


@dataclass
class LoadedClassifier:
    """A classifier in eval mode with the clip spec and class names its checkpoint recorded."""

    model: nn.Module
    spec: ClipSpec
    class_names: list[str]
    source: str


def load_classifier(path: str | Path, clip_len: int | None = None, size: int | None = None,
                    frame_step: int | None = None, convention: Override = Override()) -> LoadedClassifier:
    """Read a classification checkpoint (any layout :func:`vidfast.models.identify.identify` knows) and
    build its model on the CPU.

    Clips are normalised with the convention the file records or its layout tells, ``convention`` on top
    (refused when it contradicts the file, unless forced; a guess is logged in one line). The
    clip geometry comes from the checkpoint's ``data`` entry unless given, else from the convention's
    training clip or the model card.
    """
    from vidfast.models.identify import open_classifier

    opened = open_classifier(path, convention)
    spec = ClipSpec(
        clip_len=int(clip_len or opened.clip_len),
        size=int(size or opened.size),
        frame_step=int(frame_step or opened.frame_step),
        mean=opened.convention.unit_mean,
        std=opened.convention.unit_std,
    )
    return LoadedClassifier(model=opened.model.eval(), spec=spec, class_names=opened.identity.class_names,
                            source=str(path))


class ScoreEnsemble:
    """One or more classifiers whose softmax scores are averaged per clip.

    ``autocast`` True/False forces autocast (bf16 on a CPU, bf16 or fp16 on CUDA) on/off; ``None``: the
    precision measured fastest among those proven correct here, decided at the first batch
    (:func:`vidfast.runtime.plan_precision`; ``plan`` holds the decision).
    ``channels_last`` converts the model and clips to ``torch.channels_last_3d`` (the fast layout for oneDNN
    and cuDNN alike).
    """

    def __init__(self, members: Sequence[LoadedClassifier], device: str | torch.device = "cpu",
                 autocast: bool | None = None, channels_last: bool = True) -> None:
        if not members:
            raise ValueError("at least one --checkpoint is needed")
        sizes = {m.model.num_classes for m in members}
        if len(sizes) != 1:
            listing = ", ".join(f"{m.source}: {m.model.num_classes}" for m in members)
            raise CheckpointError(f"the checkpoints disagree on the number of classes ({listing})")
        named = [m.class_names for m in members if m.class_names]
        if any(n != named[0] for n in named):
            raise CheckpointError("the checkpoints were trained on different class lists")
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.autocast = autocast
        self.plan: PrecisionPlan | None = None
        self.channels_last = channels_last
        self.members = list(members)
        self.num_classes = sizes.pop()
        self.class_names = named[0] if named else [str(i) for i in range(self.num_classes)]
        self.specs: list[ClipSpec] = list(dict.fromkeys(m.spec for m in members))
        memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        for m in self.members:
            m.model.to(self.device, memory_format=memory_format)

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | Path], device: str = "auto", autocast: bool | None = None,
                         channels_last: bool = True, clip_len: int | None = None, size: int | None = None,
                         frame_step: int | None = None, convention: Override = Override()) -> ScoreEnsemble:
        """Load every checkpoint in ``paths`` (see :func:`load_classifier`) into one ensemble."""
        resolved = resolve_device(device)
        members = [
            load_classifier(p, clip_len=clip_len, size=size, frame_step=frame_step, convention=convention)
            for p in paths
        ]
        return cls(members, device=resolved, autocast=autocast, channels_last=channels_last)

    def check_classes(self, class_names: Sequence[str]) -> None:
        """CheckpointError unless the ensemble predicts ``class_names`` (the count; the names if known)."""
        if self.num_classes != len(class_names):
            raise CheckpointError(
                f"class-count mismatch: the checkpoint predicts {self.num_classes} classes, "
                f"the manifest has {len(class_names)}"
            )
        anonymous = self.class_names == [str(i) for i in range(self.num_classes)]
        if not anonymous and self.class_names != list(class_names):
            raise CheckpointError("the checkpoint's class names differ from the manifest's (order or names)")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.plan is None or self.plan.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.plan.dtype)

    def _plan(self, batches: Sequence[Tensor]) -> PrecisionPlan:
        """Decide the precision once, at the first batch of each member (``batches[i]``, on the device)."""
        if self.plan is not None:
            return self.plan
        members = [(m.model, x[:1]) for m, x in zip(self.members, batches, strict=True)]

        def make_step(name: str) -> Any:
            def step() -> None:
                with torch.autocast(self.device.type, dtype=PRECISIONS[name], enabled=name != "fp32"):
                    for model, x in zip(self.members, batches, strict=True):
                        model.model(x)

            return step

        try:
            self.plan = plan_precision(members, len(batches[0]), self.device, make_step, amp=self.autocast,
                                       grads=False)
        except ValueError as exc:
            raise VidfastError(str(exc)) from None
        log.info("inference %s", self.plan.describe())
        if self.plan.fp32_layers:
            log.info("under %s autocast: %s", self.plan.name, self.plan.describe_fp32_layers())
        return self.plan

    @torch.inference_mode()
    def clip_probs(self, clips: Sequence[Tensor], batch_size: int = 16) -> Tensor:
        """Ensemble probabilities ``Tensor[k, C]`` (float32, CPU) of ``k`` clips.

        ``clips[i]`` is ``Tensor[k, 3, T, S, S]`` decoded for ``self.specs[i]`` (the same ``k`` windows each).
        """
        by_spec = dict(zip(self.specs, clips, strict=True))
        memory_format = torch.channels_last_3d if self.channels_last else torch.contiguous_format
        self._plan([by_spec[m.spec][:batch_size].to(self.device).contiguous(memory_format=memory_format)
                    for m in self.members])
        per_model = []
        for member in self.members:
            batches = []
            for chunk in by_spec[member.spec].split(batch_size):
                x = chunk.to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
                with self._autocast():
                    logits = member.model(x)
                batches.append(logits.float().softmax(dim=1).cpu())
            per_model.append(torch.cat(batches))
        return ensemble_scores(per_model)

    def video_probs(self, path: str | Path, clips: int = 10, sliding: bool = False, backend: str = "auto",
                    batch_size: int = 16, policy: str | None = None) -> Tensor:
        """Video-level probabilities ``Tensor[C]``: the ensemble's clip probabilities averaged over clips
        (see :func:`ensemble_policies` for ``clips``, ``sliding`` and ``policy``)."""
        decoded = decode_clips(path, self.specs, clips, sliding, backend=backend, policy=policy)
        return self.clip_probs(decoded, batch_size).mean(dim=0)


def decode_clips(path: str | Path | SegmentLike, specs: Sequence[ClipSpec], clips: int = 10,
                 sliding: bool = False, start: float | None = None, end: float | None = None,
                 backend: str = "auto", policy: str | None = None) -> list[Tensor]:
    """Read ``path`` (or a manifest row) once for all clip specs, with :func:`ensemble_policies`.

    Returns one ``Tensor[k, 3, T, S, S]`` per spec (the same ``k`` for all); raises DataError for a bad video.
    """
    segment = Segment(str(path), start, end) if isinstance(path, str | Path) else path
    return read_clips(segment, ensemble_policies(specs, clips, sliding, policy), backend)

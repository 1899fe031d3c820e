"""The training tasks: what each builds (model, classes, checkpoint entries) and what one training step
computes (inputs from a loader :class:`~vidfast.data.batch.Batch`, forward, loss and accuracy counts), and
the clip policies its loaders cut samples with (the task owns them: its sample shape is theirs). ``TASKS``
maps ``TrainConfig.task`` to its class; a new task is one class here and one entry there.

- ``ClassifyTask``: batch ``video`` ``Tensor[B, 3, T, H, W]``, ``label`` ``Tensor[B]``; loss =
  (label-smoothed) CE. Training clips by the policy ``data.clips.policy`` names (default ``random``, with
  the other clip options of ``data.clips``), validation by ``data.clips.val_policy`` (default ``center``).
- ``PuzzleTask``: batch ``video`` ``Tensor[B, P, 3, t, h, w]``, targets ``perm_label`` ``Tensor[B]``,
  ``rot_label`` ``Tensor[B, P]``; loss = ``permutation_weight`` * permutation CE + ``rotation_weight`` *
  rotation CE (over all pieces). Cubic puzzles on both splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidfast import conventions
from vidfast.data.batch import Batch
from vidfast.data.policies import ClipOutput, ClipPolicy, CubicPuzzle, create_policy
from vidfast.engine.build import Setup, finetune_source, puzzle_config, run_convention
from vidfast.engine.config import TrainConfig
from vidfast.errors import DataError, VidfastError
from vidfast.models import PuzzleNet, create_model, finetune_param_groups, inflate_from_2d, read_checkpoint
from vidfast.puzzle import PuzzleConfig


@dataclass
class StepOutput:
    """Loss of a batch and its accuracy counts (tensors stay on the device until read)."""

    loss: Tensor
    correct: Tensor
    count: int
    rot_correct: Tensor | None = None
    rot_count: int = 0


def to_device(video: Tensor, device: torch.device, channels_last: bool) -> Tensor:
    """Move a clip batch (``[B, C, T, H, W]`` or puzzle ``[B, P, C, t, h, w]``) to ``device`` without
    blocking; with ``channels_last`` each clip ends up ``torch.channels_last_3d`` (a no-op when the loader
    already made it so).
    """
    video = video.to(device, non_blocking=True)
    if not channels_last:
        return video
    if video.dim() == 5:
        return video.contiguous(memory_format=torch.channels_last_3d)
    lead = video.shape[:2]
    return video.flatten(0, 1).contiguous(memory_format=torch.channels_last_3d).unflatten(0, lead)


def _scored(logits: Tensor, label: Tensor, label_smoothing: float) -> StepOutput:
    """(Label-smoothed) cross-entropy of ``logits`` ``Tensor[N, K]`` (in float32) against ``label``
    ``Tensor[N]``, and how many argmaxes hit."""
    logits = logits.float()
    loss = F.cross_entropy(logits, label, label_smoothing=label_smoothing)
    correct = (logits.detach().argmax(1) == label).sum()
    return StepOutput(loss=loss, correct=correct, count=label.numel())


class Task(Protocol):
    """A training task: ``monitored`` names the accuracy ``best.pt`` is chosen by."""

    name: str
    monitored: str

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> Task: ...

    def policy(self, training: bool, output: ClipOutput) -> ClipPolicy:
        """How the loaders cut this task's samples (training or validation), written as ``output`` says."""
        ...

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample's ``video`` (without the batch dimension): the training policy's."""
        ...

    def build(self, cfg: TrainConfig, class_names: list[str]) -> Setup:
        """The model to train (on the CPU), its classes, parameter groups and input convention."""
        ...

    def step(self, model: nn.Module, batch: Batch, device: torch.device,
             channels_last: bool) -> StepOutput: ...

    def blank_batch(self, size: int = 1) -> Batch:
        """A batch of ``size`` zero samples with every label the step reads (a DDP idle step, precision
        probes)."""
        ...


class ClassifyTask:
    """Supervised clip classification of ``clip_len`` frames ``frame_step`` apart, ``size`` square: training
    clips by the clip policy ``policy`` (with ``options``), validation clips by ``val_policy``."""

    name = "classify"
    monitored = "clip accuracy"

    def __init__(self, label_smoothing: float = 0.0, clip_len: int = 16, frame_step: int = 1, size: int = 112,
                 policy: str = "random", val_policy: str = "center",
                 options: Mapping[str, Any] | None = None):
        self.label_smoothing = label_smoothing
        self.geometry = {"clip_len": clip_len, "frame_step": frame_step, "size": size}
        self.policies = {True: (policy, dict(options or {})), False: (val_policy, {})}

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> ClassifyTask:
        """The task of ``cfg``; VidfastError naming ``data.clips`` for an unknown policy or option."""
        options = cfg.data.clips.policy_options()
        data = cfg.data
        task = cls(cfg.optim.label_smoothing, data.clip_len, data.frame_step, data.size,
                   options.pop("policy", "random"), options.pop("val_policy", "center"), options)
        try:
            for training in (True, False):
                task.policy(training, ClipOutput())
        except (TypeError, ValueError) as exc:
            raise VidfastError(f"data.clips: {exc}") from None
        return task

    def policy(self, training: bool, output: ClipOutput) -> ClipPolicy:
        name, options = self.policies[training]
        return create_policy(name, output=output, **self.geometry, **options)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(3, T, S, S)`` for the built-in policies."""
        return self.policy(True, ClipOutput()).sample_shape

    def build(self, cfg: TrainConfig, class_names: list[str]) -> Setup:
        """A classifier over the manifest's classes: from scratch, from ``finetune.checkpoint`` or inflated
        from 2D weights; parameter groups from ``finetune.begin_module``."""
        num_classes = len(class_names)
        if num_classes < 2:
            raise DataError(
                f"manifest {cfg.data.manifest} has {num_classes} class(es); classification needs >= 2"
            )
        arch, model_kwargs = cfg.model.arch, cfg.model.model_kwargs()
        if cfg.finetune.checkpoint is not None:
            source = finetune_source(cfg, num_classes)
            model, convention = source.model, source.convention
            arch, model_kwargs = source.arch, source.model_kwargs
        elif cfg.finetune.inflate_from is not None:
            model = create_model(arch, num_classes=num_classes, **model_kwargs)
            inflate_from_2d(model, read_checkpoint(cfg.finetune.inflate_from))
            convention = run_convention(cfg, conventions.PRESETS["imagenet"])
        else:
            model = create_model(arch, num_classes=num_classes, **model_kwargs)
            convention = run_convention(cfg)
        opt, begin = cfg.optim, cfg.finetune.begin_module
        groups = (
            finetune_param_groups(model, begin_module=begin, lr=opt.lr, weight_decay=opt.weight_decay)
            if begin
            else [{"params": list(model.parameters())}]
        )
        return Setup(model, class_names, num_classes, groups, convention, arch=arch,
                     model_kwargs=model_kwargs)

    def step(self, model: nn.Module, batch: Batch, device: torch.device, channels_last: bool) -> StepOutput:
        """Forward + loss of one batch (call under autocast)."""
        video = to_device(batch.video, device, channels_last)
        label = batch.label.to(device, non_blocking=True)
        return _scored(model(video), label, self.label_smoothing)

    def blank_batch(self, size: int = 1) -> Batch:
        """``video`` ``Tensor[size, C, T, H, W]`` of zeros, ``label`` 0."""
        return Batch((torch.zeros(size, *self.sample_shape),), torch.zeros(size, dtype=torch.long))


class PuzzleTask:
    """Space-Time Cubic Puzzle pretext task (Kim et al., AAAI 2019)."""

    name = "puzzle"
    monitored = "puzzle (permutation) accuracy"

    def __init__(self, rotation_weight: float = 1.0, label_smoothing: float = 0.0,
                 permutation_weight: float = 1.0, puzzle: PuzzleConfig = PuzzleConfig()):
        self.rotation_weight = rotation_weight
        self.label_smoothing = label_smoothing
        self.permutation_weight = permutation_weight
        self.puzzle = puzzle

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> PuzzleTask:
        """The task of ``cfg``: cubes of the data section's geometry cut as ``puzzle.sampler`` says
        (:func:`~vidfast.engine.build.puzzle_config`; clip options in ``data.clips`` are a VidfastError: the
        puzzle takes none)."""
        options = cfg.data.clips.policy_options()
        if options:
            raise VidfastError(f"data.clips: unexpected options for the puzzle task: {', '.join(options)}")
        return cls(cfg.puzzle.rotation_weight, cfg.optim.label_smoothing, cfg.puzzle.permutation_weight,
                   puzzle_config(cfg))

    def policy(self, training: bool, output: ClipOutput) -> ClipPolicy:
        """Cubic puzzles on both splits."""
        return CubicPuzzle(self.puzzle, output)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """``(P, 3, t, s, s)``: ``P`` cubes of ``cube_len`` frames, ``out_size`` square."""
        return self.policy(True, ClipOutput()).sample_shape

    def build(self, cfg: TrainConfig, class_names: list[str]) -> Setup:
        """A ``PuzzleNet`` on a headless backbone (the manifest's classes are not used); the checkpoint
        records its head options under ``puzzle``."""
        sampler = self.puzzle
        backbone = create_model(cfg.model.arch, num_classes=0, **cfg.model.model_kwargs())
        puzzle_kwargs: dict[str, Any] = {
            "num_pieces": self.policy(True, ClipOutput()).pieces,
            "num_perm_classes": sampler.num_perm_classes,
            "rotation_classes": sampler.rotation_classes,
        }
        if cfg.puzzle.hidden is not None:
            puzzle_kwargs["hidden"] = cfg.puzzle.hidden
        model = PuzzleNet(backbone, **puzzle_kwargs)
        groups = [{"params": list(model.parameters())}]
        return Setup(model, [], backbone.num_classes, groups, run_convention(cfg),
                     checkpoint_extra={"puzzle": puzzle_kwargs}, arch=cfg.model.arch,
                     model_kwargs=cfg.model.model_kwargs())

    def step(self, model: nn.Module, batch: Batch, device: torch.device, channels_last: bool) -> StepOutput:
        """Forward + loss of one puzzle batch (call under autocast)."""
        video = to_device(batch.video, device, channels_last)
        perm_label = batch.targets["perm_label"].to(device, non_blocking=True)
        out = model(video)
        result = _scored(out.perm, perm_label, self.label_smoothing)
        result.loss = self.permutation_weight * result.loss
        if out.rot.shape[-1] > 0:
            rot_label = batch.targets["rot_label"].to(device, non_blocking=True).flatten()
            rot_logits = out.rot.float().flatten(0, 1)
            result.loss = result.loss + self.rotation_weight * F.cross_entropy(rot_logits, rot_label)
            result.rot_correct = (rot_logits.detach().argmax(1) == rot_label).sum()
            result.rot_count = rot_label.numel()
        return result

    def blank_batch(self, size: int = 1) -> Batch:
        """``video`` ``Tensor[size, P, C, t, h, w]`` of zeros, every label 0."""
        shape = self.sample_shape
        targets = {"perm_label": torch.zeros(size, dtype=torch.long),
                   "rot_label": torch.zeros(size, shape[0], dtype=torch.long)}
        return Batch((torch.zeros(size, *shape),), torch.zeros(size, dtype=torch.long), targets)


TASKS: dict[str, type[Task]] = {task.name: task for task in (ClassifyTask, PuzzleTask)}


def make_task(cfg: TrainConfig) -> Task:
    """The task object of ``cfg.task``."""
    try:
        return TASKS[cfg.task].from_config(cfg)
    except KeyError:
        raise VidfastError(f"unknown task {cfg.task!r} (known: {', '.join(TASKS)})") from None

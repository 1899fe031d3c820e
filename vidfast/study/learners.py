"""Model selection and the final fit of one cell, the same procedure for every row of the study.

A cell is one initialisation fine-tuned on the ``k`` labelled videos per class of one seed. Its labelled
subset is split in half per class (:func:`~vidfast.study.sets.holdout_split`): for every rate of the grid a
network trains on one half for a long budget of steps at that constant rate (after a short warmup) and is
scored on the other half every ``val_every`` steps; the (rate, steps) with the best validation accuracy
(ties: lower validation loss, then the earlier) is the cell's ``selected`` setting. The network is then
trained again on the whole subset with that setting, and the test set is scored once. The test videos are
not touched before that last step: :func:`select` sees only the labelled bank.

Two learners implement it: :class:`NetworkLearner` trains every layer (clips held in memory, the engine's
classification task and optimizer); :class:`ProbeLearner` trains a linear classifier on frozen features of a
network (a linear probe).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidfast.data.batch import Batch
from vidfast.engine.config import Geometry, Recipe
from vidfast.study.config import Selection
from vidfast.study.sets import VideoBank


class Learner(Protocol):
    """Trains one initialisation on labelled videos and scores videos with the result."""

    def curve(
        self, lr: float, train: Sequence[int], val: Sequence[int], steps: int, every: int, seed: int
    ) -> list[dict[str, float]]:
        """Validation accuracy and loss of ``val`` every ``every`` steps of training on ``train``."""
        ...

    def final(self, lr: float, steps: int, train: Sequence[int], seed: int) -> Tensor:
        """Test-set class probabilities ``Tensor[videos, classes]`` after ``steps`` steps on ``train``."""
        ...


def curves(
    learner: Learner, selection: Selection, train: Sequence[int], val: Sequence[int], steps: int, seed: int
) -> dict[str, list[dict[str, float]]]:
    """The selection runs of a cell: ``{str(lr): curve}`` for every rate of the grid, ``steps`` long."""
    return {str(lr): learner.curve(lr, train, val, steps, selection.val_every, seed) for lr in selection.lrs}


def select(runs: dict[str, list[dict[str, float]]], max_steps: int) -> dict[str, Any]:
    """The (rate, steps) of the best validation accuracy within ``max_steps`` (ties: lower validation loss,
    then the first in grid and step order)."""
    best: dict[str, Any] | None = None
    for lr, curve in runs.items():
        for point in curve:
            if point["step"] > max_steps:
                continue
            better = best is None or (point["val_acc"], -point["val_loss"]) > (
                best["val_acc"],
                -best["val_loss"],
            )
            if better:
                best = {
                    "lr": float(lr),
                    "steps": int(point["step"]),
                    "val_acc": point["val_acc"],
                    "val_loss": point["val_loss"],
                }
    if best is None:
        raise ValueError(f"no validation point within {max_steps} steps")
    return best


def _metrics(probs: Tensor, labels: Tensor) -> tuple[float, float]:
    """Accuracy and mean negative log-likelihood of ``probs`` ``Tensor[N, C]`` for ``labels``."""
    accuracy = float((probs.argmax(1) == labels).float().mean())
    loss = float(-probs.gather(1, labels[:, None]).clamp_min(1e-8).log().mean())
    return accuracy, loss


def _positions(frames: int, clip_len: int, clips: int) -> list[int]:
    """``clips`` evenly spaced first frames of clips of ``clip_len`` in ``frames`` frames."""
    return [int(round(p)) for p in np.linspace(0, frames - clip_len, clips)]


class NetworkLearner:
    """Fine-tunes every layer of a network, from random initialisation (``checkpoint`` None; the seed sets
    the weights) or from a checkpoint (any the engine's fine-tuning reads), with SGD at a constant rate, on
    random clips of in-memory videos (no flips: they change the synthetic classes). fp32 throughout."""

    def __init__(
        self,
        geometry: Geometry,
        checkpoint: str | None,
        labelled: VideoBank,
        test: VideoBank,
        class_names: list[str],
        eval_clips: int,
        selection: Selection,
        weight_decay: float = 1e-4,
    ) -> None:
        from vidfast.devices import resolve_device

        self.geometry, self.checkpoint = geometry, checkpoint
        self.labelled, self.test, self.class_names = labelled, test, class_names
        self.eval_clips, self.selection, self.weight_decay = eval_clips, selection, weight_decay
        self.device = resolve_device(geometry.device)

    def _setup(self, lr: float, seed: int) -> tuple[nn.Module, Any, Any, Any, Any]:
        from vidfast.engine.config import small_run_config
        from vidfast.engine.optim import Schedule, build_optimizer
        from vidfast.engine.tasks import ClassifyTask

        cfg = small_run_config(
            self.geometry,
            Recipe("sgd", lr, self.weight_decay, "constant"),
            "classify",
            "",
            "",
            epochs=1,
            seed=seed,
            init=self.checkpoint,
        )
        # warmup in epochs of one step: the schedule counts steps
        cfg = replace(cfg, optim=replace(cfg.optim, warmup_epochs=float(self.selection.warmup)))
        torch.manual_seed(seed)
        task = ClassifyTask.from_config(cfg)
        setup = task.build(cfg, self.class_names)
        model = setup.model.to(self.device, memory_format=torch.channels_last_3d)
        optimizer = build_optimizer(setup.param_groups, cfg.optim)
        return model, task, optimizer, Schedule(optimizer, cfg.optim, 1, 1), setup.convention

    def _train(
        self, lr: float, train: Sequence[int], steps: int, seed: int, every: int = 0, val: Sequence[int] = ()
    ) -> tuple[nn.Module, Any, list[dict[str, float]]]:
        model, task, optimizer, schedule, convention = self._setup(lr, seed)
        rng = np.random.default_rng([seed, 77])
        batch = min(self.geometry.batch_size, len(train))
        frames, clip_len = self.labelled.frames.shape[1], self.geometry.clip_len
        order: list[int] = []
        points = []
        for step in range(1, steps + 1):
            if len(order) < batch:
                order += [train[i] for i in rng.permutation(len(train))]
            pick, order = order[:batch], order[batch:]
            starts = rng.integers(0, frames - clip_len + 1, size=len(pick))
            clips = self.labelled.clips(pick, starts, clip_len, convention.unit_mean, convention.unit_std)
            model.train()
            out = task.step(model, Batch((clips,), self.labelled.labels[pick]), self.device, True)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            schedule.step()
            if every and step % every == 0:
                accuracy, loss = _metrics(
                    self._scores(model, convention, self.labelled, val), self.labelled.labels[list(val)]
                )
                points.append({"step": step, "val_acc": accuracy, "val_loss": loss})
        return model, convention, points

    @torch.no_grad()
    def _scores(self, model: nn.Module, convention: Any, bank: VideoBank, index: Sequence[int]) -> Tensor:
        """Class probabilities ``Tensor[len(index), C]``: softmax averaged over ``eval_clips`` clips."""
        model.eval()
        clip_len = self.geometry.clip_len
        positions = _positions(bank.frames.shape[1], clip_len, self.eval_clips)
        index = list(index)
        total = torch.zeros(len(index), len(self.class_names))
        for start in positions:
            for at in range(0, len(index), 64):
                part = index[at : at + 64]
                clips = bank.clips(
                    part, [start] * len(part), clip_len, convention.unit_mean, convention.unit_std
                )
                total[at : at + len(part)] += model(clips.to(self.device)).float().softmax(1).cpu()
        return total / len(positions)

    def curve(
        self, lr: float, train: Sequence[int], val: Sequence[int], steps: int, every: int, seed: int
    ) -> list[dict[str, float]]:
        return self._train(lr, train, steps, seed, every, val)[2]

    def final(self, lr: float, steps: int, train: Sequence[int], seed: int) -> Tensor:
        model, convention, _ = self._train(lr, train, steps, seed)
        return self._scores(model, convention, self.test, range(len(self.test.labels)))


class ProbeLearner:
    """A linear classifier on the frozen pooled features of a network (random init from the seed, or a
    checkpoint): features of ``eval_clips`` evenly spaced clips per video, standardised with the training
    videos' statistics; full-batch SGD (momentum 0.9) on the clips' features; a video's probabilities are the
    softmax averaged over its clips."""

    def __init__(self, network: NetworkLearner, seed: int) -> None:
        model, _, _, _, convention = network._setup(0.0, seed)
        model.eval()
        every = range(len(network.labelled.labels)), range(len(network.test.labels))
        self.labelled = self._features(network, model, convention, network.labelled, every[0])
        self.test = self._features(network, model, convention, network.test, every[1])
        self.labels = network.labelled.labels
        self.classes = len(network.class_names)

    @staticmethod
    @torch.no_grad()
    def _features(
        network: NetworkLearner, model: nn.Module, convention: Any, bank: VideoBank, index: Sequence[int]
    ) -> Tensor:
        """``Tensor[videos, clips, features]``."""
        clip_len = network.geometry.clip_len
        index = list(index)
        per_clip = []
        for start in _positions(bank.frames.shape[1], clip_len, network.eval_clips):
            parts = []
            for at in range(0, len(index), 64):
                part = index[at : at + 64]
                clips = bank.clips(
                    part, [start] * len(part), clip_len, convention.unit_mean, convention.unit_std
                )
                parts.append(model.forward_features(clips.to(network.device)).float().cpu())
            per_clip.append(torch.cat(parts))
        return torch.stack(per_clip, 1)

    def _train(
        self, lr: float, train: Sequence[int], steps: int, seed: int, every: int = 0, val: Sequence[int] = ()
    ) -> tuple[nn.Module, Tensor, Tensor, list[dict[str, float]]]:
        torch.manual_seed(seed)
        x = self.labelled[list(train)]  # [n, clips, D]
        mean, std = x.flatten(0, 1).mean(0), x.flatten(0, 1).std(0) + 1e-6
        y = self.labels[list(train)].repeat_interleave(x.shape[1])
        layer = nn.Linear(x.shape[-1], self.classes)
        optimizer = torch.optim.SGD(layer.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
        inputs = ((x - mean) / std).flatten(0, 1)
        points = []
        for step in range(1, steps + 1):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(layer(inputs), y).backward()
            optimizer.step()
            if every and step % every == 0:
                probs = self._scores(layer, mean, std, self.labelled[list(val)])
                accuracy, loss = _metrics(probs, self.labels[list(val)])
                points.append({"step": step, "val_acc": accuracy, "val_loss": loss})
        return layer, mean, std, points

    @staticmethod
    @torch.no_grad()
    def _scores(layer: nn.Module, mean: Tensor, std: Tensor, features: Tensor) -> Tensor:
        return layer((features - mean) / std).softmax(-1).mean(1)

    def curve(
        self, lr: float, train: Sequence[int], val: Sequence[int], steps: int, every: int, seed: int
    ) -> list[dict[str, float]]:
        return self._train(lr, train, steps, seed, every, val)[3]

    def final(self, lr: float, steps: int, train: Sequence[int], seed: int) -> Tensor:
        layer, mean, std, _ = self._train(lr, train, steps, seed)
        return self._scores(layer, mean, std, self.test)

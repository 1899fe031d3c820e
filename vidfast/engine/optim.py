"""Optimizers (SGD with momentum/Nesterov, AdamW) and one learning-rate scheduler for every schedule.

``Schedule`` is stepped once per optimizer step (``step()``) and told about each finished epoch
(``epoch_end(metric)``, used by the plateau schedule). The rate of each parameter group is
``min_lr + (group_base_lr - min_lr) * warmup(step) * decay(epoch or step) * plateau_factor``, so parameter
groups with their own base rates (fine-tuning) keep their ratios. Its state dict holds only numbers
(checkpoint-safe).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from vidfast.engine.config import OptimConfig

ParamsLike = Iterable[nn.Parameter] | Iterable[dict[str, Any]]


def build_optimizer(params: ParamsLike, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, dampening, Nesterov, L2 weight decay) or AdamW (decoupled weight decay) from ``cfg``.

    ``params`` are parameters or param-group dicts (a group's own ``lr``/``weight_decay`` win over ``cfg``).
    Parameters with ``requires_grad=False`` are dropped; an empty result is an error.
    """
    groups = []
    for group in params:
        group = dict(group) if isinstance(group, dict) else {"params": [group]}
        group["params"] = [p for p in group["params"] if p.requires_grad]
        if group["params"]:
            groups.append(group)
    if not groups:
        raise ValueError("optimizer: no trainable parameters (check finetune.begin_module)")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=cfg.lr,
            momentum=cfg.momentum,
            dampening=cfg.dampening,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=cfg.lr, betas=(cfg.betas[0], cfg.betas[1]), weight_decay=cfg.weight_decay
        )
    raise ValueError(f"optimizer: unknown optimizer {cfg.optimizer!r} (sgd or adamw)")


class Schedule:
    """Warmup + constant/step/multistep/cosine/plateau decay of every parameter group's rate.

    Args:
        optimizer: the optimizer whose groups' ``lr`` it sets (their current ``lr`` is taken as the base
        rate). cfg: schedule fields of the optimizer config.
        steps_per_epoch: optimizer steps per epoch (warmup and cosine are step-based).
        epochs: total epochs (length of the cosine decay).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: OptimConfig, steps_per_epoch: int, epochs: int):
        if steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1")
        self.optimizer = optimizer
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * epochs
        self.warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
        self.base_lrs = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self.step_count = 0
        self.plateau_factor = 1.0
        self.plateau_best = math.inf
        self.plateau_bad_epochs = 0
        self._apply()

    def factor(self, step: int) -> float:
        """Multiplier of the base rates at optimizer step ``step`` (0-based; plateau factor included)."""
        cfg = self.cfg
        warm = 1.0
        if step < self.warmup_steps:
            warm = cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * step / self.warmup_steps
        epoch = step // self.steps_per_epoch
        if cfg.schedule == "step":
            decay = cfg.gamma ** (epoch // cfg.step_size)
        elif cfg.schedule == "multistep":
            decay = cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        elif cfg.schedule == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, max(0, step - self.warmup_steps) / span)
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:  # constant, plateau
            decay = 1.0
        return warm * decay * self.plateau_factor

    def _apply(self) -> None:
        factor = self.factor(self.step_count)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            floor = min(self.cfg.min_lr, base)
            group["lr"] = floor + (base - floor) * factor

    def step(self) -> None:
        """Advance one optimizer step."""
        self.step_count += 1
        self._apply()

    def epoch_end(self, metric: float | None) -> None:
        """End of an epoch; ``metric`` (lower is better, e.g. validation loss) drives the plateau schedule."""
        if self.cfg.schedule != "plateau" or metric is None or not math.isfinite(metric):
            return
        if self.plateau_best == math.inf or metric < self.plateau_best - 1e-4 * abs(self.plateau_best):
            self.plateau_best = metric
            self.plateau_bad_epochs = 0
        else:
            self.plateau_bad_epochs += 1
            if self.plateau_bad_epochs > self.cfg.plateau_patience:
                self.plateau_factor *= self.cfg.gamma
                self.plateau_bad_epochs = 0
        self._apply()

    @property
    def lr(self) -> float:
        """Current rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "plateau_factor": self.plateau_factor,
            "plateau_best": self.plateau_best,
            "plateau_bad_epochs": self.plateau_bad_epochs,
            "base_lrs": list(self.base_lrs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_factor = float(state["plateau_factor"])
        self.plateau_best = float(state["plateau_best"])
        self.plateau_bad_epochs = int(state["plateau_bad_epochs"])
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self._apply()

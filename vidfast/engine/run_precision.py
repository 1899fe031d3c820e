"""The precision a training run takes (see :mod:`vidfast.runtime.precision`), measured on the run's own model,
task and clip shape."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from vidfast.engine.config import TrainConfig
from vidfast.engine.distributed import DistInfo, broadcast_object
from vidfast.engine.optim import build_optimizer
from vidfast.engine.tasks import Task, to_device
from vidfast.errors import VidfastError
from vidfast.progress import on_terminal_only
from vidfast.runtime import PRECISIONS, PrecisionPlan, plan_precision, route_to_fp32


def plan_run_precision(cfg: TrainConfig, model: nn.Module, task: Task, clip_shape: tuple[int, ...],
                       device: torch.device, info: DistInfo, recorded: str | None) -> PrecisionPlan:
    """The run's precision (``vidfast.runtime.precision``): forced by ``runtime.amp``, else ``recorded``
    (``runtime.precision``, or the resumed checkpoint's), else measured with one training step of a copy of
    ``model`` per candidate. Under DDP every rank takes rank 0's and also routes rank 0's failing layers to
    fp32."""
    rt = cfg.runtime
    example = to_device(torch.zeros(1, *clip_shape), device, rt.channels_last)

    def probe_step(name: str) -> Callable[[], float]:
        """One training step in precision ``name`` of a copy of the model, with an optimizer of the run's
        kind at learning rate 0, on a random batch of the run's shape and dtype (the run's model and optimizer
        stay as they are). At rate 0 every step does the same work on the same weights: trained on its
        constant label, the copy's loss reaches 0 within a step and the next one took 50-400 s here."""
        copied = copy.deepcopy(model)
        optimizer = build_optimizer([{"params": list(copied.parameters())}], cfg.optim)
        for group in optimizer.param_groups:
            group["lr"] = 0.0
        dtype, size = PRECISIONS[name], cfg.data.batch_size
        noise = torch.randn(size, *clip_shape, generator=torch.Generator().manual_seed(0))
        batch = replace(task.blank_batch(size), videos=(noise.to(dtype),))

        def step() -> float:
            with torch.autocast(device.type, dtype=dtype, enabled=name != "fp32"):
                out = task.step(copied, batch, device, rt.channels_last)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            return float(out.loss.detach())

        return step

    try:
        plan = plan_precision([(model, example)], cfg.data.batch_size, device, probe_step, amp=rt.amp,
                              amp_dtype=rt.amp_dtype, recorded=recorded,
                              progress=on_terminal_only(rt.progress) if info.is_main else "none")
    except ValueError as exc:
        raise VidfastError(f"runtime.amp_dtype: {exc}") from None
    if info.enabled:
        plan = broadcast_object(plan, info)
        if plan.dtype is not None:
            route_to_fp32(model, {layer: [plan.dtype] for layer in plan.fp32_layers}, checked=[plan.dtype])
    return plan

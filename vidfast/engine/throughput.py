"""Training throughput of a configuration on this machine (``vidfast bench``, ``bench/test_train.py``)."""

from __future__ import annotations

import time

import torch

from vidfast.data.batch import Batch
from vidfast.engine.config import TrainConfig
from vidfast.engine.run import build_run
from vidfast.engine.trainer import Trainer


def measure_training_throughput(
    config: TrainConfig, steps: int = 4, warmup: int = 1, in_memory: bool = False
) -> float:
    """Training clips/s of ``config``'s setup on this machine, without writing checkpoints.

    ``in_memory=False``: the whole pipeline (loader + step, batches as they come); ``True``: the step alone,
    repeating the loader's first batch held in memory. ``warmup`` steps are not timed.
    """
    trainer = Trainer(build_run(config))
    trainer.close()
    batches = trainer.batches(0)
    first = next(batches)

    def next_batch() -> Batch:
        if in_memory:
            return first
        try:
            return next(batches)
        except StopIteration as exc:
            raise ValueError(f"the train split has fewer than {warmup + steps} batches") from exc

    clips, started = 0, 0.0
    for i in range(warmup + steps):
        if i == warmup:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            clips, started = 0, time.perf_counter()
        out = trainer.train_step(first if i == 0 else next_batch())
        clips += out.count
    float(out.loss.detach())  # wait for the device
    return clips / (time.perf_counter() - started)

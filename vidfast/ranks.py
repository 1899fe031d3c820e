"""This process's rank in a ``torch.distributed`` job: the one answer to "am I rank 0, and of how many?".

Imports nothing of vidfast, so data loading, the engine and the command line all ask the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist


@dataclass(frozen=True)
class Rank:
    """``rank`` of ``world_size`` processes (0 of 1 outside a distributed job)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1


def launched_rank() -> Rank:
    """The rank ``torchrun`` gave this process (``RANK``/``WORLD_SIZE`` in the environment), whether or not
    the process group is initialised (yet, or still)."""
    return Rank(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def current_rank(distributed: bool | None = None) -> Rank:
    """Rank and world size of ``torch.distributed`` when it is initialised.

    ``distributed``: None (auto), False (always ``Rank()``), True (ValueError unless initialised).
    """
    active = dist.is_available() and dist.is_initialized()
    if distributed and not active:
        raise ValueError("distributed=True but torch.distributed is not initialised")
    if distributed is False or not active:
        return Rank()
    return Rank(dist.get_rank(), dist.get_world_size())

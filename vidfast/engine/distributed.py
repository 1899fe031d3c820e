"""Distributed data parallel helpers: set up from ``torchrun``'s environment, reduce metrics, agree on
stopping.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) ``init_distributed`` joins the process group (NCCL
on CUDA, gloo on CPU); otherwise everything here degrades to single-process no-ops, so one code path serves
both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

from vidfast.errors import VidfastError
from vidfast.ranks import Rank, launched_rank

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo(Rank):
    """This process's place in the job: its :class:`~vidfast.ranks.Rank`, its GPU index on the node, and
    whether ``init_distributed`` created the process group."""

    local_rank: int = 0
    owns_group: bool = False


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group described by ``torchrun``'s environment variables, if any.

    Args:
        device_type: "cuda" (NCCL backend, one GPU per local rank) or "cpu" (gloo).
    """
    launched = launched_rank()
    if not launched.enabled:
        return DistInfo()
    rank, world_size = launched.rank, launched.world_size
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns_group = not dist.is_initialized()
    if owns_group:
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            raise VidfastError("WORLD_SIZE > 1 but MASTER_ADDR/MASTER_PORT are not set: launch with torchrun")
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        store = _generation_store(world_size)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, store=store)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, owns_group=owns_group)


def _generation_store(world_size: int) -> dist.Store | None:
    """The store of this generation of ranks under ``torchrun``, else None (``init_process_group`` makes one).

    torchrun's store (``TORCHELASTIC_USE_AGENT_STORE``) outlives the ranks it restarts, with the connection
    keys of the ranks that died in it: a restarted rank that read those before its peer rewrote them would
    fail to connect ("Connection refused"). So every rank counts itself in, and each ``world_size`` ranks
    in a row (one restart of the whole job, on however many nodes) get their own key prefix. (A rank that
    dies before counting itself in shifts the count for the restarts after it; with
    ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, which the README recommends, every restart gets a new store
    and this is not used.)
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=False, timeout=default_pg_timeout)
    generation = (store.add("vidfast/ranks_started", 1) - 1) // world_size
    return dist.PrefixStore(f"vidfast/generation-{generation}/", store)


def all_reduce_sum(values: list[float], device: torch.device, info: DistInfo) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (identity on one process)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_rank(flags: Sequence[bool], device: torch.device, info: DistInfo) -> list[bool]:
    """For each flag: true on at least one rank (one all-reduce; so that every rank stops at the same
    step)."""
    if not info.enabled:
        return [bool(f) for f in flags]
    return [v > 0 for v in all_reduce_sum([float(f) for f in flags], device, info)]


def broadcast_object(obj: T, info: DistInfo) -> T:
    """Rank 0's ``obj`` (any picklable object) on every rank (``obj`` itself on one process)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: T, info: Rank) -> list[T]:
    """Every rank's ``obj`` (picklable), by rank, on every rank (``[obj]`` on one process)."""
    if not info.enabled:
        return [obj]
    gathered: list[T] = [obj] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (batch-norm statistics), as DDP does before each forward."""
    if info.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group if ``init_distributed`` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()

"""``make_loader``: manifest + clip policy -> batches (:class:`~vidfast.data.batch.Batch`) of network-ready
samples (clips, cubic puzzles), for training and validation (a sample per item) and evaluation (a video per
item).

Decoding runs in DataLoader worker processes and yields uint8 frames; the policy's ``cube_crop`` (crop,
resize, flip, rotate, channel replication, normalise, written in the policy's layout) then runs in the same
worker by default. Measured with
``bench/test_data.py`` on 2 CPU cores (native ``cube_crop``, 2 workers, batch 8): cropping in the workers
gave 45 vs 31 clips/s (128-px H.264) and 17.0 vs 16.5 (320x240) against batching ``cube_crop`` in the main
process, which serialises the crop and moves full-resolution frames between processes. With DALI on a
GPU the order flips: workers only read files, and the main process decodes the batch with NVDEC and crops it
on the GPU, so frames never leave device memory.

Randomness: sample ``i`` of epoch ``e`` draws from a generator seeded by ``(seed, e, i)``, and the shuffling
order from ``seed + e``; a run is reproducible per (seed, epoch) whatever the number of workers, and the
epoch reaches persistent workers through the sampler (which yields ``(epoch, index)`` keys).
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from vidfast.data.batch import Batch, Skip
from vidfast.data.dataset import ClipDataset, Item
from vidfast.data.decoders import Deferred, decode_deferred, defers
from vidfast.data.policies import ClipPolicy
from vidfast.data.reader import cut_clips
from vidfast.errors import DataError
from vidfast.ranks import Rank, current_rank

log = logging.getLogger("vidfast.data")


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(epoch, index)`` for this rank: a seeded permutation per epoch (``shuffle``), padded by
    wrapping around to a multiple of the world size (``pad``: every rank gets as many samples, as ranks that
    step together need; without it every sample comes exactly once, as exact evaluation needs) and split
    round-robin like ``DistributedSampler``. ``start`` skips that many of this rank's first samples (resuming
    mid-epoch; ``len`` stays the epoch's)."""

    def __init__(self, num_samples: int, shuffle: bool, seed: int = 0, shard: Rank = Rank(),
                 pad: bool = True) -> None:
        self.num_samples = num_samples
        self.pad = pad
        self.shuffle = shuffle
        self.seed = seed
        self.shard = shard
        self.epoch = 0
        self.start = 0

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.num_samples / self.shard.world_size)
        return len(range(self.shard.rank, self.num_samples, self.shard.world_size))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        if self.pad:
            total = len(self) * self.shard.world_size
            order = (order * math.ceil(total / max(len(order), 1)))[:total]
        mine = order[self.shard.rank :: self.shard.world_size][self.start :]
        return iter([(self.epoch, i) for i in mine])


@dataclass
class Collated:
    """What a worker hands over: the ``batch`` (without ``videos`` while ``uncut`` items wait to be cut in
    this process), and the ``(path, manifest frames, decoder frames)`` of its videos whose counts differ."""

    batch: Batch
    uncut: list[Item]
    mismatched: list[tuple[str, int, int]]

    def pin_memory(self) -> Collated:
        """Page-locked copies of the tensors bound for the device (``DataLoader(pin_memory=True)``)."""
        batch = replace(self.batch, videos=tuple(v.pin_memory() for v in self.batch.videos))
        for item in self.uncut:
            if isinstance(item.frames, torch.Tensor):
                item.frames = item.frames.pin_memory()
        return Collated(batch, self.uncut, self.mismatched)


def collate(items: list[Item]) -> Collated:
    """Group worker items into a batch: the read ones stacked (in the layout the policy wrote), the others as
    :class:`Skip`; items still to be cut travel as they are."""
    good = [it for it in items if it.skipped is None]
    skipped = tuple(Skip(it.path, it.skipped) for it in items if it.skipped is not None)
    mismatched = [(it.path, *it.mismatch) for it in items if it.mismatch is not None]
    if not good:
        return Collated(Batch.empty(skipped), [], mismatched)
    uncut = [] if good[0].videos is not None else good
    return Collated(assemble(good, skipped), uncut, mismatched)


def assemble(items: list[Item], skipped: tuple[Skip, ...], videos: Sequence[torch.Tensor] = ()) -> Batch:
    """The batch of read ``items`` (their own ``videos`` when cut, else ``videos``)."""
    if items[0].videos is not None:
        videos = [_concat([it.videos[j] for it in items]) for j in range(len(items[0].videos))]  # type: ignore[index]
    return Batch(
        videos=tuple(videos),
        label=torch.tensor([it.label for it in items for _ in range(it.samples)], dtype=torch.long),
        targets={name: torch.cat([it.targets[name] for it in items]).long() for name in items[0].targets},
        video_index=torch.tensor([it.video_index for it in items for _ in range(it.samples)]).long(),
        clip_index=torch.cat([torch.arange(it.samples) + it.clip_index for it in items]),
        skipped=skipped,
    )


def _concat(values: list[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along dim 0 that keeps the items' memory layout (channels-last clips stay so)."""
    first = values[0]
    order = sorted(range(1, first.dim()), key=first.stride, reverse=True)
    out = first.new_empty((sum(len(v) for v in values), *(first.shape[d] for d in order)))
    out = out.permute(0, *(order.index(d) + 1 for d in range(1, first.dim())))
    at = 0
    for value in values:
        out[at:at + len(value)].copy_(value)
        at += len(value)
    return out


class VideoLoader:
    """Iterable of :class:`Batch` (see ``make_loader``); ``set_epoch(e)`` before each epoch reshuffles and
    reseeds. ``num_skipped`` counts the videos that could not be read (a warning for each the first time);
    ``mismatched`` the videos whose decoder counts other frames than the manifest (a warning each)."""

    def __init__(
        self,
        dataset: ClipDataset,
        sampler: EpochSampler,
        loader: torch.utils.data.DataLoader,
        class_names: list[str],
        device: torch.device,
        empty_batches: bool = False,
    ) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.loader = loader
        self.class_names = class_names
        self.device = device
        self.empty_batches = empty_batches
        self.num_skipped = 0
        #: path -> (manifest frames, decoder frames)
        self.mismatched: dict[str, tuple[int, int]] = {}
        self._logged: set[str] = set()

    @property
    def rows(self) -> Sequence[Any]:
        """The manifest rows this loader reads (``Batch.video_index`` indexes them), over all ranks."""
        return self.dataset.rows

    @property
    def num_videos(self) -> int:
        """Videos (manifest rows) this loader reads, over all ranks."""
        return len(self.dataset.rows)

    @property
    def num_samples(self) -> int:
        """Items over all ranks: (video, clip) samples, or videos in per-video mode."""
        return len(self.dataset)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Reshuffle and reseed for ``epoch``; the epoch's iteration begins at its batch ``start_batch``
        (the batches before it are neither loaded nor decoded)."""
        self.sampler.epoch = epoch
        self.sampler.start = start_batch * (self.loader.batch_size or 1)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for collated in self.loader:
            self._report(collated)
            batch = self._cut(collated.batch, collated.uncut) if collated.uncut else collated.batch
            if batch.videos or self.empty_batches:
                yield batch

    def _report(self, collated: Collated) -> None:
        for skip in collated.batch.skipped:
            self.num_skipped += 1
            if skip.path not in self._logged:
                self._logged.add(skip.path)
                log.warning("skipping undecodable video %s: %s", skip.path, skip.reason)
        for path, listed, decoded in collated.mismatched:
            if path not in self.mismatched:
                self.mismatched[path] = (listed, decoded)
                log.warning("%s: the manifest counts %d frames, the decoder %d; read as the decoder counts "
                            "(index the dataset again to update the manifest)", path, listed, decoded)

    def _cut(self, batch: Batch, items: list[Item]) -> Batch:
        """Cut the items that came uncut (``crop_in="main"`` or a deferred decode) on the device. A deferred
        batch that fails to decode is retried one video at a time so that only the bad ones are skipped."""
        frames = [it.frames for it in items]
        pending = [i for i, f in enumerate(frames) if isinstance(f, Deferred)]
        failed: list[Skip] = []
        if pending:
            try:
                for i, value in zip(pending, decode_deferred([frames[i] for i in pending], self.device),
                                    strict=True):
                    frames[i] = value
            except DataError:
                for i in pending:
                    try:
                        (frames[i],) = decode_deferred([frames[i]], self.device)
                    except DataError as exc:
                        failed.append(Skip(items[i].path, str(exc)))
                        frames[i] = None
        if failed:
            self._report(Collated(Batch.empty(tuple(failed)), [], []))
            keep = [i for i, f in enumerate(frames) if f is not None]
            if not keep:
                return Batch.empty(batch.skipped + tuple(failed))
            items, frames = [items[i] for i in keep], [frames[i] for i in keep]
            batch = assemble(items, batch.skipped + tuple(failed))
        on_device = [f.to(self.device, non_blocking=True) for f in frames]  # type: ignore[union-attr]
        videos = cut_clips(self.dataset.policies, on_device, [it.plan.params for it in items])  # type: ignore[union-attr]
        return replace(batch, videos=tuple(videos))


@dataclass(frozen=True)
class LoaderConfig:
    """How a loader reads and batches (what it cuts is the policy's business).

    ``shuffle`` defaults to ``split == "train"``. ``drop_last``: drop a last partial batch. ``crop_in``:
    ``"worker"`` cuts clips in the DataLoader workers, ``"main"`` batches ``cube_crop`` in the main process.
    ``empty_batches``: a batch whose videos all failed comes as ``{"skipped": n}`` (so that a DDP rank still
    takes its step) instead of being dropped. ``pad_shards``: under DDP repeat samples so that every rank gets
    as many (training); False gives every sample to exactly one rank (validation). ``per_video``: an item is
    a whole video, every sample of each policy (``batch_size`` then counts videos), and every video goes to
    exactly one rank, unpadded (evaluation). ``device="cuda"`` with a
    backend that defers there (DALI) decodes on the GPU and returns CUDA batches. ``distributed``: None
    follows ``torch.distributed``. ``ignore_signals``: signal numbers the workers ignore (a training loop's
    stop signals: sent to the whole process group, they must reach the main process only, which ends the
    workers; a worker killed by one would end the run with "DataLoader worker ... is killed by signal").
    """

    backend: str = "auto"
    batch_size: int = 8
    workers: int = 2
    seed: int = 0
    shuffle: bool | None = None
    drop_last: bool = False
    pin_memory: bool = False
    device: str = "cpu"
    crop_in: str = "worker"
    prefetch_factor: int = 2
    empty_batches: bool = False
    pad_shards: bool = True
    per_video: bool = False
    distributed: bool | None = None
    ignore_signals: tuple[int, ...] = ()

    @classmethod
    def take(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Remove this config's fields from ``options`` (a run config's ``data.loader``) and return them."""
        return {f.name: options.pop(f.name) for f in fields(cls) if f.name in options}


def make_loader(manifest: Any, policy: ClipPolicy | Sequence[ClipPolicy],
                config: LoaderConfig = LoaderConfig(), split: str = "train") -> VideoLoader:
    """Batches (:class:`Batch`) of ``manifest``'s ``split`` rows (``status == ok``) sampled and cut by
    ``policy`` (in per-video mode one or more policies, read together in one decode of each video).

    A batch's ``videos`` hold ``[N, *policy.sample_shape]`` per policy in the policy's dtype and layout, its
    ``label`` the rows' classes, ``targets`` the policy's labels (the puzzle's ``perm_label`` ``[N]``,
    ``rot_label`` ``[N, 4]``, ``kind`` ``[N]``), ``video_index``/``clip_index`` which sample of which row each
    is (every (video, sample) of the policy is one sample of the loader), and ``skipped`` the videos of the
    batch that failed to decode (``loader.num_skipped`` counts them all; a batch may then be smaller than
    ``batch_size``; see :class:`LoaderConfig` for a batch where all failed).
    """
    from vidfast.data.manifest import Manifest, read_manifest

    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    rows = manifest.table(split)
    if not len(rows):
        raise DataError(f"no usable '{split}' rows in the manifest ({manifest.root})")
    device = torch.device(config.device)
    dataset = ClipDataset(rows, policy, backend=config.backend, crop_in=config.crop_in, device=device,
                          deferred=defers(config.backend, device), seed=config.seed,
                          per_video=config.per_video)
    shuffle = split == "train" if config.shuffle is None else config.shuffle
    rank = current_rank(config.distributed)
    sampler = EpochSampler(len(dataset), shuffle, config.seed, rank,
                           pad=config.pad_shards and not config.per_video)
    workers = config.workers
    served = workers > 0 and rank.world_size > 1  # workers start from the fork server (see _fork_server)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=config.pin_memory,
        drop_last=config.drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=config.prefetch_factor if workers > 0 else None,
        multiprocessing_context=_fork_server() if served else None,
        worker_init_fn=functools.partial(_init_worker, tuple(config.ignore_signals),
                                         os.getpid() if served else None),
    )
    if config.ignore_signals and workers > 0:
        _kill_workers_at_exit()
    return VideoLoader(dataset, sampler, loader, manifest.class_names, device, config.empty_batches)


@functools.cache
def _fork_server() -> multiprocessing.context.BaseContext:
    """Where the workers of a distributed rank start: a fork server, a process with no threads but its own.

    A rank runs threads besides its main one (the process group's among them). A worker forked while one of
    them held CPython's thread-list lock inherits the lock held, and on CPython before 3.11.10 / 3.10.15
    (gh-112275) hangs in ``fork`` itself, its rank waiting for it forever: 3 of 27 two-rank test runs here
    (Python 3.11.7), each at the first validation, the child blocked on that lock in
    ``PyOS_AfterFork_Child``. Forked from the server, a worker inherits no other thread's lock. The server
    imports this module (and so torch) once, before it forks any worker."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _init_worker(signals: tuple[int, ...], rank_pid: int | None, worker_id: int) -> None:
    """A worker's ``worker_init_fn``: ignore ``signals``; with ``rank_pid`` (a worker started from the fork
    server), end this worker once that process has ended."""
    for signum in signals:
        signal.signal(signum, signal.SIG_IGN)
    if rank_pid is not None:
        threading.Thread(target=_exit_after, args=(rank_pid,), name="vidfast-rank-watch", daemon=True).start()


def _exit_after(pid: int) -> None:
    """Exit this process when process ``pid`` ends. torch's own watch ends a worker when its parent ends, and
    a fork server's child's parent is the server, which lives while any of its children does (each holds the
    server's keep-alive pipe): a rank killed outright (SIGKILL, the OOM killer) left its server and workers
    running forever."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd (not Linux, or a kernel before 5.3): look once a second
        while _alive(pid):
            time.sleep(1.0)
        os._exit(1)
    select.select([handle], [], [])  # readable once the process has ended
    os._exit(1)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still exists (a zombie counts until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@functools.cache
def _kill_workers_at_exit() -> None:
    """Kill the daemonic child processes (loader workers) when the interpreter exits.

    Workers that ignore SIGTERM would otherwise hang the exit of a process that still holds their loader
    (e.g. a script's ``Trainer`` at module level): multiprocessing's own exit handler terminates daemonic
    children with SIGTERM and then waits for them. Registered after it, this handler runs before it."""
    import atexit

    def kill() -> None:
        for child in multiprocessing.active_children():
            if child.daemon:
                child.kill()

    atexit.register(kill)

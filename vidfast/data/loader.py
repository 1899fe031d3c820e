"""``make_loader``: manifest + clip policy -> batches of network-ready samples (clips, cubic puzzles).

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
import signal
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch

from vidfast.data.dataset import ClipDataset
from vidfast.data.decoders import Deferred, decode_deferred, defers
from vidfast.data.policies import ClipParams, ClipPolicy
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


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Group worker items into a batch: the loaded ones stacked, the skipped ones as (path, reason) pairs.
    Cut clips keep the layout the policy wrote; params travel only with frames that still need cutting."""
    good = [it for it in items if "skipped" not in it]
    batch: dict[str, Any] = {"skipped": [(it["path"], it["skipped"]) for it in items if "skipped" in it]}
    if not good:
        return batch
    for name in good[0]["labels"]:
        batch[name] = torch.stack([it["labels"][name] for it in good]).long()
    batch["video_index"] = torch.tensor([it["video_index"] for it in good])
    batch["clip_index"] = torch.tensor([it["clip_index"] for it in good])
    if "video" in good[0]:
        batch["video"] = _stack([it["video"] for it in good])
    else:
        batch["frames"] = [it["frames"] for it in good]
        batch["params"] = ClipParams.stack([it["params"] for it in good])
    return batch


def _stack(values: list[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` that keeps the items' memory layout (a channels-last clip stays channels-last)."""
    first = values[0]
    order = sorted(range(first.dim()), key=first.stride, reverse=True)
    out = first.new_empty((len(values), *(first.shape[d] for d in order)))
    out = out.permute(0, *(1 + order.index(d) for d in range(first.dim())))
    for target, value in zip(out, values, strict=True):
        target.copy_(value)
    return out


class VideoLoader:
    """Iterable of batches (see ``make_loader``); ``set_epoch(e)`` before each epoch reshuffles and
    reseeds."""

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
        self._logged: set[str] = set()

    @property
    def num_videos(self) -> int:
        """Videos (manifest rows) this loader reads, over all ranks."""
        return len(self.dataset.rows)

    @property
    def num_samples(self) -> int:
        """(video, clip) samples over all ranks."""
        return len(self.dataset)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Reshuffle and reseed for ``epoch``; the epoch's iteration begins at its batch ``start_batch``
        (the batches before it are neither loaded nor decoded)."""
        self.sampler.epoch = epoch
        self.sampler.start = start_batch * (self.loader.batch_size or 1)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.loader:
            skipped = self._count_skips(batch.pop("skipped"))
            if any(isinstance(f, Deferred) for f in batch.get("frames", ())):
                self._decode_deferred(batch)
            if "video" in batch or "params" in batch:
                yield self._finish(batch, skipped)
            elif self.empty_batches:
                yield {"skipped": skipped}

    def _count_skips(self, skipped: list[tuple[str, str]]) -> int:
        for path, reason in skipped:
            self.num_skipped += 1
            if path not in self._logged:
                self._logged.add(path)
                log.warning("skipping undecodable video %s: %s", path, reason)
        return len(skipped)

    def _decode_deferred(self, batch: dict[str, Any]) -> None:
        """Decode the batch's deferred samples on the device (their backend's batched decode); a batch that
        fails is retried one video at a time so that only the bad ones are skipped."""
        frames = batch["frames"]
        pending = [i for i, f in enumerate(frames) if isinstance(f, Deferred)]
        try:
            decoded = decode_deferred([frames[i] for i in pending], self.device)
            for i, value in zip(pending, decoded, strict=True):
                frames[i] = value
            return
        except DataError:
            pass
        keep = [i for i, f in enumerate(frames) if not isinstance(f, Deferred)]
        for i in pending:
            try:
                (frames[i],) = decode_deferred([frames[i]], self.device)
                keep.append(i)
            except DataError as exc:
                self._count_skips([(f"video {int(batch['video_index'][i])}", str(exc))])
        if not keep:
            batch.pop("params"), batch.pop("frames")
            return
        keep.sort()
        index = torch.tensor(keep)
        for name in [k for k, v in batch.items() if isinstance(v, torch.Tensor)]:
            batch[name] = batch[name][index]
        batch["params"] = {k: v[index] for k, v in batch["params"].items()}
        batch["frames"] = [frames[i] for i in keep]

    def _finish(self, batch: dict[str, Any], skipped: int) -> dict[str, torch.Tensor]:
        """Cut the frames of a batch that came uncut (``crop_in="main"`` or deferred), on the device."""
        if "frames" in batch:
            frames = [f.to(self.device, non_blocking=True) for f in batch.pop("frames")]
            params = {k: v.to(self.device, non_blocking=True) for k, v in batch.pop("params").items()}
            batch["video"] = self.dataset.policy.crop(frames, params)
        batch["skipped"] = skipped
        return batch


@dataclass(frozen=True)
class LoaderConfig:
    """How a loader reads and batches (what it cuts is the policy's business).

    ``shuffle`` defaults to ``split == "train"``. ``drop_last``: drop a last partial batch. ``crop_in``:
    ``"worker"`` cuts clips in the DataLoader workers, ``"main"`` batches ``cube_crop`` in the main process.
    ``empty_batches``: a batch whose videos all failed comes as ``{"skipped": n}`` (so that a DDP rank still
    takes its step) instead of being dropped. ``pad_shards``: under DDP repeat samples so that every rank gets
    as many (training); False gives every sample to exactly one rank (evaluation). ``device="cuda"`` with a
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
    distributed: bool | None = None
    ignore_signals: tuple[int, ...] = ()

    @classmethod
    def take(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Remove this config's fields from ``options`` (a run config's ``data.loader``) and return them."""
        return {f.name: options.pop(f.name) for f in fields(cls) if f.name in options}


def make_loader(manifest: Any, policy: ClipPolicy, config: LoaderConfig = LoaderConfig(),
                split: str = "train") -> VideoLoader:
    """Batches of ``manifest``'s ``split`` rows (``status == ok``) sampled and cut by ``policy``.

    Every batch has ``video`` ``[B, *policy.sample_shape]`` in the policy's dtype and layout, ``label``
    (the rows' classes) and the policy's labels (the puzzle's ``perm_label`` ``[B]``, ``rot_label``
    ``[B, 4]``, ``kind`` ``[B]``), ``video_index``, ``clip_index`` (the sample of its video: every (video,
    sample) of the policy is one sample of the loader), and ``skipped`` (videos of this batch that failed to
    decode; ``loader.num_skipped`` counts them all; a batch may then be smaller than ``batch_size``; see
    :class:`LoaderConfig` for a batch where all failed).
    """
    from vidfast.data.manifest import Manifest, read_manifest

    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    rows = manifest.table(split)
    if not len(rows):
        raise DataError(f"no usable '{split}' rows in the manifest ({manifest.root})")
    device = torch.device(config.device)
    dataset = ClipDataset(rows, policy, backend=config.backend, crop_in=config.crop_in, device=device,
                          deferred=defers(config.backend, device), seed=config.seed)
    shuffle = split == "train" if config.shuffle is None else config.shuffle
    sampler = EpochSampler(len(dataset), shuffle, config.seed, current_rank(config.distributed),
                           pad=config.pad_shards)
    workers = config.workers
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
        worker_init_fn=functools.partial(_ignore_signals, tuple(config.ignore_signals))
        if config.ignore_signals
        else None,
    )
    return VideoLoader(dataset, sampler, loader, manifest.class_names, device, config.empty_batches)


def _ignore_signals(signals: tuple[int, ...], worker_id: int) -> None:
    """A worker's ``worker_init_fn``: ignore ``signals``."""
    for signum in signals:
        signal.signal(signum, signal.SIG_IGN)

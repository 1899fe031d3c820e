"""``make_loader``: manifest -> batches of network-ready clips or cubic puzzles.

Decoding runs in DataLoader worker processes and yields uint8 frames; ``cube_crop`` (crop, resize, flip,
rotate, channel replication, normalise) then runs in the same worker by default. Measured with
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

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from vidfast.conventions import KINETICS_MEAN, KINETICS_STD
from vidfast.data.dataset import ClipDataset, ClipParams, CropConfig, crop_args
from vidfast.data.decoders import dali_decoder, dali_import_error
from vidfast.data.samplers import SpatialConfig, TemporalConfig
from vidfast.errors import DataError
from vidfast.ops import cube_crop
from vidfast.puzzle.sampler import PuzzleConfig
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
    """Group worker items into a batch: the loaded ones stacked, the skipped ones as (path, reason) pairs."""
    good = [it for it in items if "skipped" not in it]
    batch: dict[str, Any] = {"skipped": [(it["path"], it["skipped"]) for it in items if "skipped" in it]}
    if not good:
        return batch
    params: list[ClipParams] = [it["params"] for it in good]
    batch["params"] = crop_args(params)
    for name in params[0].labels:
        batch[name] = torch.stack([p.labels[name] for p in params]).long()
    batch["video_index"] = torch.tensor([it["video_index"] for it in good])
    batch["clip_index"] = torch.tensor([it["clip_index"] for it in good])
    for name in ("video", "frames", "encoded", "wanted"):
        if name in good[0]:
            values = [it[name] for it in good]
            batch[name] = torch.stack(values) if name == "video" else values
    return batch


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[..., C, T, H, W]`` laid out channels-last (``channels_last_3d`` for 5-D), same shape."""
    order = list(range(x.dim()))
    moved = x.permute(*order[:-4], *order[-3:], order[-4]).contiguous()
    return moved.permute(*order[:-4], x.dim() - 1, *order[-4:-1])


class VideoLoader:
    """Iterable of batches (see ``make_loader``); ``set_epoch(e)`` before each epoch reshuffles and
    reseeds."""

    def __init__(
        self,
        dataset: ClipDataset,
        sampler: EpochSampler,
        loader: torch.utils.data.DataLoader,
        class_names: list[str],
        channels_last: bool,
        device: torch.device,
        empty_batches: bool = False,
    ) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.loader = loader
        self.class_names = class_names
        self.channels_last = channels_last
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
            if "encoded" in batch:
                self._decode_on_device(batch)
            if "params" in batch:
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

    def _decode_on_device(self, batch: dict[str, Any]) -> None:
        """Decode deferred (DALI) samples on the GPU; a batch that fails is retried one video at a time so
        that only the bad ones are skipped."""
        decoder = dali_decoder(str(self.device))
        encoded, wanted_frames = batch.pop("encoded"), batch.pop("wanted")
        try:
            batch["frames"] = decoder.decode(encoded, wanted_frames)
            return
        except DataError:
            pass
        frames, keep = [], []
        for i, (data, wanted) in enumerate(zip(encoded, wanted_frames, strict=True)):
            try:
                frames.extend(decoder.decode([data], [wanted]))
                keep.append(i)
            except DataError as exc:
                self._count_skips([(f"video {int(batch['video_index'][i])}", str(exc))])
        if not keep:
            batch.pop("params")
            return
        index = torch.tensor(keep)
        for name in [k for k, v in batch.items() if isinstance(v, torch.Tensor)]:
            batch[name] = batch[name][index]
        batch["params"] = {k: v[index] for k, v in batch["params"].items()}
        batch["frames"] = frames

    def _finish(self, batch: dict[str, Any], skipped: int) -> dict[str, torch.Tensor]:
        params = batch.pop("params")
        if "frames" in batch:
            frames = [f.to(self.device, non_blocking=True) for f in batch.pop("frames")]
            params = {k: v.to(self.device, non_blocking=True) for k, v in params.items()}
            crop = self.dataset.crop
            video = cube_crop(
                frames,
                out_size=self.dataset.out_size,
                mean=crop.mean,
                std=crop.std,
                dtype=crop.dtype,
                channels_last=self.channels_last,
                **params,
            )
        else:
            video = batch.pop("video")
            if self.channels_last:
                video = _channels_last(video)
        batch["video"] = video[:, 0] if self.dataset.task == "classify" else video
        batch["skipped"] = skipped
        return batch


def make_loader(
    manifest: Any,
    task: str = "classify",
    split: str = "train",
    backend: str = "auto",
    clip_len: int = 16,
    frame_step: int = 1,
    size: int = 112,
    sampling: str = "random",
    clips: int = 1,
    stride: int | None = None,
    spatial: str = "multiscale",
    scales: Sequence[float] | None = None,
    hflip: bool = True,
    batch_size: int = 8,
    workers: int = 2,
    channels_last: bool = False,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    puzzle: PuzzleConfig | None = None,
    distributed: bool | None = None,
    shuffle: bool | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
    device: str | torch.device = "cpu",
    crop_in: str = "worker",
    prefetch_factor: int = 2,
    empty_batches: bool = False,
    pad_shards: bool = True,
) -> VideoLoader:
    """Batches of ``manifest``'s ``split`` rows (``status == ok``) for ``task``.

    classify: ``video`` float ``[B, 3, clip_len, size, size]``, ``label``, ``video_index``, ``clip_index``;
    puzzle: ``video`` float ``[B, 4, 3, cube_len, out, out]``, ``perm_label`` ``[B]``, ``rot_label``
    ``[B, 4]``, ``kind`` ``[B]`` (0 spatial, 1 temporal), ``video_index``. Every batch also has ``skipped``
    (videos of this batch that failed to decode; ``loader.num_skipped`` counts them all; a batch may then be
    smaller than ``batch_size``; where every video of a batch failed it is dropped, or with
    ``empty_batches`` comes as ``{"skipped": n}`` alone, so that a DDP rank can still take its step).
    Evaluation: ``sampling="center"``, ``"uniform"`` (``clips`` per video) or ``"sliding"`` (windows every
    ``stride`` frames), ``spatial="center"``, ``hflip=False``; every (video, clip) is one sample.
    ``shuffle`` defaults to ``split == "train"``. Under DDP ``pad_shards`` repeats samples so that every rank
    gets as many (training); ``False`` gives every sample to exactly one rank (evaluation). ``device="cuda"``
    with DALI decodes on the GPU (``backend="dali"``, or ``"auto"`` when DALI is installed) and returns CUDA
    batches.
    """
    from vidfast.data.manifest import Manifest, read_manifest

    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    rows = manifest.select(split)
    if not rows:
        raise DataError(f"no usable '{split}' rows in the manifest ({manifest.root})")
    device = torch.device(device)
    defer_dali = device.type == "cuda" and backend in ("auto", "dali") and dali_import_error() is None
    if backend == "dali" and device.type == "cuda" and not defer_dali:
        raise DataError(f"backend 'dali' on {device} is unavailable: {dali_import_error()}")
    temporal = TemporalConfig(mode=sampling, clip_len=clip_len, step=frame_step, clips=clips, stride=stride)
    spatial_cfg = SpatialConfig(
        mode=spatial, size=size, hflip=hflip, **({"scales": tuple(scales)} if scales is not None else {})
    )
    dataset = ClipDataset(
        rows,
        task=task,
        backend=backend,
        temporal=temporal,
        spatial=spatial_cfg,
        puzzle=puzzle,
        crop=CropConfig(tuple(mean), tuple(std), dtype),
        crop_in=crop_in,
        defer_dali=defer_dali,
        seed=seed,
    )
    sampler = EpochSampler(
        len(dataset), split == "train" if shuffle is None else shuffle, seed, current_rank(distributed),
        pad=pad_shards,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
    )
    return VideoLoader(dataset, sampler, loader, manifest.class_names, channels_last, device, empty_batches)

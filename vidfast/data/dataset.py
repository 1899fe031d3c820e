"""Map-style dataset of clips: the per-sample work done in DataLoader workers.

A sample is one (video, clip) pair. ``dataset[(epoch, i)]`` opens the video, draws the sampling decisions from
a generator seeded by ``(seed, epoch, i)`` (so results do not depend on which worker runs it), decodes
only the distinct frames it needs and returns them with ``cube_crop`` arguments that index into them.
Optionally it runs ``cube_crop`` right there (``crop_in="worker"``). For DALI on a GPU the decode itself is
deferred to the main process (``encoded`` file bytes are returned instead of frames). A video that cannot be
decoded yields a ``skipped`` item with the reason instead of raising.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidfast.conventions import KINETICS_MEAN, KINETICS_STD
from vidfast.data.decoders import DaliVideo, dali_refusal, open_video
from vidfast.data.samplers import SpatialConfig, TemporalConfig, clip_at, clip_starts, num_clips, sample_box
from vidfast.errors import DataError, VidfastError
from vidfast.ops import cube_crop
from vidfast.puzzle.sampler import PuzzleConfig, sample_puzzle

TASKS = ("classify", "puzzle")


@dataclass(frozen=True)
class CropConfig:
    """Output of ``cube_crop``: normalisation and dtype (layout is chosen by the loader)."""

    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    dtype: torch.dtype = torch.float32


@dataclass
class ClipParams:
    """Sampling decisions of one sample, as ``cube_crop`` arguments for its ``P`` pieces (int64 tensors):
    ``frame_idx`` ``[P, t]`` into the sample's decoded frames, ``boxes`` ``[P, 4]``, ``perm``/``rot``/
    ``channel`` ``[P]``, ``flip`` bool ``[P]``; ``labels`` the task's label tensors."""

    frame_idx: torch.Tensor
    boxes: torch.Tensor
    flip: torch.Tensor
    perm: torch.Tensor
    rot: torch.Tensor
    channel: torch.Tensor
    labels: dict[str, torch.Tensor] = field(default_factory=dict)


def crop_args(params: Sequence[ClipParams]) -> dict[str, torch.Tensor]:
    """Stack per-sample parameters into batched ``cube_crop`` keyword arguments (``[N, P, ...]``)."""
    return {
        name: torch.stack([getattr(p, name) for p in params])
        for name in ("frame_idx", "boxes", "flip", "perm", "rot", "channel")
    }


class ClipDataset(torch.utils.data.Dataset):
    """Samples of ``rows`` (manifest rows) for ``task``; index with ``(epoch, i)``.

    ``backend``/``device``: decoding backend; with DALI on CUDA (``defer_dali``) the worker only reads
    the file.
    ``crop_in="worker"`` runs ``cube_crop`` here (item ``video`` float ``[P, 3, t, h, w]``), else the item
    carries the decoded uint8 ``frames`` ``[u, H, W, 3]`` for the main process.
    """

    def __init__(
        self,
        rows: Sequence[Any],
        task: str = "classify",
        backend: str = "auto",
        temporal: TemporalConfig | None = None,
        spatial: SpatialConfig | None = None,
        puzzle: PuzzleConfig | None = None,
        crop: CropConfig | None = None,
        crop_in: str = "worker",
        defer_dali: bool = False,
        seed: int = 0,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        if crop_in not in ("worker", "main"):
            raise ValueError(f"crop_in must be 'worker' or 'main', got {crop_in!r}")
        self.rows = list(rows)
        self.task = task
        self.backend = backend
        self.temporal = temporal or TemporalConfig()
        self.spatial = spatial or SpatialConfig()
        self.puzzle = puzzle or PuzzleConfig()
        self.crop = crop or CropConfig()
        self.crop_in = "main" if defer_dali else crop_in
        self.defer_dali = defer_dali
        self.seed = seed
        per_video = [
            1 if task == "puzzle" else num_clips(max(_segment_len(r), 1), self.temporal) for r in self.rows
        ]
        self.items = [(v, c) for v, k in enumerate(per_video) for c in range(k)]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def out_size(self) -> tuple[int, int, int]:
        """``(t, h, w)`` of every piece."""
        if self.task == "puzzle":
            return self.puzzle.cube_len, self.puzzle.out_size, self.puzzle.out_size
        return self.temporal.clip_len, self.spatial.size, self.spatial.size

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, i = key
        video_index, clip_index = self.items[i]
        row = self.rows[video_index]
        item: dict[str, Any] = {"video_index": video_index, "clip_index": clip_index, "path": str(row.path)}
        rng = np.random.default_rng([self.seed, epoch, i])
        try:
            item.update(self._load(row, clip_index, rng))
        except (VidfastError, OSError) as exc:
            item["skipped"] = str(exc)
        return item

    def _load(self, row: Any, clip_index: int, rng: np.random.Generator) -> dict[str, Any]:
        path = Path(row.path)
        deferred = self.defer_dali and dali_refusal(path, torch.device("cuda"), check_cuda=False) is None
        video = DaliVideo(path, device="cuda") if deferred else open_video(path, self.backend)
        try:
            lo, hi = frame_range(row, video.num_frames, video.fps)
            params = self._params(hi - lo, video.height, video.width, clip_index, rng, row)
            wanted, inverse = np.unique(params.frame_idx.numpy() + lo, return_inverse=True)
            params.frame_idx = torch.from_numpy(inverse.reshape(params.frame_idx.shape).astype(np.int64))
            if deferred:
                return {"encoded": video.encoded, "wanted": wanted, "params": params}
            frames = video.get_frames(wanted)
        finally:
            video.close()
        if self.crop_in == "main":
            return {"frames": frames, "params": params}
        args = crop_args([params])
        out = cube_crop(
            frames[None],
            out_size=self.out_size,
            mean=self.crop.mean,
            std=self.crop.std,
            dtype=self.crop.dtype,
            **args,
        )
        return {"video": out[0], "params": params}

    def _params(
        self, num_frames: int, height: int, width: int, clip_index: int, rng: np.random.Generator, row: Any
    ) -> ClipParams:
        if self.task == "puzzle":
            p = sample_puzzle(num_frames, height, width, self.puzzle, rng)
            labels = {
                "perm_label": torch.tensor(p.perm_label),
                "rot_label": torch.from_numpy(p.rot_label),
                "kind": torch.tensor(p.kind),
            }
            return ClipParams(
                torch.from_numpy(p.frame_idx),
                torch.from_numpy(p.boxes),
                torch.zeros(4, dtype=bool),
                torch.from_numpy(p.perm),
                torch.from_numpy(p.rot),
                torch.from_numpy(p.channel),
                labels,
            )
        starts = clip_starts(num_frames, self.temporal, rng)
        frames = clip_at(int(starts[min(clip_index, len(starts) - 1)]), num_frames, self.temporal)
        box, flip = sample_box(height, width, self.spatial, rng)
        return ClipParams(
            torch.from_numpy(frames)[None],
            torch.tensor([box]),
            torch.tensor([flip]),
            torch.zeros(1, dtype=torch.int64),
            torch.zeros(1, dtype=torch.int64),
            torch.full((1,), -1, dtype=torch.int64),
            {"label": torch.tensor(int(row.label))},
        )


def _segment_len(row: Any) -> int:
    """Frames of a manifest row's segment, from the manifest's probed num_frames and fps."""
    if row.start is None or not row.fps:
        return int(row.num_frames)
    lo, hi = frame_range(row, int(row.num_frames), float(row.fps))
    return hi - lo


def frame_range(row: Any, num_frames: int, fps: float) -> tuple[int, int]:
    """``[lo, hi)`` frames of the row's trimmed segment (the whole video when untrimmed)."""
    if row.start is None and row.end is None:
        return 0, num_frames
    fps = fps or float(row.fps)
    if not fps:
        raise DataError(f"{row.path}: a trimmed segment needs the frame rate, which is unknown")
    lo = min(max(int(round((row.start or 0.0) * fps)), 0), num_frames - 1)
    hi = num_frames if row.end is None else min(int(round(row.end * fps)), num_frames)
    if hi <= lo:
        raise DataError(f"{row.path}: segment {row.start}-{row.end} s holds no frames")
    return lo, hi

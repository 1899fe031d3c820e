"""Map-style dataset of clips: the per-item work done in DataLoader workers.

An item is one (video, sample) pair of a :class:`~vidfast.data.policies.ClipPolicy` (training, validation),
or with ``per_video`` one whole video: every sample of each of the policies (evaluation, where a video's
clips are scored together). ``dataset[(epoch, i)]`` opens the video, draws the policies' decisions from a
generator seeded by ``(seed, epoch, i)`` (so results do not depend on which worker runs it) and reads the
clips with the reader's :func:`~vidfast.data.reader.plan_read` / :func:`~vidfast.data.reader.cut_clips` (what
:func:`~vidfast.data.reader.read_clips` does), cutting them right there (``crop_in="worker"``). Otherwise
(``crop_in="main"``, or a backend that defers its decode to the main process on the loader's device) the item
carries the frames (or the decoder's deferred request) and the plan, and the loader cuts them with the same
:func:`~vidfast.data.reader.cut_clips`. A video that cannot be decoded yields an item with the reason instead
of raising; one whose decoder counts other frames than the manifest says is read as the decoder counts and
reported (``mismatch``).

The dataset holds no Python object per video or sample: rows stay columnar
(:class:`~vidfast.data.columns.ManifestColumns`, one row built per access) and sample ``i`` is found by a
binary search in the cumulative sample counts, so forked workers do not copy per-row objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vidfast.data.columns import ManifestColumns
from vidfast.data.decoders import Deferred, read_frames
from vidfast.data.policies import ClipPolicy
from vidfast.data.reader import OpenSegment, PlannedRead, cut_clips, plan_read, segment_len
from vidfast.errors import VidfastError


@dataclass
class Item:
    """One dataset item (it crosses from a worker): ``samples`` samples of video ``video_index`` from its
    ``clip_index``-th on, as ``videos`` (one tensor ``[samples, *sample_shape]`` per policy: cut) or as
    ``frames`` and ``plan`` (to cut); ``targets`` the policies' labels ``[samples, ...]``; ``skipped`` the
    reason it could not be read; ``mismatch`` ``(manifest, decoder)`` frame counts when they differ."""

    video_index: int
    clip_index: int
    path: str
    label: int
    samples: int = 0
    videos: list[torch.Tensor] | None = None
    frames: torch.Tensor | Deferred | None = None
    plan: PlannedRead | None = None
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    skipped: str | None = None
    mismatch: tuple[int, int] | None = None


class ClipDataset(torch.utils.data.Dataset):
    """Items of ``rows`` (manifest rows) under ``policies``; index with ``(epoch, i)``.

    Sample mode (default): one policy; item ``i`` is the ``i``-th (video, sample) pair. ``per_video``: item
    ``i`` is video ``i`` with every sample of each policy (the policies take as many samples of a video, as
    the members of a score ensemble do). ``device``/``deferred``: the loader's device and whether backends
    that defer there may (the worker then never touches that device).
    """

    def __init__(
        self,
        rows: Sequence[Any],
        policies: ClipPolicy | Sequence[ClipPolicy],
        backend: str = "auto",
        crop_in: str = "worker",
        device: str | torch.device = "cpu",
        deferred: bool = False,
        seed: int = 0,
        per_video: bool = False,
    ) -> None:
        if crop_in not in ("worker", "main"):
            raise ValueError(f"crop_in must be 'worker' or 'main', got {crop_in!r}")
        self.policies = [policies] if isinstance(policies, ClipPolicy) else list(policies)
        if not per_video and len(self.policies) != 1:
            raise ValueError(f"a sample-mode dataset takes one policy, got {len(self.policies)}")
        self.rows = rows if isinstance(rows, ManifestColumns) else list(rows)
        self.backend = backend
        self.crop_in = "main" if deferred else crop_in
        self.device = torch.device(device) if deferred else torch.device("cpu")
        self.deferred = deferred
        self.seed = seed
        self.per_video = per_video
        #: frames of every row's segment as the manifest says, int64 ``[V]``
        self.lengths = segment_lengths(self.rows)
        #: items of videos ``0..v`` (cumulative), int64 ``[V]``
        self.ends = np.cumsum(
            np.ones(len(self.rows), np.int64) if per_video else samples_per_video(self.policy, self.lengths)
        )

    @property
    def policy(self) -> ClipPolicy:
        """The (first) policy."""
        return self.policies[0]

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def locate(self, i: int) -> tuple[int, int]:
        """``(video_index, clip_index)`` of item ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        video_index = int(np.searchsorted(self.ends, i, side="right"))
        return video_index, i - (int(self.ends[video_index - 1]) if video_index else 0)

    def __getitem__(self, key: tuple[int, int]) -> Item:
        epoch, i = key
        video_index, clip_index = self.locate(i)
        row = self.rows[video_index]
        item = Item(video_index, clip_index, str(row.path), int(row.label))
        rng = np.random.default_rng([self.seed, epoch, i])
        try:
            self._load(item, row, rng)
        except (VidfastError, OSError) as exc:
            item.skipped = str(exc)
        return item

    def _load(self, item: Item, row: Any, rng: np.random.Generator) -> None:
        with OpenSegment(row, self.backend, self.device, self.deferred) as segment:
            expected = int(self.lengths[item.video_index])
            if segment.num_frames != expected:
                item.mismatch = (expected, segment.num_frames)
            sample = None
            if not self.per_video:
                # a decoder that counts fewer frames than the manifest may take fewer samples: its last one
                # (reported through ``mismatch``)
                taken = self.policy.num_samples(max(segment.num_frames, 1))
                sample = min(item.clip_index, taken - 1)
            plan = plan_read(segment, self.policies, rng, sample)
            if len(set(plan.samples)) > 1:
                raise ValueError(f"the policies take different numbers of samples: {plan.samples}")
            frames = read_frames(segment.video, plan.wanted)
        item.samples = plan.params[0].num_samples
        item.targets = {k: v for p in plan.params for k, v in p.labels.items()}
        if self.crop_in == "main" or isinstance(frames, Deferred):
            item.frames, item.plan = frames, plan
        else:
            item.videos = cut_clips(self.policies, [frames], [plan.params])


def segment_lengths(rows: Sequence[Any]) -> np.ndarray:
    """Frames of every row's segment, int64 ``[V]`` (:func:`~vidfast.data.reader.segment_len`); from the
    columns for a :class:`~vidfast.data.columns.ManifestColumns`, row by row only for trimmed rows."""
    if not isinstance(rows, ManifestColumns):
        return np.fromiter((segment_len(r) for r in rows), np.int64, len(rows))
    lengths = rows.column("num_frames").astype(np.int64)
    trimmed = np.flatnonzero(~np.isnan(rows.column("start")) & (rows.column("fps") > 0))
    for i in trimmed.tolist():
        lengths[i] = segment_len(rows[i])
    return lengths


def samples_per_video(policy: ClipPolicy, lengths: np.ndarray) -> np.ndarray:
    """``policy.num_samples`` of every video length (asked once per distinct length), int64 ``[V]``."""
    distinct, inverse = np.unique(np.maximum(lengths, 1), return_inverse=True)
    counts = np.asarray([policy.num_samples(int(n)) for n in distinct.tolist()], dtype=np.int64)
    return counts[inverse.reshape(-1)] if len(lengths) else np.zeros(0, dtype=np.int64)


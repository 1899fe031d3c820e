"""Map-style dataset of clips: the per-sample work done in DataLoader workers.

A sample is one (video, sample) pair of the :class:`~vidfast.data.policies.ClipPolicy`. ``dataset[(epoch,
i)]`` opens the video, draws the policy's decisions from a generator seeded by ``(seed, epoch, i)`` (so
results do not depend on which worker runs it), decodes only the distinct frames it needs and, by default,
cuts them right there in the policy's output layout (``crop_in="worker"``). Otherwise (``crop_in="main"``, or
a backend that defers its decode to the main process on the loader's device) the item carries the frames (or
the decoder's deferred request) and the params for the main process. A video that cannot be decoded yields a
``skipped`` item with the reason instead of raising.

The dataset holds no Python object per video or sample: rows stay columnar
(:class:`~vidfast.data.columns.ManifestColumns`, one row built per access) and sample ``i`` is found by a
binary search in the cumulative sample counts, so forked workers do not copy per-row objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vidfast.data.columns import ManifestColumns
from vidfast.data.decoders import Deferred, read_frames
from vidfast.data.policies import ClipPolicy
from vidfast.data.reader import OpenSegment, segment_len
from vidfast.errors import VidfastError


class ClipDataset(torch.utils.data.Dataset):
    """Samples of ``rows`` (manifest rows) under ``policy``; index with ``(epoch, i)``.

    Item: ``video_index``, ``clip_index`` (the sample of its video), ``path``, ``labels`` (``label``: the
    row's class, plus the policy's labels), and either ``video`` ``[*policy.sample_shape]`` (cut here) or
    ``frames``
    (uint8 ``[u, H, W, 3]``, or a :class:`~vidfast.data.decoders.Deferred` request) with ``params``.
    ``device``/``deferred``: the loader's device and whether backends that defer there may (the worker then
    never touches that device).
    """

    def __init__(
        self,
        rows: Sequence[Any],
        policy: ClipPolicy,
        backend: str = "auto",
        crop_in: str = "worker",
        device: str | torch.device = "cpu",
        deferred: bool = False,
        seed: int = 0,
    ) -> None:
        if crop_in not in ("worker", "main"):
            raise ValueError(f"crop_in must be 'worker' or 'main', got {crop_in!r}")
        self.rows = rows if isinstance(rows, ManifestColumns) else list(rows)
        self.policy = policy
        self.backend = backend
        self.crop_in = "main" if deferred else crop_in
        self.device = torch.device(device) if deferred else torch.device("cpu")
        self.deferred = deferred
        self.seed = seed
        #: samples of videos ``0..v`` (cumulative), int64 ``[V]``
        self.ends = np.cumsum(samples_per_video(policy, segment_lengths(self.rows)))

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def locate(self, i: int) -> tuple[int, int]:
        """``(video_index, clip_index)`` of sample ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        video_index = int(np.searchsorted(self.ends, i, side="right"))
        return video_index, i - (int(self.ends[video_index - 1]) if video_index else 0)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, i = key
        video_index, clip_index = self.locate(i)
        row = self.rows[video_index]
        item: dict[str, Any] = {"video_index": video_index, "clip_index": clip_index, "path": str(row.path)}
        rng = np.random.default_rng([self.seed, epoch, i])
        try:
            item.update(self._load(row, clip_index, rng))
        except (VidfastError, OSError) as exc:
            item["skipped"] = str(exc)
        return item

    def _load(self, row: Any, clip_index: int, rng: np.random.Generator) -> dict[str, Any]:
        with OpenSegment(row, self.backend, self.device, self.deferred) as segment:
            wanted, params = segment.plan(self.policy, rng, clip_index)
            frames = read_frames(segment.video, wanted)
        labels = {"label": torch.tensor(int(row.label)), **{k: v[0] for k, v in params.labels.items()}}
        if self.crop_in == "main" or isinstance(frames, Deferred):
            return {"frames": frames, "params": params, "labels": labels}
        return {"video": self.policy.crop([frames], params)[0], "labels": labels}


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

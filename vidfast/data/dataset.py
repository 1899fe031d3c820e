"""Map-style dataset of clips: the per-sample work done in DataLoader workers.

A sample is one (video, sample) pair of the :class:`~vidfast.data.policies.ClipPolicy`. ``dataset[(epoch,
i)]`` opens the video, draws the policy's decisions from a generator seeded by ``(seed, epoch, i)`` (so
results do not depend on which worker runs it), decodes only the distinct frames it needs and, by default,
cuts them right there in the policy's output layout (``crop_in="worker"``). Otherwise (``crop_in="main"``, or
a backend that defers its decode to the main process on the loader's device) the item carries the frames (or
the decoder's deferred request) and the params for the main process. A video that cannot be decoded yields a
``skipped`` item with the reason instead of raising.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

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
        self.rows = list(rows)
        self.policy = policy
        self.backend = backend
        self.crop_in = "main" if deferred else crop_in
        self.device = torch.device(device) if deferred else torch.device("cpu")
        self.deferred = deferred
        self.seed = seed
        per_video = [policy.num_samples(max(segment_len(r), 1)) for r in self.rows]
        self.items = [(v, c) for v, k in enumerate(per_video) for c in range(k)]

    def __len__(self) -> int:
        return len(self.items)

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
        with OpenSegment(row, self.backend, self.device, self.deferred) as segment:
            wanted, params = segment.plan(self.policy, rng, clip_index)
            frames = read_frames(segment.video, wanted)
        labels = {"label": torch.tensor(int(row.label)), **{k: v[0] for k, v in params.labels.items()}}
        if self.crop_in == "main" or isinstance(frames, Deferred):
            return {"frames": frames, "params": params, "labels": labels}
        return {"video": self.policy.crop([frames], params)[0], "labels": labels}

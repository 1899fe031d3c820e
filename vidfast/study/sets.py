"""The study's sets of videos: a large unlabelled *pool* (pretraining; only the supervised row reads its
labels), a *labelled* set from which every cell draws its k videos per class, and a held-out *test* set; the
draws (labelled subsets nested over k, their train/val halves); and the labelled and test videos held in
memory for the many small runs of the cells."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidfast.errors import VidfastError

SET_NAMES = ("labelled", "test", "pool")


@dataclass(frozen=True)
class Sets:
    """The study's three manifests, the classes, and how many labelled videos every class has."""

    pool: Path
    labelled: Path
    test: Path
    class_names: list[str]
    labelled_per_class: int
    sizes: dict[str, int] = field(default_factory=dict)


def synthesize_sets(
    folder: Path,
    classes: int,
    per_class: dict[str, int],
    frames: int,
    video_size: int,
    seed: int = 0,
    catalogue: str = "aligned",
    gravity: str = "down",
    say: Callable[[str], None] = print,
) -> Sets:
    """Write the synthetic ``labelled``, ``test`` and ``pool`` sets of ``per_class`` videos per class of
    ``catalogue`` with ``gravity`` (:func:`vidfast.data.synth.synthesize_dataset`; disjoint video numbers of
    one seed, so no video is in two sets) and their manifests ``folder/<set>.csv`` (labelled: ``train`` rows;
    test: ``test`` rows; pool: ``train`` rows and 10 % ``val`` rows for the pretext's validation); a set
    whose manifest exists is reused."""
    from vidfast.data import build_manifest, read_manifest, synthesize_dataset, write_manifest
    from vidfast.data.columns import sidecar_path
    from vidfast.data.manifest import cache_path_for

    first = 0
    manifests: dict[str, Path] = {}
    for name in SET_NAMES:
        manifest = folder / f"{name}.csv"
        if not manifest.exists():
            say(
                f"[data] synthesizing the {catalogue} {name} set: {classes} classes x {per_class[name]} "
                "videos"
            )
            videos = folder / name
            synthesize_dataset(
                videos,
                classes=classes,
                per_class=per_class[name],
                frames=frames,
                size=(video_size, video_size),
                seed=seed,
                first=first,
                catalogue=catalogue,
                gravity=gravity,
            )
            part = folder / f"{name}.partial.csv"
            build_manifest(
                "folder", videos, part, val_fraction=0.1 if name == "pool" else 0.0, seed=seed, progress=False
            )
            rows = read_manifest(part).rows
            if name == "test":
                rows = [replace(r, split="test") for r in rows]
            write_manifest(manifest, rows)
            part.unlink()
            cache_path_for(part).unlink(missing_ok=True)
            sidecar_path(part).unlink(missing_ok=True)
        manifests[name] = manifest
        first += per_class[name]
    return read_sets(manifests["pool"], manifests["labelled"], manifests["test"])


def read_sets(pool: Path, labelled: Path, test: Path) -> Sets:
    """Check three manifests for a study (classes agree, no video in two sets) and describe them."""
    from vidfast.data import read_manifest

    manifests = {
        name: read_manifest(p) for name, p in (("pool", pool), ("labelled", labelled), ("test", test))
    }
    rows = {
        "pool": manifests["pool"].select(),
        "labelled": manifests["labelled"].select("train"),
        "test": manifests["test"].select("test"),
    }
    for name, chosen in rows.items():
        if not chosen:
            split = {"pool": "any", "labelled": "train", "test": "test"}[name]
            raise VidfastError(f"the {name} manifest has no usable video in split {split!r}")
    names = manifests["labelled"].class_names
    if manifests["test"].class_names != names:
        raise VidfastError("the labelled and test manifests have different classes")
    seen: dict[str, str] = {}
    for name, chosen in rows.items():
        for row in chosen:
            key = str(Path(row.path).resolve())
            if seen.setdefault(key, name) != name:
                raise VidfastError(f"{row.path} is in both the {seen[key]} and the {name} set")
    per_class = min(sum(r.label == c for r in rows["labelled"]) for c in range(len(names)))
    if per_class < 2:
        raise VidfastError("every class needs at least 2 labelled videos (one to train, one to validate)")
    return Sets(pool, labelled, test, names, per_class, {k: len(v) for k, v in rows.items()})


def labelled_subset(labels: Sequence[int], k: int, seed: int, num_classes: int) -> list[int]:
    """Indices of ``k`` videos per class drawn with ``seed``; the subsets of one seed are nested (k=2 is
    inside
    k=4)."""
    rng = np.random.default_rng([seed, 1234])
    chosen: list[int] = []
    for c in range(num_classes):
        of_class = [i for i, label in enumerate(labels) if label == c]
        chosen += [of_class[i] for i in rng.permutation(len(of_class))[:k]]
    return chosen


def holdout_split(indices: Sequence[int], labels: Sequence[int], seed: int) -> tuple[list[int], list[int]]:
    """The model-selection split of a labelled subset: per class, half of its videos (rounded down, at least
    one) validate and the rest train; seeded, disjoint, and every class on both sides."""
    rng = np.random.default_rng([seed, 4321])
    train: list[int] = []
    val: list[int] = []
    for c in sorted({labels[i] for i in indices}):
        of_class = [i for i in indices if labels[i] == c]
        if len(of_class) < 2:
            raise VidfastError(f"class {c} has {len(of_class)} labelled video(s); selection needs 2 or more")
        shuffled = [of_class[i] for i in rng.permutation(len(of_class))]
        cut = max(1, len(shuffled) // 2)
        val += shuffled[:cut]
        train += shuffled[cut:]
    return train, val


@dataclass
class VideoBank:
    """Videos held in memory: ``frames`` uint8 ``Tensor[N, T, S, S, 3]`` (each video's middle ``T`` frames,
    short side resized to ``S`` and centre-cropped), ``labels`` ``Tensor[N]``, their ``paths``."""

    frames: Tensor
    labels: Tensor
    paths: list[str]

    def clips(
        self,
        index: Sequence[int],
        starts: Sequence[int],
        clip_len: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> Tensor:
        """Normalised float clips ``Tensor[B, 3, clip_len, S, S]`` of videos ``index`` from frames
        ``starts``."""
        chosen = torch.stack([self.frames[i, s : s + clip_len] for i, s in zip(index, starts, strict=True)])
        video = chosen.permute(0, 4, 1, 2, 3).float().div_(255.0)
        mean_t = torch.tensor(mean).view(1, 3, 1, 1, 1)
        std_t = torch.tensor(std).view(1, 3, 1, 1, 1)
        return ((video - mean_t) / std_t).contiguous(memory_format=torch.channels_last_3d)

    def with_labels(self, labels: Tensor) -> VideoBank:
        return replace(self, labels=labels)


def load_bank(rows: Sequence[Any], frames: int, size: int) -> VideoBank:
    """Decode the middle ``frames`` frames of every row (a shorter video is refused) at ``size`` pixels."""
    from vidfast.data import open_video

    videos = []
    for row in rows:
        with open_video(row.path) as video:
            if video.num_frames < frames:
                raise VidfastError(f"{row.path} has {video.num_frames} frames; the study needs {frames}")
            first = (video.num_frames - frames) // 2
            clip = video.get_frames(list(range(first, first + frames)))  # [T, H, W, 3]
        videos.append(_square(clip, size))
    return VideoBank(torch.stack(videos), torch.tensor([r.label for r in rows]), [r.path for r in rows])


def _square(clip: Tensor, size: int) -> Tensor:
    """uint8 ``[T, H, W, 3]`` -> ``[T, size, size, 3]``: short side resized to ``size``, centre crop."""
    _, height, width, _ = clip.shape
    if (height, width) != (size, size):
        scale = size / min(height, width)
        shape = (max(size, round(height * scale)), max(size, round(width * scale)))
        x = F.interpolate(
            clip.permute(0, 3, 1, 2).float(), size=shape, mode="bilinear", antialias=True, align_corners=False
        )
        top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
        clip = (
            x[:, :, top : top + size, left : left + size]
            .round()
            .clamp(0, 255)
            .to(torch.uint8)
            .permute(0, 2, 3, 1)
        )
    return clip.contiguous()

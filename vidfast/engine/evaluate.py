"""Clip- and video-level evaluation of one classifier or a score ensemble of several.

Each video of the split is read into ``k`` evenly spaced clips (or the sliding windows that cover it with
``sliding=True``) through the data layer's clip policies (:func:`vidfast.data.read_clips`); each model's
softmax scores are averaged over the models (Kim et al.'s score ensemble) and over the clips of a video (Hara
et al.'s video-level accuracy). The report and a confusion-matrix PNG go into the run directory.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vidfast.conventions import Override
from vidfast.data.policies import ClipOutput, ClipSampling, sliding_windows, uniform_clips
from vidfast.data.reader import OpenSegment, Segment, SegmentLike, read_clips
from vidfast.engine.metrics import (
    ClassificationReport,
    classification_report,
    ensemble_scores,
    plot_confusion,
    video_scores,
)
from vidfast.engine.trainer import resolve_device
from vidfast.errors import CheckpointError, DataError, VidfastError
from vidfast.runtime import PRECISIONS, PrecisionPlan, plan_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSpec:
    """What clips a model takes: ``clip_len`` frames, one every ``frame_step``, square ``size`` crops."""

    clip_len: int
    size: int
    frame_step: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def policy(self, clips: int | None) -> ClipSampling:
        """``clips`` evenly spaced clips of this spec (None: the sliding windows covering the video)."""
        output = ClipOutput(self.mean, self.std)
        if clips is None:
            return sliding_windows(self.clip_len, self.frame_step, self.size, output=output)
        return uniform_clips(clips, self.clip_len, self.frame_step, self.size, output)


@dataclass
class LoadedClassifier:
    """A classifier in eval mode with the clip spec and class names its checkpoint recorded."""

    model: nn.Module
    spec: ClipSpec
    class_names: list[str]
    source: str


def load_classifier(path: str | Path, clip_len: int | None = None, size: int | None = None,
                    frame_step: int | None = None, convention: Override = Override()) -> LoadedClassifier:
    """Read a classification checkpoint (any layout :func:`vidfast.models.identify.identify` knows) and
    build its model on the CPU.

    Clips are normalised with the convention the file records or its layout tells, ``convention`` on top
    (refused when it contradicts the file, unless forced; a guess is logged in one line). The
    clip geometry comes from the checkpoint's ``data`` entry unless given, else from the convention's
    training clip or the model card.
    """
    from vidfast.models.identify import open_classifier

    opened = open_classifier(path, convention)
    spec = ClipSpec(
        clip_len=int(clip_len or opened.clip_len),
        size=int(size or opened.size),
        frame_step=int(frame_step or opened.frame_step),
        mean=opened.convention.unit_mean,
        std=opened.convention.unit_std,
    )
    return LoadedClassifier(model=opened.model.eval(), spec=spec, class_names=opened.identity.class_names,
                            source=str(path))


class ScoreEnsemble:
    """One or more classifiers whose softmax scores are averaged per clip.

    ``autocast`` True/False forces autocast (bf16 on a CPU, bf16 or fp16 on CUDA) on/off; ``None``: the
    precision measured fastest among those proven correct here, decided at the first batch
    (:func:`vidfast.runtime.plan_precision`; ``plan`` holds the decision).
    ``channels_last`` converts the model and clips to ``torch.channels_last_3d`` (the fast layout for oneDNN
    and cuDNN alike).
    """

    def __init__(self, members: Sequence[LoadedClassifier], device: str | torch.device = "cpu",
                 autocast: bool | None = None, channels_last: bool = True) -> None:
        if not members:
            raise ValueError("at least one --checkpoint is needed")
        sizes = {m.model.num_classes for m in members}
        if len(sizes) != 1:
            listing = ", ".join(f"{m.source}: {m.model.num_classes}" for m in members)
            raise CheckpointError(f"the checkpoints disagree on the number of classes ({listing})")
        named = [m.class_names for m in members if m.class_names]
        if any(n != named[0] for n in named):
            raise CheckpointError("the checkpoints were trained on different class lists")
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.autocast = autocast
        self.plan: PrecisionPlan | None = None
        self.channels_last = channels_last
        self.members = list(members)
        self.num_classes = sizes.pop()
        self.class_names = named[0] if named else [str(i) for i in range(self.num_classes)]
        self.specs: list[ClipSpec] = list(dict.fromkeys(m.spec for m in members))
        memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        for m in self.members:
            m.model.to(self.device, memory_format=memory_format)

    @classmethod
    def from_checkpoints(cls, paths: Sequence[str | Path], device: str = "auto", autocast: bool | None = None,
                         channels_last: bool = True, clip_len: int | None = None, size: int | None = None,
                         frame_step: int | None = None, convention: Override = Override()) -> ScoreEnsemble:
        """Load every checkpoint in ``paths`` (see :func:`load_classifier`) into one ensemble."""
        resolved = resolve_device(device)
        members = [
            load_classifier(p, clip_len=clip_len, size=size, frame_step=frame_step, convention=convention)
            for p in paths
        ]
        return cls(members, device=resolved, autocast=autocast, channels_last=channels_last)

    def check_classes(self, class_names: Sequence[str]) -> None:
        """CheckpointError unless the ensemble predicts ``class_names`` (the count; the names if known)."""
        if self.num_classes != len(class_names):
            raise CheckpointError(
                f"class-count mismatch: the checkpoint predicts {self.num_classes} classes, "
                f"the manifest has {len(class_names)}"
            )
        anonymous = self.class_names == [str(i) for i in range(self.num_classes)]
        if not anonymous and self.class_names != list(class_names):
            raise CheckpointError("the checkpoint's class names differ from the manifest's (order or names)")

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.plan is None or self.plan.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.plan.dtype)

    def _plan(self, batches: Sequence[Tensor]) -> PrecisionPlan:
        """Decide the precision once, at the first batch of each member (``batches[i]``, on the device)."""
        if self.plan is not None:
            return self.plan
        members = [(m.model, x[:1]) for m, x in zip(self.members, batches, strict=True)]

        def make_step(name: str) -> Any:
            def step() -> None:
                with torch.autocast(self.device.type, dtype=PRECISIONS[name], enabled=name != "fp32"):
                    for model, x in zip(self.members, batches, strict=True):
                        model.model(x)

            return step

        try:
            self.plan = plan_precision(members, len(batches[0]), self.device, make_step, amp=self.autocast,
                                       grads=False)
        except ValueError as exc:
            raise VidfastError(str(exc)) from None
        log.info("inference %s", self.plan.describe())
        if self.plan.fp32_layers:
            log.info("under %s autocast: %s", self.plan.name, self.plan.describe_fp32_layers())
        return self.plan

    @torch.inference_mode()
    def clip_probs(self, clips: Sequence[Tensor], batch_size: int = 16) -> Tensor:
        """Ensemble probabilities ``Tensor[k, C]`` (float32, CPU) of ``k`` clips.

        ``clips[i]`` is ``Tensor[k, 3, T, S, S]`` decoded for ``self.specs[i]`` (the same ``k`` windows each).
        """
        by_spec = dict(zip(self.specs, clips, strict=True))
        memory_format = torch.channels_last_3d if self.channels_last else torch.contiguous_format
        self._plan([by_spec[m.spec][:batch_size].to(self.device).contiguous(memory_format=memory_format)
                    for m in self.members])
        per_model = []
        for member in self.members:
            batches = []
            for chunk in by_spec[member.spec].split(batch_size):
                x = chunk.to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
                with self._autocast():
                    logits = member.model(x)
                batches.append(logits.float().softmax(dim=1).cpu())
            per_model.append(torch.cat(batches))
        return ensemble_scores(per_model)

    def video_probs(self, path: str | Path, clips: int = 10, sliding: bool = False, backend: str = "auto",
                    batch_size: int = 16) -> Tensor:
        """Video-level probabilities ``Tensor[C]``: the ensemble's clip probabilities averaged over clips."""
        decoded = decode_clips(path, self.specs, clips, sliding, backend=backend)
        return self.clip_probs(decoded, batch_size).mean(dim=0)


def decode_clips(path: str | Path | SegmentLike, specs: Sequence[ClipSpec], clips: int = 10,
                 sliding: bool = False, start: float | None = None, end: float | None = None,
                 backend: str = "auto") -> list[Tensor]:
    """Read ``path`` (or a manifest row) once for all clip specs: ``clips`` evenly spaced clips, or with
    ``sliding`` the first spec's windows (the other specs take as many evenly spaced clips).

    Returns one ``Tensor[k, 3, T, S, S]`` per spec (the same ``k`` for all); raises DataError for a bad video.
    """
    if clips < 1:
        raise ValueError(f"--clips must be at least 1, got {clips}")
    segment = Segment(str(path), start, end) if isinstance(path, str | Path) else path
    with OpenSegment(segment, backend) as opened:
        first = specs[0].policy(None if sliding else clips)
        k = first.num_samples(opened.num_frames)
        return read_clips(opened, [first, *(s.policy(k) for s in specs[1:])])


class _DecodedVideos(torch.utils.data.Dataset):
    """Item ``i``: ``(i, clips per spec or None, reason)`` for the ``i``-th row; decoding errors are data."""

    def __init__(self, specs: Sequence[ClipSpec], rows: Sequence, clips: int, sliding: bool,
                 backend: str) -> None:
        self.specs, self.rows, self.clips, self.sliding, self.backend = specs, rows, clips, sliding, backend

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[int, list[Tensor] | None, str]:
        try:
            decoded = decode_clips(self.rows[index], self.specs, self.clips, self.sliding,
                                   backend=self.backend)
        except DataError as exc:
            return index, None, str(exc)
        return index, decoded, ""


def _first(batch: list) -> object:
    return batch[0]


@dataclass
class EvalConfig:
    """Options of ``vidfast eval``; ``clip_len``, ``size``, ``frame_step`` and ``convention`` override the
    checkpoint's."""

    manifest: str
    checkpoints: list[str]
    split: str = "test"
    clips: int = 10
    sliding: bool = False
    batch_size: int = 16
    workers: int = 2
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool = True
    backend: str = "auto"
    clip_len: int | None = None
    size: int | None = None
    frame_step: int | None = None
    run_dir: str | None = None
    convention: Override = Override()


def _select_rows(manifest, split: str) -> tuple[list, list]:
    """The ``ok`` rows of ``split`` and the rows of ``split`` that indexing already marked unusable."""
    everything = manifest.select(split=split, only_ok=False)
    rows = [r for r in everything if r.status == "ok"]
    if not rows:
        splits = sorted({r.split for r in manifest.rows if r.status == "ok"})
        if not manifest.rows:
            raise DataError("the manifest is empty")
        raise DataError(f"the manifest has no usable ('ok') video in split {split!r} "
                        f"(splits with usable videos: {', '.join(splits) or 'none'})")
    return rows, [r for r in everything if r.status != "ok"]


def _shard(rows: list) -> list:
    """This rank's share of ``rows`` under torch.distributed (all rows otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return rows[dist.get_rank()::dist.get_world_size()]
    return rows


def _gather(items: list) -> list:
    """Concatenate every rank's ``items`` (identity without torch.distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return items
    gathered: list[list] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]


def _iterate(dataset: _DecodedVideos, workers: int) -> Iterator[tuple[int, list[Tensor] | None, str]]:
    if workers <= 0:
        return iter(dataset[i] for i in range(len(dataset)))
    return iter(torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=_first,
                                            prefetch_factor=2, persistent_workers=False))


def evaluate(config: EvalConfig, progress: bool = False) -> ClassificationReport:
    """Evaluate the checkpoint(s) of ``config`` on a manifest split; write the report files into ``run_dir``.

    Under torch.distributed every rank scores its share of the videos and all ranks return the full report
    (rank 0 writes the files).
    """
    from vidfast.data import read_manifest

    manifest = read_manifest(config.manifest)
    rows, unusable = _select_rows(manifest, config.split)
    ensemble = ScoreEnsemble.from_checkpoints(
        config.checkpoints, device=config.device, autocast=config.amp, channels_last=config.channels_last,
        clip_len=config.clip_len, size=config.size, frame_step=config.frame_step,
        convention=config.convention,
    )
    if manifest.class_names:  # a split without any label (a test set) takes the checkpoint's names
        ensemble.check_classes(manifest.class_names)
    class_names = list(manifest.class_names) or ensemble.class_names
    mine = _shard(list(range(len(rows))))
    dataset = _DecodedVideos(ensemble.specs, [rows[i] for i in mine], config.clips, config.sliding,
                             config.backend)
    results: list[tuple[int, Tensor | None, str]] = []
    with _progress(progress, len(mine), "eval") as advance:
        for index, decoded, reason in _iterate(dataset, min(config.workers, len(mine))):
            row_id = mine[index]
            if decoded is None:
                log.warning("skipping %s: %s", rows[row_id].path, reason)
                results.append((row_id, None, reason))
            else:
                results.append((row_id, ensemble.clip_probs(decoded, config.batch_size), ""))
            advance()
    results = _gather(results)

    scored = [(i, probs) for i, probs, _ in results if probs is not None]
    failed = [{"path": rows[i].path, "reason": reason} for i, probs, reason in results if probs is None]
    failed += [{"path": r.path, "reason": r.reason or r.status} for r in unusable]
    if not scored:
        raise DataError(f"none of the {len(rows)} videos of split {config.split!r} could be decoded "
                        f"(first error: {failed[0]['reason']})")
    clip_scores = torch.cat([probs for _, probs in scored])
    video_index = torch.cat([torch.full((len(probs),), i, dtype=torch.long) for i, probs in scored])
    clip_labels = torch.tensor([rows[i].label for i in video_index.tolist()], dtype=torch.long)
    labelled = clip_labels >= 0  # label -1: unknown (e.g. a Kinetics or ActivityNet test split)
    report, _, _ = classification_report(clip_scores[labelled], clip_labels[labelled], video_index[labelled],
                                         class_names, skipped=len(failed))
    ids, scores = video_scores(clip_scores, video_index)
    report.num_unlabelled = len(ids) - report.num_videos
    report.extra = {
        "checkpoints": [str(p) for p in config.checkpoints],
        "manifest": str(config.manifest),
        "split": config.split,
        "clips": "sliding" if config.sliding else config.clips,
        "precision": ensemble.plan.name if ensemble.plan is not None else None,
        "labels": _labels_note(report, config.split),
        "skipped_videos": failed,
    }
    if config.run_dir is not None and _is_main_process():
        write_report(report, config.run_dir, [rows[i] for i in ids.tolist()], scores)
    return report


def _labels_note(report: ClassificationReport, split: str) -> str:
    """What the accuracies cover, given the videos without a label."""
    if not report.num_unlabelled:
        return f"all {report.num_videos} videos labelled"
    if not report.num_videos:
        return (f"split {split!r} has no labels: no accuracy; predictions.csv has the top classes of its "
                f"{report.num_unlabelled} videos")
    return (f"accuracy over the {report.num_videos} labelled videos; {report.num_unlabelled} videos without "
            "a label are in predictions.csv only")


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def write_report(report: ClassificationReport, run_dir: str | Path, rows: Sequence, scores: Tensor) -> Path:
    """Write ``report.json``, ``confusion.png`` (when some video has a label) and ``predictions.csv`` (a line
    per video: path, label, then the top-k classes and their scores) to ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "report.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2))
    tmp.replace(path)
    if report.num_videos:
        plot_confusion(report.confusion, report.class_names, run_dir / "confusion.png")
    names, k = report.class_names, report.topk
    with open(run_dir / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        header = [f"{kind}{i}" for i in range(1, k + 1) for kind in ("top", "score")]
        writer.writerow(["path", "label", *header])
        for row, probs in zip(rows, scores, strict=True):
            values, indices = probs.topk(k)
            pairs = zip(values.tolist(), indices.tolist(), strict=True)
            top = [item for score, i in pairs for item in (names[i], f"{score:.4f}")]
            writer.writerow([row.path, row.label_name if row.label >= 0 else "", *top])
    return path


@contextlib.contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator:
    """A rich progress bar (``advance()`` per item) when ``enabled`` and on a terminal; a no-op otherwise."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)

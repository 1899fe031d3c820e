"""Clip- and video-level evaluation of one classifier or a score ensemble of several.

Each video of the split is read into ``k`` evenly spaced clips (or the sliding windows that cover it with
``sliding=True``, or the samples of a clip policy named by ``policy``) by the data layer's loader in its
per-video mode (every video read once, for all members, by exactly one rank); each model's
softmax scores are averaged over the models (Kim et al.'s score ensemble) and over the clips of a video (Hara
et al.'s video-level accuracy). The report and a confusion-matrix PNG go into the run directory.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from vidfast.data.loader import LoaderConfig, make_loader
from vidfast.engine.config import EvalConfig
from vidfast.engine.distributed import all_gather_object
from vidfast.engine.metrics import ClassificationReport, classification_report, plot_confusion, video_scores
from vidfast.errors import DataError
from vidfast.progress import Progress
from vidfast.ranks import current_rank
from vidfast.scoring import ScoreEnsemble, ensemble_policies

log = logging.getLogger(__name__)


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


def evaluate(config: EvalConfig, progress: bool = False, ensemble: ScoreEnsemble | None = None
             ) -> ClassificationReport:
    """Evaluate the checkpoint(s) of ``config`` on a manifest split; write the report files into ``run_dir``.
    ``ensemble``: a scorer with :class:`ScoreEnsemble`'s evaluation interface to use instead of the
    checkpoints (``vidfast.deploy.predict.OnnxEnsemble`` for an exported model).

    Under torch.distributed every rank scores its share of the videos and all ranks return the full report
    (rank 0 writes the files).
    """
    from vidfast.data import read_manifest

    manifest = read_manifest(config.manifest)
    rows, unusable = _select_rows(manifest, config.split)
    ensemble = ensemble or ScoreEnsemble.from_checkpoints(
        config.checkpoints, device=config.device, autocast=config.amp, channels_last=config.channels_last,
        clip_len=config.clip_len, size=config.size, frame_step=config.frame_step,
        convention=config.convention,
    )
    if manifest.class_names:  # a split without any label (a test set) takes the checkpoint's names
        ensemble.check_classes(manifest.class_names)
    class_names = list(manifest.class_names) or ensemble.class_names
    policies = ensemble_policies(ensemble.specs, config.clips, config.sliding, config.policy)
    loader = make_loader(manifest, policies, LoaderConfig(
        backend=config.backend, batch_size=1, workers=min(config.workers, len(rows)), shuffle=False,
        per_video=True, empty_batches=True), split=config.split)
    scored: list[tuple[int, Tensor]] = []
    failed: list[dict[str, str]] = []
    with Progress("eval", len(loader), "auto" if progress else "none", transient=True) as bar:
        for batch in loader:
            failed += [{"path": skip.path, "reason": skip.reason} for skip in batch.skipped]
            if batch.videos:
                probs = ensemble.clip_probs(batch.videos, config.batch_size)
                scored.append((int(batch.video_index[0]), probs))
            bar.advance()
    rank = current_rank()
    scored = [pair for part in all_gather_object(scored, rank) for pair in part]
    failed = [skip for part in all_gather_object(failed, rank) for skip in part]

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
        "onnx": config.onnx,
        "manifest": str(config.manifest),
        "split": config.split,
        "clips": config.policy or ("sliding" if config.sliding else config.clips),
        "precision": ensemble.plan.name if ensemble.plan is not None else None,
        "labels": _labels_note(report, config.split),
        "skipped_videos": failed,
    }
    if config.run_dir is not None and current_rank().is_main:
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


@dataclass
class PuzzleEvalConfig:
    """What :func:`evaluate_puzzle` scores: the puzzle network of ``checkpoint`` on at least ``puzzles``
    puzzles of each kind cut from the ``split`` videos of ``manifest``."""

    manifest: str
    checkpoint: str
    split: str = "val"
    puzzles: int = 200
    workers: int = 0
    device: str = "auto"


def evaluate_puzzle(config: PuzzleEvalConfig) -> dict[str, float]:
    """Pretext accuracy of a puzzle checkpoint per puzzle kind: ``{"val_spatial_acc", "val_temporal_acc",
    "val_spatial_rot_acc", "val_temporal_rot_acc"}`` (the prefix is the split's name; the rotation entries
    only
    for a sampler that rotates pieces), each over at least ``config.puzzles`` puzzles of that kind, as many
    from
    every video of the split, cut with the checkpoint's own sampler options (a network that solves one kind
    only shows it here, where the mixed accuracy hides it). Empty when the split has no video."""
    from dataclasses import replace

    from vidfast.data import read_manifest
    from vidfast.data.policies import ClipOutput, CubicPuzzle
    from vidfast.devices import resolve_device
    from vidfast.engine.build import puzzle_config, run_convention
    from vidfast.engine.config import config_from_dict
    from vidfast.engine.tasks import PuzzleTask
    from vidfast.models import read_checkpoint

    manifest = read_manifest(config.manifest)
    videos = len(manifest.select(config.split))
    if not videos:
        return {}
    ckpt = read_checkpoint(config.checkpoint)
    cfg = config_from_dict(ckpt["config"])
    model = PuzzleTask.from_config(cfg).build(cfg, []).model
    model.load_state_dict(ckpt["state_dict"])
    device = resolve_device(config.device)
    model.to(device).eval()
    convention = run_convention(cfg)
    output = ClipOutput(convention.unit_mean, convention.unit_std, torch.float32, False)
    accuracy: dict[str, float] = {}
    for kind, spatial_prob in (("spatial", 1.0), ("temporal", 0.0)):
        policy = CubicPuzzle(replace(puzzle_config(cfg), spatial_prob=spatial_prob), output)
        correct = rot_correct = count = rot_count = 0
        for draw in range(-(-config.puzzles // videos)):
            loader = make_loader(manifest, policy, LoaderConfig(batch_size=cfg.data.batch_size,
                                                                workers=config.workers, seed=draw,
                                                                shuffle=False), split=config.split)
            with torch.no_grad():
                for batch in loader:
                    out = model(batch.video.to(device))
                    perm_label, rot_label = batch.targets["perm_label"], batch.targets["rot_label"]
                    correct += int((out.perm.argmax(1).cpu() == perm_label).sum())
                    count += len(perm_label)
                    if out.rot.shape[-1] > 0:
                        rot_correct += int((out.rot.argmax(-1).cpu() == rot_label).sum())
                        rot_count += rot_label.numel()
        if count:
            accuracy[f"{config.split}_{kind}_acc"] = correct / count
        if rot_count:
            accuracy[f"{config.split}_{kind}_rot_acc"] = rot_correct / rot_count
    return accuracy

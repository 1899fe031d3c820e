"""Classification metrics: top-k, clip- to video-level aggregation, score ensembles, confusion matrices.

Every function takes plain tensors so that the same code serves evaluation, prediction and unit tests with
hand-made scores. Scores are probabilities (softmax outputs); averaging probabilities is what Hara et al.
do to turn clip scores into a video score and what Kim et al. call a score ensemble when the averaged
models differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor


def topk_hits(scores: Tensor, labels: Tensor, k: int) -> Tensor:
    """Bool ``Tensor[N]``: is ``labels[i]`` among the ``min(k, C)`` top entries of ``scores[i]``?

    ``scores``: ``Tensor[N, C]``; ``labels``: long ``Tensor[N]``.
    """
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(
            f"scores must be [N, C] and labels [N], got {tuple(scores.shape)} and {tuple(labels.shape)}"
        )
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == labels.unsqueeze(1)).any(dim=1)


def topk_accuracy(scores: Tensor, labels: Tensor, k: int) -> float:
    """Fraction in [0, 1] of rows whose label is in the top ``min(k, C)``; NaN for zero rows."""
    if scores.shape[0] == 0:
        return math.nan
    return topk_hits(scores, labels, k).double().mean().item()


def video_scores(clip_scores: Tensor, video_index: Tensor) -> tuple[Tensor, Tensor]:
    """Average clip scores per video.

    ``clip_scores``: ``Tensor[N, C]``; ``video_index``: long ``Tensor[N]`` (any ids, not necessarily dense).
    Returns ``(ids: Tensor[V], scores: Tensor[V, C])`` with ``ids`` sorted ascending.
    """
    ids, inverse = torch.unique(video_index, sorted=True, return_inverse=True)
    sums = torch.zeros(len(ids), clip_scores.shape[1], dtype=torch.float64)
    sums.index_add_(0, inverse, clip_scores.to(torch.float64))
    counts = torch.bincount(inverse, minlength=len(ids)).to(torch.float64)
    return ids, (sums / counts.unsqueeze(1)).to(clip_scores.dtype)


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Long ``Tensor[C, C]``: entry ``[true, predicted]`` counts the samples with that pair."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """Float ``Tensor[C]``: recall of each class (diagonal over row sum); NaN for a class without samples."""
    totals = confusion.sum(dim=1).to(torch.float64)
    return torch.where(totals > 0, confusion.diagonal().to(torch.float64) / totals.clamp(min=1), math.nan)


@dataclass
class ClassificationReport:
    """What ``vidfast eval`` writes to ``report.json``; accuracies are fractions in [0, 1].

    ``num_videos``/``num_clips`` count the labelled videos the accuracies are over, ``num_unlabelled`` the
    videos without a label (scored, not counted). ``per_class`` maps a class name to its video-level accuracy
    (``None`` when the split has no video of it);
    ``confusion`` is video-level, rows = true class, columns = predicted class; ``topk`` is the k of the
    ``*_top5`` keys (``min(5, num_classes)``).
    """

    clip_top1: float
    clip_top5: float
    video_top1: float
    video_top5: float
    per_class: dict[str, float | None]
    confusion: list[list[int]]
    num_videos: int
    num_clips: int
    skipped: int
    topk: int
    class_names: list[str]
    num_unlabelled: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN accuracies of empty evaluations become ``None``)."""
        data = asdict(self)
        extra = data.pop("extra")
        for key in ("clip_top1", "clip_top5", "video_top1", "video_top5"):
            if math.isnan(data[key]):
                data[key] = None
        return {**data, **extra}


def classification_report(
    clip_scores: Tensor,
    clip_labels: Tensor,
    video_index: Tensor,
    class_names: Sequence[str],
    skipped: int = 0,
    k: int = 5,
) -> tuple[ClassificationReport, Tensor, Tensor]:
    """Clip- and video-level metrics from clip probabilities ``Tensor[N, C]``, labels and video ids ``[N]``.

    Every clip of a video must carry the video's label, a class index (no -1: leave unlabelled clips out;
    no clips at all gives NaN accuracies). Returns the report plus the video ids ``Tensor[V]``
    and video scores ``Tensor[V, C]`` (for per-video outputs).
    """
    num_classes = len(class_names)
    if clip_scores.ndim != 2 or clip_scores.shape[1] != num_classes:
        raise ValueError(f"clip_scores must be [N, {num_classes}], got {tuple(clip_scores.shape)}")
    if bool((clip_labels < 0).any()):
        raise ValueError("clip_labels must be class indices >= 0 (leave unlabelled clips, label -1, out)")
    ids, scores = video_scores(clip_scores, video_index)
    inverse = torch.searchsorted(ids, video_index)
    labels = torch.zeros(len(ids), dtype=torch.long).scatter_(0, inverse, clip_labels.long())
    if bool((labels[inverse] != clip_labels).any()):
        raise ValueError("clips of one video carry different labels")
    confusion = confusion_matrix(scores.argmax(dim=1), labels, num_classes)
    recall = per_class_accuracy(confusion)
    report = ClassificationReport(
        clip_top1=topk_accuracy(clip_scores, clip_labels, 1),
        clip_top5=topk_accuracy(clip_scores, clip_labels, k),
        video_top1=topk_accuracy(scores, labels, 1),
        video_top5=topk_accuracy(scores, labels, k),
        per_class={
            name: (None if math.isnan(acc) else acc)
            for name, acc in zip(class_names, recall.tolist(), strict=True)
        },
        confusion=confusion.tolist(),
        num_videos=len(ids),
        num_clips=int(clip_scores.shape[0]),
        skipped=skipped,
        topk=min(k, num_classes),
        class_names=list(class_names),
    )
    return report, ids, scores


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | Path,
    title: str = "Video-level confusion matrix",
) -> Path:
    """Draw the confusion matrix (rows true, columns predicted, colour = row-normalised share) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.as_tensor(confusion, dtype=torch.float64)
    shares = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    n = len(class_names)
    side = min(4 + 0.35 * n, 24)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= 40:
        ax.set_xticks(range(n), labels=list(class_names), rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels=list(class_names), fontsize=8)
    if n <= 20:
        for i, j in counts.nonzero().tolist():
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

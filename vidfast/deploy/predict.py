"""Video-level prediction for files on disk, from PyTorch checkpoints or an exported ONNX model.

Both paths decode ``k`` evenly spaced clips per video and average the softmax scores over the clips (and
over the models of a checkpoint ensemble). The PyTorch path runs channels_last_3d, with autocast on CUDA
(see :class:`~vidfast.scoring.ScoreEnsemble`); the ONNX path goes through
:class:`vidfast.deploy.OnnxClassifier` (onnxruntime, best provider installed) and needs no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vidfast.conventions import Override
from vidfast.deploy.classifier import softmax
from vidfast.errors import VidfastError


class VideoScorer(Protocol):
    """Anything that turns a video file into class probabilities."""

    class_names: list[str]

    def video_probs(self, path: str | Path, clips: int = 10, policy: str | None = None) -> Any:
        """Probabilities ``[C]`` (a numpy array or CPU tensor) of ``path`` averaged over ``clips`` evenly
        spaced clips, or over the samples of the registered clip policy ``policy``."""
        ...


@dataclass
class VideoPrediction:
    """The ``top`` classes of one video as ``(name, probability)``, best first; ``error`` when it failed."""

    path: str
    top: list[tuple[str, float]]
    error: str | None = None

    def to_dict(self) -> dict:
        """JSON-ready: ``{"path", "labels": [{"label", "score"}], "error"}``."""
        return {
            "path": self.path,
            "labels": [{"label": name, "score": score} for name, score in self.top],
            "error": self.error,
        }


class OnnxScorer:
    """:class:`vidfast.deploy.OnnxClassifier` behind the :class:`VideoScorer` interface."""

    def __init__(self, model_path: str | Path, providers: str | Sequence[str] = "auto") -> None:
        from vidfast.deploy import OnnxClassifier

        self.classifier = OnnxClassifier(model_path, providers=providers)
        self.class_names = list(self.classifier.class_names)

    def video_probs(self, path: str | Path, clips: int = 10, policy: str | None = None) -> np.ndarray:
        if policy is not None:
            raise VidfastError("an --onnx model reads evenly spaced clips (--clips); a clip policy needs the "
                               "--checkpoint it was trained as")
        return self.classifier.predict_video(path, clips=clips).astype(np.float32).reshape(-1)


@dataclass(frozen=True)
class RuntimePlan:
    """What serves an ONNX model in evaluation, as a report names it (``name``: e.g. "int8 on OpenVINO")."""

    name: str


class OnnxEnsemble:
    """An exported model behind the evaluation interface of :class:`vidfast.scoring.ScoreEnsemble`
    (``specs``, ``clip_probs``, ``check_classes``, ``class_names``, ``plan``), so that ``vidfast eval --onnx``
    scores the clips the evaluation decodes for a checkpoint. A preprocessing graph gets the decoded
    clip-sized frames rounded to uint8 (as a client that resizes frames itself feeds it)."""

    def __init__(self, model_path: str | Path, providers: str | Sequence[str] = "auto") -> None:
        from vidfast.deploy import OnnxClassifier
        from vidfast.scoring import ClipSpec

        self.classifier = OnnxClassifier(model_path, providers=providers)
        meta = self.classifier.metadata
        if meta.task != "classify":
            raise VidfastError(f"{model_path} outputs {meta.task}, not class scores: it cannot be evaluated")
        t, h, w = meta.clip
        if h != w:
            raise VidfastError(f"evaluation takes square clips, {model_path} takes {t}x{h}x{w}")
        conv = meta.input_convention
        mean, std = ((0.0,) * 3, (1 / 255,) * 3) if meta.preprocess else (conv.unit_mean, conv.unit_std)
        self.specs = [ClipSpec(t, h, meta.frame_step, mean, std)]
        self.num_classes = int(self.classifier.session.get_outputs()[0].shape[1])
        self.class_names = self.classifier.class_names or [str(i) for i in range(self.num_classes)]
        self.plan = RuntimePlan(f"{meta.precision} on {self.classifier.provider}")

    def check_classes(self, class_names: Sequence[str]) -> None:
        from vidfast.scoring import ScoreEnsemble

        ScoreEnsemble.check_classes(self, class_names)  # type: ignore[arg-type]  (needs only the two names)

    def clip_probs(self, clips: Sequence[Any], batch_size: int = 16) -> Any:
        """Probabilities ``Tensor[k, C]`` of the decoded clips ``clips[0]`` (``Tensor[k, 3, T, S, S]``)."""
        import torch

        (x,) = clips
        if self.classifier.metadata.preprocess:
            x = x.round().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1)
        self.classifier.max_batch = self.classifier.batch_size or batch_size
        return torch.from_numpy(softmax(self.classifier.predict(x)))


def open_scorer(
    checkpoints: Sequence[str | Path] = (),
    onnx: str | Path | None = None,
    device: str = "auto",
    autocast: bool | None = None,
    channels_last: bool = True,
    convention: Override = Override(),
) -> VideoScorer:
    """A scorer for ``--checkpoint`` files (score ensemble when several; ``convention`` overrides their input
    convention) or for one ``--onnx`` model (its metadata carries the convention)."""
    if bool(checkpoints) == (onnx is not None):
        raise ValueError("give either --checkpoint (one or more) or --onnx, not both and not neither")
    if onnx is not None:
        if convention != Override():
            raise ValueError("an --onnx model carries its input convention: --preset, --mean, --std and "
                             "--value-scale do not apply")
        if device not in ("auto", "cpu", "cuda", "openvino"):
            raise ValueError(f"--device must be cpu, cuda, openvino or auto, got {device!r}")
        return OnnxScorer(onnx, providers=device)
    from vidfast.scoring import ScoreEnsemble

    return ScoreEnsemble.from_checkpoints(
        checkpoints, device=device, autocast=autocast, channels_last=channels_last, convention=convention
    )


def top_classes(probs: Any, class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``min(k, C)`` most probable classes of ``probs`` (``[C]``, numpy or CPU tensor) as
    ``(name, probability)``, best first (ties: lower index first)."""
    values = np.asarray(probs, dtype=np.float32).reshape(-1)
    order = np.argsort(-values, kind="stable")[:k]
    return [(class_names[i], float(values[i])) for i in order.tolist()]


def predict_videos(
    scorer: VideoScorer, paths: Sequence[str | Path], topk: int = 5, clips: int = 10,
    policy: str | None = None,
) -> list[VideoPrediction]:
    """Predict every file of ``paths`` from ``clips`` evenly spaced clips (or the samples of the registered
    clip policy ``policy``); a file that cannot be used gets ``error`` set (the run goes on)."""
    if topk < 1:
        raise ValueError(f"--topk must be at least 1, got {topk}")
    if clips < 1:
        raise ValueError(f"--clips must be at least 1, got {clips}")
    results = []
    for path in paths:
        try:
            probs = scorer.video_probs(path, clips=clips, policy=policy)
        except VidfastError as exc:
            results.append(VideoPrediction(path=str(path), top=[], error=" ".join(str(exc).split())))
            continue
        results.append(VideoPrediction(path=str(path), top=top_classes(probs, scorer.class_names, topk)))
    return results

"""``OnnxClassifier``: a vidfast ONNX export behind onnxruntime, from clips or straight from a video file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidfast.deploy.metadata import ModelMetadata, read_metadata
from vidfast.deploy.session import make_session
from vidfast.errors import VidfastError

#: onnxruntime input type string -> numpy dtype the model is fed
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}
DEFAULT_MAX_BATCH = 16


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[N, C]`` logits (float32, numerically stable)."""
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class OnnxClassifier:
    """Runs an exported model (``vidfast export``) with onnxruntime on the best provider installed.

    ``providers="auto"`` tries TensorRT, CUDA, then CPU; ``provider`` tells which one serves the session. The
    model's ``vidfast.*`` metadata gives the clip size, normalisation, frame step and class names.
    """

    def __init__(self, path: str | Path, providers: str | Sequence[str] = "auto", threads: int | None = None,
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.path = Path(path)
        self.metadata: ModelMetadata = read_metadata(self.path)
        if self.metadata.task == "puzzle":
            raise VidfastError(
                f"{self.path} is a full cubic-puzzle export; OnnxClassifier serves classifier and backbone "
                "exports"
            )
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.session = make_session(self.path, providers, threads, fp16=self.metadata.precision == "fp16")
        self.provider: str = self.session.get_providers()[0]
        (inp,) = self.session.get_inputs()
        self.input_name: str = inp.name
        self.input_dtype = _ORT_DTYPES.get(inp.type)
        if self.input_dtype is None:
            raise VidfastError(f"{self.path}: unsupported input type {inp.type}")
        #: the graph's fixed batch size, or None when its batch axis is dynamic
        self.batch_size: int | None = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.max_batch = self.batch_size or max_batch

    @property
    def class_names(self) -> list[str]:
        """Class names stored at export (empty when the checkpoint had none)."""
        return list(self.metadata.class_names)

    @property
    def clip(self) -> tuple[int, int, int]:
        """The clip size ``(T, H, W)`` the graph takes."""
        return self.metadata.clip

    def expected_shape(self) -> tuple[int, ...]:
        """Per-sample input shape: ``(3, T, H, W)`` for float clips, ``(T, H, W, 3)`` for uint8 frames."""
        t, h, w = self.metadata.clip
        return (t, h, w, 3) if self.metadata.preprocess else (3, t, h, w)

    def predict(self, clips) -> np.ndarray:
        """Model outputs ``float32 [N, C]`` (logits, or features for a backbone export) of a batch.

        ``clips``: numpy array or torch tensor; float ``[N, 3, T, H, W]`` normalised clips, or for a model
        exported with ``--with-preprocess`` uint8 ``[N, T, H, W, 3]`` frames. Runs in chunks of at most
        ``max_batch`` (the fixed batch size of a static-batch export, the last chunk padded).
        """
        x = _as_numpy(clips)
        want = self.expected_shape()
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            kind = "uint8 frames" if self.metadata.preprocess else "float clips"
            raise ValueError(f"clips must be {kind} [N, {', '.join(map(str, want))}], got {list(x.shape)}")
        if self.metadata.preprocess and x.dtype != np.uint8:
            raise ValueError(f"this model preprocesses in-graph and takes uint8 frames, got {x.dtype}")
        if not self.metadata.preprocess and not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"clips must be a floating-point array, got {x.dtype}")
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        outputs = []
        for start in range(0, len(x), self.max_batch):
            chunk = x[start:start + self.max_batch]
            n = len(chunk)
            if self.batch_size is not None and n < self.batch_size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - n, axis=0)])
            outputs.append(self.session.run(None, {self.input_name: chunk})[0][:n])
        if not outputs:
            raise ValueError("clips is empty")
        return np.concatenate(outputs).astype(np.float32)

    def predict_video(self, path: str | Path, clips: int = 10, backend: str = "auto") -> np.ndarray:
        """Video-level scores ``float32 [C]``: ``clips`` evenly spaced centre-cropped clips decoded with
        :func:`vidfast.data.load_clips`, softmax probabilities averaged over the clips (features
        averaged for a backbone export). Feeds uint8 frames when the model preprocesses in-graph."""
        from vidfast.data.reader import load_clips

        t, h, w = self.metadata.clip
        if h != w:
            raise VidfastError(f"predict_video needs a square clip, the model takes {t}x{h}x{w}")
        batch = load_clips(
            path, clip_len=t, frame_step=self.metadata.frame_step, size=h, clips=clips, backend=backend,
            normalize=not self.metadata.preprocess, mean=self.metadata.input_convention.unit_mean,
            std=self.metadata.input_convention.unit_std,
        )
        out = self.predict(batch)
        scores = softmax(out) if self.metadata.task == "classify" else out
        return scores.mean(axis=0)


def _as_numpy(x) -> np.ndarray:
    """A numpy view of a numpy array or (CPU/CUDA, any memory format) torch tensor."""
    if isinstance(x, np.ndarray):
        return x
    detach = getattr(x, "detach", None)
    if detach is not None:
        t = detach().cpu().contiguous()
        return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()  # numpy has no bfloat16
    return np.asarray(x)

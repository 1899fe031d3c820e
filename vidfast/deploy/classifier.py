"""``OnnxClassifier``: a vidfast ONNX export behind onnxruntime, from clips or straight from a video file.

Needs numpy, onnx, onnxruntime and PyAV, not torch: videos are read by :mod:`vidfast.deploy.video` and the
evaluation crop runs in ONNX (:mod:`vidfast.deploy.preprocess`): inside a ``--with-preprocess`` graph, or
as a small graph of its own in front of one that takes float clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidfast.deploy.metadata import ModelMetadata, read_metadata
from vidfast.deploy.session import make_session, resolve_providers
from vidfast.errors import DataError, VidfastError

#: onnxruntime input type string -> numpy dtype the model is fed
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}
DEFAULT_MAX_BATCH = 16
#: float32 bytes of cropped frames a chunk of raw video frames may expand to inside a preprocessing graph
FRAMES_CHUNK_BYTES = 2**28


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[N, C]`` logits (float32, numerically stable)."""
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class OnnxClassifier:
    """Runs an exported model (``vidfast export``) on the best runtime installed.

    ``providers="auto"`` tries onnxruntime's TensorRT, then CUDA; on a CPU it times onnxruntime's CPU provider
    and OpenVINO (when installed) on this model at a batch of ``min(max_batch, 8)`` and keeps the faster
    (``runtime_seconds`` holds the measurement). ``"openvino"`` or an onnxruntime provider name asks for one;
    ``provider`` tells which one serves. The model's ``vidfast.*`` metadata gives the clip size,
    normalisation, frame step and class names.
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
        self.threads = threads
        self._crop = None  # the evaluation crop's session, made on first use
        #: seconds per batch of each CPU runtime timed by ``providers="auto"`` (empty: nothing was timed)
        self.runtime_seconds: dict[str, float] = {}
        self.session = self._open_session(providers, threads, max_batch)
        self.provider: str = self.session.get_providers()[0]
        (inp,) = self.session.get_inputs()
        self.input_name: str = inp.name
        self.input_dtype = _ORT_DTYPES.get(inp.type)
        if self.input_dtype is None:
            raise VidfastError(f"{self.path}: unsupported input type {inp.type}")
        #: the graph's fixed batch size, or None when its batch axis is dynamic
        self.batch_size: int | None = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.max_batch = self.batch_size or max_batch

    def _open_session(self, providers: str | Sequence[str], threads: int | None, max_batch: int):
        from vidfast.deploy.openvino import PROVIDER, OpenVinoSession, fastest_cpu_session, openvino_available

        if isinstance(providers, str) and providers.lower() == PROVIDER.lower():
            return OpenVinoSession(self.path, threads)
        fp16 = self.metadata.precision == "fp16"
        if providers != "auto" or fp16 or not openvino_available() or resolve_providers("auto") != [
                "CPUExecutionProvider"]:
            return make_session(self.path, providers, threads, fp16=fp16)
        session, self.runtime_seconds = fastest_cpu_session(self.path, self._sample, min(max_batch, 8),
                                                            threads)
        return session

    def _sample(self, n: int) -> np.ndarray:
        """A seeded input batch of ``n`` clips in the graph's input format, for timing."""
        t, h, w = self.metadata.clip
        rng = np.random.default_rng(0)
        if self.metadata.preprocess:
            return rng.integers(0, 256, (n, t, h, w, 3), dtype=np.uint8)
        return rng.standard_normal((n, 3, t, h, w), dtype=np.float32)

    @property
    def class_names(self) -> list[str]:
        """Class names stored at export (empty when the checkpoint had none)."""
        return list(self.metadata.class_names)

    @property
    def clip(self) -> tuple[int, int, int]:
        """The clip size ``(T, H, W)`` the graph takes."""
        return self.metadata.clip

    def expected_shape(self) -> tuple[int | str, ...]:
        """Per-sample input shape: ``(3, T, H, W)`` for float clips, ``(T, H, W, 3)`` for uint8 frames
        (``(T, "H", "W", 3)`` when the graph takes frames of any size)."""
        t, h, w = self.metadata.clip
        if self.metadata.any_frame_size:
            return (t, "H", "W", 3)
        return (t, h, w, 3) if self.metadata.preprocess else (3, t, h, w)

    def predict(self, clips) -> np.ndarray:
        """Model outputs ``float32 [N, C]`` (logits, or features for a backbone export) of a batch.

        ``clips``: numpy array or torch tensor; float ``[N, 3, T, H, W]`` normalised clips, or for a model
        exported with ``--with-preprocess`` uint8 ``[N, T, H, W, 3]`` frames (of any ``H, W`` where the
        graph crops and resizes them itself). Runs in chunks of at most ``max_batch`` (the fixed batch size
        of a static-batch export, the last chunk padded).
        """
        x = _as_numpy(clips)
        want = self.expected_shape()
        fits = x.ndim == 5 and all(isinstance(d, str) or d == n
                                   for d, n in zip(want, x.shape[1:], strict=True))
        if not fits or min(x.shape) < 1:
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

    def predict_video(self, path: str | Path, clips: int = 10) -> np.ndarray:
        """Video-level scores ``float32 [C]``: ``clips`` evenly spaced clips (the evaluation's
        ``uniform_clips``, central square crop), softmax probabilities averaged over the clips (features
        averaged for a backbone export). The file is read by :mod:`vidfast.deploy.video` (a frame folder by
        the training install's decoder)."""
        t, h, w = self.metadata.clip
        if h != w:
            raise VidfastError(f"predict_video needs a square clip, the model takes {t}x{h}x{w}")
        frames, index = _clip_frames(path, t, self.metadata.frame_step, clips)
        per_clip = t * min(frames.shape[1:3]) ** 2 * 3 * 4
        chunk = max(1, min(self.max_batch, FRAMES_CHUNK_BYTES // per_clip))
        outputs = [self._predict_frames(frames[index[i:i + chunk]]) for i in range(0, len(index), chunk)]
        out = np.concatenate(outputs)
        scores = softmax(out) if self.metadata.task == "classify" else out
        return scores.mean(axis=0)

    def _predict_frames(self, frames: np.ndarray) -> np.ndarray:
        """Outputs ``[N, C]`` of uint8 frames ``[N, T, H, W, 3]`` of any size, whatever input the graph
        takes: a preprocessing graph that crops gets them as they are; otherwise the evaluation crop runs
        first in the preprocessing graph of :mod:`vidfast.deploy.preprocess` (for a fixed-size preprocessing
        graph with identity normalisation, rounded back to uint8)."""
        from vidfast.deploy.preprocess import RGB_INPUT

        if self.metadata.any_frame_size:
            return self.predict(frames)
        (clip,) = self._crop_session().run(None, {RGB_INPUT: np.ascontiguousarray(frames)})
        if self.metadata.preprocess:
            clip = np.clip(np.rint(clip), 0, 255).astype(np.uint8).transpose(0, 2, 3, 4, 1)
        return self.predict(clip)

    def _crop_session(self):
        if self._crop is None:
            from vidfast.deploy.preprocess import preprocess_graph

            conv = self.metadata.input_convention
            # a fixed-size preprocessing graph normalises itself: the crop only resizes (x / 255 - 0) * 255
            mean, std = ((0.0,) * 3, (1 / 255,) * 3) if self.metadata.preprocess else (conv.unit_mean,
                                                                                       conv.unit_std)
            graph = preprocess_graph(self.metadata.clip, mean, std).SerializeToString()
            self._crop = make_session(graph, "cpu", self.threads)
        return self._crop


def _clip_frames(path: str | Path, clip_len: int, frame_step: int,
                 clips: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct frames ``uint8 [K, H, W, 3]`` of ``clips`` evenly spaced clips of ``path`` and each
    clip's rows into them, ``int [clips, clip_len]``."""
    from vidfast.deploy.video import VideoFile, uniform_clip_indices

    if clips < 1:
        raise ValueError(f"clips must be at least 1, got {clips}")
    if Path(path).is_dir():
        try:
            from vidfast.data.decoders import open_video
        except ImportError as exc:
            raise DataError(f"{path}: frame folders are read by the training install ({exc})") from None
        with open_video(str(path), "frame_folder") as video:
            wanted, inverse = _plan(uniform_clip_indices(video.num_frames, clips, clip_len, frame_step))
            return video.get_frames(wanted).numpy(), inverse
    with VideoFile(path) as video:
        wanted, inverse = _plan(uniform_clip_indices(video.num_frames, clips, clip_len, frame_step))
        return video.frames(wanted), inverse


def _plan(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wanted, inverse = np.unique(index, return_inverse=True)
    return wanted, inverse.reshape(index.shape)


def _as_numpy(x) -> np.ndarray:
    """A numpy view of a numpy array or (CPU/CUDA, any memory format) torch tensor."""
    if isinstance(x, np.ndarray):
        return x
    detach = getattr(x, "detach", None)
    if detach is not None:
        t = detach().cpu().contiguous()
        return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()  # numpy has no bfloat16
    return np.asarray(x)

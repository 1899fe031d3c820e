"""The ``dali`` backend: NVIDIA DALI's ``decoders.video`` operator, NVDEC on the GPU (first in ``auto`` order
there); on the CPU it only decodes VP8/VP9/MJPEG (last in ``auto`` order). In DataLoader workers on a GPU the
decode is deferred: workers read the file, the main process decodes the batch (frames stay on the GPU).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidfast.data.decoders.base import ClosingVideo, DecoderBackend, Deferred, check_indices, register
from vidfast.data.decoders.pyav import PyAVVideo, probe_codec
from vidfast.errors import DataError

#: codecs whose decoding DALI supports on the CPU (all others need NVDEC, i.e. ``device="cuda"``)
DALI_CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
#: codecs DALI decodes with NVDEC on the GPU
DALI_GPU_CODECS = frozenset({"vp8", "vp9", "mjpeg", "av1", "mpeg4", "h264", "hevc"})


@lru_cache(maxsize=1)
def dali_import_error() -> str | None:
    """Why ``nvidia.dali`` cannot be imported (None: it can)."""
    try:
        import nvidia.dali.fn as fn  # noqa: F401
    except ImportError as exc:
        return f"nvidia.dali is not installed ({exc}); pip install nvidia-dali-cuda130"
    return None


def _dali_decoder():
    """DALI's in-memory video decoder: ``fn.decoders.video`` (DALI >= 1.50) or its older experimental name."""
    import nvidia.dali.fn as fn

    return getattr(fn.decoders, "video", None) or fn.experimental.decoders.video


class DaliVideoDecoder:
    """A DALI pipeline decoding a batch of encoded videos at given frame indices.

    ``device="cpu"`` runs libavcodec inside DALI (VP8/VP9/MJPEG only); ``"cuda"`` uses NVDEC (DALI's ``mixed``
    backend) and returns CUDA tensors. One pipeline is built per process and device, sized for ``max_batch``.
    """

    def __init__(self, device: str = "cpu", max_batch: int = 8, threads: int = 1) -> None:
        self.device = torch.device(device)
        self.max_batch = max_batch
        self.threads = threads
        self.pipe = self._build()

    def _build(self):
        from nvidia.dali import fn, pipeline_def, types

        gpu = self.device.type == "cuda"
        decoder = _dali_decoder()

        @pipeline_def(
            batch_size=self.max_batch,
            num_threads=self.threads,
            device_id=(self.device.index or 0) if gpu else None,
            prefetch_queue_depth=1,
            exec_dynamic=True,
        )
        def graph():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1, device="cpu")
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1, device="cpu")
            return decoder(encoded, frames=frames, device="mixed" if gpu else "cpu")

        pipe = graph()
        pipe.build()
        return pipe

    def decode(self, encoded: Sequence[np.ndarray], indices: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Decode ``encoded[i]`` (uint8 file bytes) at ``indices[i]`` -> list of uint8 ``Tensor[t_i, H_i,
        W_i, 3]``
        on this decoder's device. Raises DataError if DALI fails (the pipeline is then rebuilt: DALI
        invalidates a pipeline after any operator error)."""
        out: list[torch.Tensor] = []
        for start in range(0, len(encoded), self.max_batch):
            chunk = slice(start, start + self.max_batch)
            self.pipe.feed_input("encoded", list(encoded[chunk]))
            self.pipe.feed_input("frames", [np.asarray(i, dtype=np.int32) for i in indices[chunk]])
            try:
                (videos,) = self.pipe.run()
            except RuntimeError as exc:
                self.pipe = self._build()
                detail = next((line for line in str(exc).splitlines() if "failed" in line.lower()), "error")
                raise DataError(f"DALI cannot decode this batch: {detail.strip()}") from None
            if self.device.type == "cuda":
                # copied on the GPU: the pipeline may reuse its output buffers on the next run
                out.extend(torch.from_dlpack(videos[i]).clone() for i in range(len(videos)))
            else:
                out.extend(torch.from_numpy(np.array(videos.at(i))) for i in range(len(videos)))
        return out


_DALI_DECODERS: dict[tuple[int, str], DaliVideoDecoder] = {}


def dali_decoder(device: str = "cpu") -> DaliVideoDecoder:
    """This process's shared :class:`DaliVideoDecoder` for ``device`` (rebuilt after a fork)."""
    key = (os.getpid(), str(torch.device(device)))
    if key not in _DALI_DECODERS:
        _DALI_DECODERS[key] = DaliVideoDecoder(device)
    return _DALI_DECODERS[key]


class DaliVideo(ClosingVideo):
    """A video decoded by DALI. Metadata and the frame count come from the PyAV packet index, which numbers
    frames in presentation order as DALI does; ``encoded`` holds the file's bytes (uint8 ``[size]``).
    ``deferred`` (a DataLoader worker, CUDA ``device``): ``defer`` gives the request that the main process
    decodes with NVDEC for the whole batch."""

    def __init__(self, path: str | Path, device: str = "cpu", deferred: bool = False) -> None:
        self.path = str(path)
        self.defers = deferred and torch.device(device).type == "cuda"
        with PyAVVideo(self.path) as probe:
            self.num_frames, self.fps, self.height, self.width = (
                probe.num_frames,
                probe.fps,
                probe.height,
                probe.width,
            )
        self.device = device
        self.encoded = np.fromfile(self.path, dtype=np.uint8)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 ``Tensor[t, H, W, 3]`` (on ``device``) for ``indices``; see :class:`Video`."""
        idx = check_indices(indices, self.num_frames, self.path)
        try:
            (frames,) = dali_decoder(self.device).decode([self.encoded], [idx])
        except DataError as exc:
            raise DataError(f"{self.path}: {exc}") from None
        return frames

    def defer(self, indices: Sequence[int]) -> Deferred:
        """The request ``(file bytes, indices)`` for :func:`_decode_deferred`."""
        return Deferred("dali", (self.encoded, check_indices(indices, self.num_frames, self.path)))

    def close(self) -> None:
        self.encoded = np.empty(0, np.uint8)


def dali_refusal(path: Path, device: torch.device, deferred: bool = False) -> str | None:
    """Why DALI cannot decode ``path`` on ``device`` (None: it can). ``deferred`` skips the CUDA availability
    test (DataLoader workers must not touch CUDA; the main process decodes and checked it)."""
    if (error := dali_import_error()) is not None:
        return error
    if path.is_dir():
        return "the path is a folder, DALI decodes video files"
    if not deferred and device.type == "cuda" and not torch.cuda.is_available():
        return "device is CUDA but torch.cuda.is_available() is False"
    try:
        codec = probe_codec(path)
    except DataError as exc:
        return str(exc)
    if device.type == "cpu" and codec not in DALI_CPU_CODECS:
        return (
            f"codec {codec!r} cannot be decoded by DALI on the CPU: DALI's CPU video decoder supports only "
            f"{'/'.join(sorted(DALI_CPU_CODECS))} and rejects {codec} ('not supported by the CPU variant of "
            f"this operator'); {codec} needs NVDEC, i.e. device='cuda'"
        )
    if device.type == "cuda" and codec not in DALI_GPU_CODECS:
        return f"codec {codec!r} is not supported by NVDEC in DALI"
    return None


def _decode_deferred(requests: list[Any], device: torch.device) -> list[torch.Tensor]:
    encoded, indices = zip(*requests, strict=True)
    return dali_decoder(str(device)).decode(list(encoded), list(indices))


register(DecoderBackend(
    "dali", dali_refusal, lambda path, device, deferred: DaliVideo(path, str(device), deferred),
    priority=(2, 0), unavailable=lambda device: dali_import_error(), decode_deferred=_decode_deferred,
))

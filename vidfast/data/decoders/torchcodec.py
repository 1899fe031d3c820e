"""The ``torchcodec`` backend: PyTorch's own decoder (``pip install torchcodec``) on the CPU.

torchcodec links against the FFmpeg libraries of the system (``libavcodec.so.*``, not the copies inside the
PyAV or decord wheels) and against the torch it was built for: where either is missing or another version,
importing it fails and the backend refuses with the first line of that error.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from vidfast.data.decoders.base import ClosingVideo, DecoderBackend, check_indices, register
from vidfast.data.decoders.pyav import default_threads
from vidfast.errors import DataError


@lru_cache(maxsize=1)
def torchcodec_import_error() -> str | None:
    """Why torchcodec cannot be used (None: it can)."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except ModuleNotFoundError:
        return "torchcodec is not installed (pip install torchcodec, with FFmpeg's shared libraries)"
    except (ImportError, OSError, RuntimeError) as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return f"torchcodec does not load (system FFmpeg libraries, or a torch it was not built for): {first}"
    return None


class TorchCodecVideo(ClosingVideo):
    """A video decoded on the CPU by torchcodec (exact seeking; ``threads``: FFmpeg threads)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        from torchcodec.decoders import VideoDecoder

        self.path = str(path)
        try:
            self._decoder = VideoDecoder(self.path, dimension_order="NHWC", seek_mode="exact",
                                         num_ffmpeg_threads=default_threads() if threads is None else threads)
        except (RuntimeError, ValueError) as exc:
            raise DataError(f"cannot open video {self.path}: {str(exc).splitlines()[0][:200]}") from None
        meta = self._decoder.metadata
        self.num_frames = int(meta.num_frames or 0)
        if self.num_frames == 0:
            raise DataError(f"no frames in {self.path}")
        self.fps = float(meta.average_fps or 0.0)
        self.height, self.width = int(meta.height), int(meta.width)
        keys = getattr(self._decoder, "_get_key_frame_indices", None)
        self.key_frames = None if keys is None else np.asarray(keys(), dtype=np.int64).reshape(-1)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 ``Tensor[t, H, W, 3]`` for ``indices``; see :class:`~vidfast.data.decoders.Video`."""
        idx = check_indices(indices, self.num_frames, self.path)
        wanted, inverse = np.unique(idx, return_inverse=True)
        try:
            frames = self._decoder.get_frames_at(indices=wanted.tolist()).data
        except (RuntimeError, IndexError) as exc:
            raise DataError(f"cannot decode {self.path}: {str(exc).splitlines()[0][:200]}") from None
        return frames[torch.from_numpy(inverse.reshape(-1))].contiguous()

    def close(self) -> None:
        self._decoder = None


def _refusal(path: Path, device: torch.device, deferred: bool) -> str | None:
    if path.is_dir():
        return "the path is a folder (frame folders are read by the 'frame_folder' backend)"
    return torchcodec_import_error()


register(DecoderBackend("torchcodec", _refusal, lambda path, device, deferred: TorchCodecVideo(path),
                        priority=(0, 1), unavailable=lambda device: torchcodec_import_error(),
                        threaded=lambda path, threads: TorchCodecVideo(path, threads)))

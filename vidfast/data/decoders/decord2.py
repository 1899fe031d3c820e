"""The ``decord2`` backend: decord2 (the maintained successor of decord 0.6, ``pip install decord2``) on the
CPU.

decord seeks to the keyframe before a clip and decodes in C++ without a Python call per frame; its reader
lists the keyframes when it opens a file, which keyframe snapping (:mod:`vidfast.data.samplers`) uses. It has
no call for the frame size short of decoding a frame, so the size comes from the container's header (PyAV,
no decode). decord 3.4 fails on some frame sizes (e.g. 48x32 and 96x64: "The size must exactly match"); such
a file is then decoded by PyAV, in this call and, for the rest of the process, from its open (logged once
per file). decord 0.6 installs the same ``decord`` module: with it (and not decord2) installed the backend
refuses, saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from vidfast.data.decoders.base import ClosingVideo, DecoderBackend, check_indices, register
from vidfast.data.decoders.pyav import PyAVVideo, _open, default_threads
from vidfast.errors import DataError

log = logging.getLogger("vidfast.data")

#: files decord2 failed to decode in this process (PyAV reads them from then on)
_FAILED: set[str] = set()


@lru_cache(maxsize=1)
def decord2_import_error() -> str | None:
    """Why decord2 cannot be used (None: it can)."""
    try:
        version = metadata.version("decord2")
    except metadata.PackageNotFoundError:
        return "decord2 is not installed (pip install decord2)"
    try:
        import decord
    except (ImportError, OSError) as exc:
        return f"decord2 {version} does not load: {str(exc).splitlines()[0]}"
    if str(getattr(decord, "__version__", "0")).startswith("0."):
        return f"the decord module found is decord {decord.__version__}, not decord2 (pip uninstall decord)"
    return None


class Decord2Video(ClosingVideo):
    """A video decoded on the CPU by decord2 (``threads``: codec threads, default as for PyAV)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import decord

        self.path = str(path)
        self.threads = default_threads() if threads is None else threads
        container, stream = _open(self.path)  # the size, from the header
        with container:
            self.height = int(stream.codec_context.height)
            self.width = int(stream.codec_context.width)
        try:
            self._reader = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=self.threads)
        except (decord.DECORDError, RuntimeError, AssertionError) as exc:
            raise DataError(f"cannot open video {self.path}: {str(exc).splitlines()[0][:200]}") from None
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps() or 0.0)
        self.key_frames = np.asarray(self._reader.get_key_indices(), dtype=np.int64)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 ``Tensor[t, H, W, 3]`` for ``indices``; see :class:`~vidfast.data.decoders.Video`."""
        import decord

        idx = check_indices(indices, self.num_frames, self.path)
        wanted, inverse = np.unique(idx, return_inverse=True)
        try:
            frames = torch.from_numpy(self._reader.get_batch(wanted.tolist()).asnumpy())
        except (decord.DECORDError, RuntimeError) as exc:
            log.info("decord2 cannot decode %s (%s); PyAV reads it", self.path,
                     str(exc).splitlines()[0][-120:])
            _FAILED.add(self.path)
            with PyAVVideo(self.path, self.threads) as video:
                if video.num_frames != self.num_frames:
                    raise DataError(f"cannot decode {self.path}: decord2 and PyAV count "
                                    f"{self.num_frames} and {video.num_frames} frames") from None
                frames = video.get_frames(wanted)
        if frames.shape[0] != len(wanted):
            raise DataError(f"cannot decode frames of {self.path} (truncated or corrupt)")
        if len(wanted) == len(idx) and (wanted == idx).all():
            return frames
        return frames[torch.from_numpy(inverse.reshape(-1))]

    def close(self) -> None:
        self._reader = None


def open_decord2(path: Path, threads: int | None = None) -> Decord2Video | PyAVVideo:
    """The file with decord2, or with PyAV where decord2 failed on it before in this process."""
    return PyAVVideo(path, threads) if str(path) in _FAILED else Decord2Video(path, threads)


def _refusal(path: Path, device: torch.device, deferred: bool) -> str | None:
    if path.is_dir():
        return "the path is a folder (frame folders are read by the 'frame_folder' backend)"
    return decord2_import_error()


register(DecoderBackend("decord2", _refusal, lambda path, device, deferred: open_decord2(path),
                        priority=(0, 1), unavailable=lambda device: decord2_import_error(),
                        threaded=open_decord2))

"""The ``pyav`` backend: libavcodec through PyAV on the CPU, and the PyAV helpers every module shares.

Seeks to the last keyframe before the first needed frame, decodes only up to the last needed frame (seeking
again across long gaps), threaded codec. :func:`open_container` is the one way to open a file, used by the
decoder, ``probe`` and ``transcode`` alike; the stream's frame rate, frame packets and frame index come from
:mod:`vidfast.video_index`, which the torch-free deployment reader shares.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from vidfast.data.decoders.base import ClosingVideo, DecoderBackend, check_indices, register
from vidfast.errors import DataError
from vidfast.video_index import StreamIndex, build_stream_index, stream_rate

#: frames a PyAV seek must save to be worth it (a seek flushes the decoder and re-reads from a keyframe)
SEEK_GAIN = 4


def open_container(path: str | Path):
    """``av.open`` of ``path`` with its first video stream: ``(container, stream)``; DataError when it cannot
    be opened or has no video stream (``av.FFmpegError`` of the open is kept as the cause)."""
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot open video {path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise DataError(f"no video stream in {path}")
    return container, container.streams.video[0]


# --------------------------------------------------------------------------------------------- PyAV index


class _IndexCache:
    """Per-process LRU cache of stream indices keyed by (path, size, mtime): DataLoader workers reopen
    the same
    files every epoch, and demuxing a long video just to find its keyframes is worth doing once."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self.items: OrderedDict[tuple[str, int, int], StreamIndex] = OrderedDict()

    def get(self, path: str, build: Callable[[], StreamIndex]) -> StreamIndex:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        index = build()
        self.items[key] = index
        if len(self.items) > self.capacity:
            self.items.popitem(last=False)
        return index


_INDEX_CACHE = _IndexCache()


def default_threads() -> int:
    """Codec threads: libavcodec's automatic choice (0), but in a DataLoader worker the cores divided among
    the workers (threads beyond that only compete with the other workers)."""
    worker = torch.utils.data.get_worker_info()
    if worker is None:
        return 0
    return max(1, (os.cpu_count() or 1) // worker.num_workers)


def probe_codec(path: str | Path) -> str:
    """Name of the video codec of ``path`` as libavcodec calls it (``h264``, ``vp9``, ``mpeg4``,
    ``mjpeg``, ...)."""
    container, stream = _open(path)
    try:
        return stream.codec_context.name
    finally:
        container.close()


class PyAVVideo(ClosingVideo):
    """A video decoded on the CPU with PyAV (see module docstring for the seek strategy)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import av

        self.path = str(path)
        self.threads = default_threads() if threads is None else threads
        self._to_rgb = av.video.reformatter.VideoReformatter()
        self._open()
        try:
            self.index = _INDEX_CACHE.get(
                self.path, lambda: build_stream_index(self._container, self._stream)
            )
        except av.FFmpegError as exc:
            self.close()
            raise DataError(f"cannot read {self.path}: {exc}") from None
        if self.index.num_frames == 0:
            self.close()
            raise DataError(f"no frames in {self.path}")
        self.num_frames = self.index.num_frames
        self.key_frames = self.index.key_frames if self.index.seekable else None
        self.fps = float(stream_rate(self._stream) or 0.0)
        self.height = int(self._stream.codec_context.height)
        self.width = int(self._stream.codec_context.width)

    def _rgb(self, frame) -> np.ndarray:
        """uint8 ``[H, W, 3]`` RGB of a decoded frame. One reformatter per video:
        ``frame.to_ndarray(format=...)`` builds a new swscale context for every frame, which costs 5-10x the
        conversion itself."""
        return self._to_rgb.reformat(frame, format="rgb24").to_ndarray()

    def _open(self) -> None:
        self._container, self._stream = _open(self.path)
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = self.threads

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 ``Tensor[t, H, W, 3]`` for ``indices``; see :class:`Video`."""
        import av

        idx = check_indices(indices, self.num_frames, self.path)
        wanted = np.unique(idx)
        try:
            decoded = self._decode_seeking(wanted) if self.index.seekable else None
            if decoded is None:
                decoded = self._decode_counting(wanted)
        except av.FFmpegError as exc:
            raise DataError(f"cannot decode {self.path}: {exc}") from None
        missing = [int(i) for i in wanted if int(i) not in decoded]
        if missing:
            raise DataError(f"cannot decode frames {missing[:5]} of {self.path} (truncated or corrupt)")
        return torch.from_numpy(np.stack([decoded[int(i)] for i in idx]))

    def _runs(self, wanted: np.ndarray) -> list[tuple[int, list[int]]]:
        """Split sorted frame indices into (keyframe position, frames) runs. A new run (a new seek) starts
        only where it skips more than ``SEEK_GAIN`` frames that decoding straight on would have to decode."""
        runs: list[tuple[int, list[int]]] = []
        for frame in wanted.tolist():
            key = max(self.index.keyframe_before(frame), 0)
            if runs and self.index.key_frames[key] <= runs[-1][1][-1] + SEEK_GAIN:
                runs[-1][1].append(frame)
            else:
                runs.append((key, [frame]))
        return runs

    def _decode_seeking(self, wanted: np.ndarray) -> dict[int, np.ndarray] | None:
        """Decode ``wanted`` via keyframe seeks; None if the timestamps do not match the index (then the
        caller decodes from the start, counting frames). Each run seeks to its keyframe's pts, and again to
        the keyframe's ``safe_seek_ts`` if that overshot. Non-reference frames shown before the first wanted
        frame of a run are not decoded at all (``skip_frame=NONREF``): nothing depends on them."""
        index = self.index
        position = {int(p): i for i, p in enumerate(index.pts)}
        context = self._stream.codec_context
        out: dict[int, np.ndarray] = {}
        try:
            for key, frames in self._runs(wanted):
                first_pts = int(index.pts[frames[0]])
                for target in (index.pts[index.key_frames[key]], index.safe_seek_ts[key]):
                    self._container.seek(int(target), backward=True, stream=self._stream)
                    seen = self._decode_run(set(frames), first_pts, frames[-1], position, out)
                    if seen is None:
                        return None  # a timestamp missing from the index
                    if seen <= frames[0]:
                        break
                else:
                    return None  # both seeks overshot (bad container index)
        finally:
            context.skip_frame = "DEFAULT"
        return out

    def _decode_run(
        self, need: set[int], first_pts: int, last: int, position: dict[int, int], out: dict[int, np.ndarray]
    ) -> int | None:
        """Demux and decode from the current position until frame ``last``; store the ``need`` frames in
        ``out``. Returns the first frame index decoded, None on a timestamp missing from the index."""
        context = self._stream.codec_context
        first: int | None = None
        for packet in self._container.demux(self._stream):
            early = packet.pts is not None and packet.pts < first_pts
            context.skip_frame = "NONREF" if early else "DEFAULT"
            for frame in packet.decode():
                i = position.get(frame.pts) if frame.pts is not None else None
                if i is None:
                    return None
                first = i if first is None else min(first, i)
                if i in need:
                    out[i] = self._rgb(frame)
                if i >= last:
                    return first
        return first

    def _decode_counting(self, wanted: np.ndarray) -> dict[int, np.ndarray]:
        """Decode from the start, numbering frames in output order (containers without timestamps, which
        often cannot seek either: the file is reopened)."""
        self._container.close()
        self._open()
        need = set(wanted.tolist())
        last = int(wanted[-1])
        out: dict[int, np.ndarray] = {}
        for i, frame in enumerate(self._container.decode(self._stream)):
            if i in need:
                out[i] = self._rgb(frame)
            if i >= last:
                break
        return out

    def close(self) -> None:
        self._container.close()




def _open(path: str | Path):
    """:func:`open_container` with the cause dropped (a decoder error is one line)."""
    try:
        return open_container(path)
    except DataError as exc:
        raise DataError(str(exc)) from None


def _refusal(path: Path, device: torch.device, deferred: bool) -> str | None:
    if path.is_dir():
        return "the path is a folder (frame folders are read by the 'frame_folder' backend)"
    return None


register(DecoderBackend("pyav", _refusal, lambda path, device, deferred: PyAVVideo(path), priority=(0, 1),
                        threaded=lambda path, threads: PyAVVideo(path, threads)))

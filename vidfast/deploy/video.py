"""Frame reading for deployment with PyAV and numpy only (no torch): open a video, pick clip frames, seek
and decode just those frames as uint8 RGB arrays.

Frames are numbered as the training decoder (``vidfast.data.decoders.pyav``) numbers them, through the same
index (:mod:`vidfast.video_index`): by presentation time among the stream's frame packets (empty and discarded
packets left out), or in decoding order when the container carries no usable timestamps; so a clip picked here
holds the same pixels as the torch path's.
:func:`rgb_frames` is the one PyAV frame -> numpy conversion of ``vidfast.deploy`` (streams use it too).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from vidfast.errors import DataError
from vidfast.video_index import build_stream_index, stream_rate

#: frames a seek must skip to be worth it (a seek flushes the decoder and re-reads from a keyframe)
SEEK_GAIN = 4


def rgb_frames(frames: Iterable, reformatter=None, width: int | None = None,
               height: int | None = None) -> Iterator[np.ndarray]:
    """uint8 ``[H, W, 3]`` RGB arrays of PyAV video frames (resized by swscale to ``width`` x ``height`` when
    given), through one swscale context (a new context per frame, as ``frame.to_ndarray(format=...)``
    builds, costs several times the conversion)."""
    import av

    reformatter = reformatter or av.video.reformatter.VideoReformatter()
    for frame in frames:
        yield reformatter.reformat(frame, format="rgb24", width=width, height=height).to_ndarray()


def uniform_clip_indices(num_frames: int, clips: int, clip_len: int, frame_step: int = 1) -> np.ndarray:
    """Frame indices ``int64 [clips, clip_len]`` of ``clips`` evenly spaced clips of ``clip_len`` frames
    ``frame_step`` apart: the evaluation's ``uniform_clips`` (starts rounded from ``linspace(0, last)``, a
    clip repeated from its start when the video ends first)."""
    if num_frames < 1 or clips < 1 or clip_len < 1 or frame_step < 1:
        raise ValueError(f"need positive num_frames, clips, clip_len and frame_step, got {num_frames}, "
                         f"{clips}, {clip_len}, {frame_step}")
    span = (clip_len - 1) * frame_step + 1
    starts = np.round(np.linspace(0, max(num_frames - span, 0), clips)).astype(np.int64)
    return np.stack([np.resize(np.arange(s, min(s + span, num_frames), frame_step), clip_len)
                     for s in starts])


class VideoFile:
    """A video file read with PyAV: ``num_frames``, ``fps``, ``height``, ``width`` and :meth:`frames`.
    DataError when it cannot be opened, has no video stream or no frames. A context manager."""

    def __init__(self, path: str | Path) -> None:
        import av

        self.path = str(path)
        self._reformatter = av.video.reformatter.VideoReformatter()
        self._open()
        try:
            self.index = build_stream_index(self._container, self._stream)
        except av.FFmpegError as exc:
            self.close()
            raise DataError(f"cannot read {self.path}: {exc}") from None
        if self.index.num_frames == 0:
            self.close()
            raise DataError(f"no frames in {self.path}")
        self.num_frames = self.index.num_frames
        self.fps = float(stream_rate(self._stream) or 0.0)
        self.height = int(self._stream.codec_context.height)
        self.width = int(self._stream.codec_context.width)

    def _open(self) -> None:
        import av

        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot open video {self.path}: {' '.join(str(exc).split())}") from None
        if not self._container.streams.video:
            self._container.close()
            raise DataError(f"no video stream in {self.path}")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 ``[K, H, W, 3]`` RGB frames ``indices`` (any order, repeats allowed); DataError for an index
        outside the video or frames that do not decode (truncated or corrupt file)."""
        import av

        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("no frame indices given")
        if idx.min() < 0 or idx.max() >= self.num_frames:
            raise DataError(f"frame {int(idx.max() if idx.max() >= self.num_frames else idx.min())} is "
                            f"outside {self.path} ({self.num_frames} frames)")
        wanted = np.unique(idx)
        try:
            decoded = self._decode_seeking(wanted) if self.index.seekable else None
            if decoded is None:
                decoded = self._decode_counting(wanted)
        except av.FFmpegError as exc:
            raise DataError(f"cannot decode {self.path}: {' '.join(str(exc).split())}") from None
        missing = [int(i) for i in wanted if int(i) not in decoded]
        if missing:
            raise DataError(f"cannot decode frames {missing[:5]} of {self.path} (truncated or corrupt)")
        return np.stack([decoded[int(i)] for i in idx])

    def _runs(self, wanted: np.ndarray) -> list[tuple[int, list[int]]]:
        """Sorted frames grouped into (keyframe, frames) runs: a new seek only where it skips more than
        :data:`SEEK_GAIN` frames that decoding straight on would decode."""
        keys = self.index.key_frames
        runs: list[tuple[int, list[int]]] = []
        for frame in wanted.tolist():
            key = max(int(np.searchsorted(keys, frame, side="right")) - 1, 0)
            if runs and keys[key] <= runs[-1][1][-1] + SEEK_GAIN:
                runs[-1][1].append(frame)
            else:
                runs.append((key, [frame]))
        return runs

    def _decode_seeking(self, wanted: np.ndarray) -> dict[int, np.ndarray] | None:
        """Seek to the keyframe before each run and decode up to its last frame; None when a decoded
        timestamp is not in the index or a seek overshot (the caller then decodes from the start)."""
        position = {int(p): i for i, p in enumerate(self.index.pts)}
        out: dict[int, np.ndarray] = {}
        for key, frames in self._runs(wanted):
            self._container.seek(int(self.index.safe_seek_ts[key]), backward=True, stream=self._stream)
            need, first = set(frames), None
            for frame in self._container.decode(self._stream):
                i = position.get(frame.pts) if frame.pts is not None else None
                if i is None:
                    return None
                first = i if first is None else min(first, i)
                if i in need:
                    out[i] = next(rgb_frames([frame], self._reformatter))
                if i >= frames[-1]:
                    break
            if first is None or first > frames[0]:
                return None
        return out

    def _decode_counting(self, wanted: np.ndarray) -> dict[int, np.ndarray]:
        """Decode from the start, numbering frames in output order (the file is reopened)."""
        self._container.close()
        self._open()
        need, last = set(wanted.tolist()), int(wanted[-1])
        out: dict[int, np.ndarray] = {}
        for i, frame in enumerate(self._container.decode(self._stream)):
            if i in need:
                out[i] = next(rgb_frames([frame], self._reformatter))
            if i >= last:
                break
        return out

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


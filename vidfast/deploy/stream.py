"""Sequential frame reading from any source PyAV opens: a file, a file still being written, an ``rtsp://`` or
``http://`` URL, a pipe (``"-"`` is stdin) or a readable binary file object. numpy + PyAV only (no torch).

A thread decodes every frame (FFmpeg's own decode threads on top), converts every ``frame_step``-th one to
RGB at the size that covers the model's ``H x W`` with swscale (:func:`vidfast.deploy.video.rgb_frames`)
and center-crops it in numpy, which is the evaluation crop of the training pipeline (central square of the
short side at the crop size) up to the interpolation. The frames go through a bounded :class:`FrameRing`:
for a file the decoder waits for the consumer, in real-time (``live``) mode it never waits and the oldest
frame the consumer has not taken is dropped (and counted), so memory stays bounded however slow the model is.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vidfast.deploy.video import rgb_frames
from vidfast.errors import VidfastError

#: seconds without a frame after which a source counts as stalled
DEFAULT_TIMEOUT = 10.0
#: a file whose decoded frames end this many seconds (or 2 frames, whichever is more) before the duration
#: its container states counts as truncated
TRUNCATION_SLACK_S = 0.5
#: consecutive frames of a file more than this many frame intervals apart mean lost data (a corrupt middle);
#: in a live stream the frames lost are counted instead
GAP_FRAMES = 4


class StreamError(VidfastError):
    """A source that cannot be opened, stalls, breaks or ends early; the frames before it were delivered."""


@dataclass(frozen=True)
class StreamInfo:
    """What is known about a source once open: frame rate, size, stated duration (None: live or unknown)."""

    name: str
    fps: float
    width: int
    height: int
    duration: float | None
    codec: str


@dataclass(frozen=True)
class SampledFrame:
    """A converted frame: ``index`` in the source's frame count, ``time`` in seconds from the first frame,
    ``rgb`` uint8 ``[H, W, 3]`` at the model's size, ``arrived`` the ``time.perf_counter()`` of its decode."""

    index: int
    time: float
    rgb: np.ndarray
    arrived: float


def resize_for(width: int, height: int, out_h: int, out_w: int) -> tuple[int, int]:
    """The ``(width, height)`` a ``width x height`` frame is scaled to, keeping its aspect ratio, so that it
    just covers ``out_h x out_w`` (the short side at the crop size for a square crop)."""
    scale = max(out_h / height, out_w / width)
    return max(out_w, round(width * scale)), max(out_h, round(height * scale))


def center_crop(rgb: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """The central ``out_h x out_w`` of ``rgb`` ``[H, W, 3]`` (a view)."""
    top, left = (rgb.shape[0] - out_h) // 2, (rgb.shape[1] - out_w) // 2
    return rgb[top:top + out_h, left:left + out_w]


class FrameRing:
    """A bounded FIFO between the decode thread and the consumer.

    ``drop_oldest``: a full ring drops its oldest item for a new one (counted in ``dropped``) instead of
    making the producer wait. ``finish(error)`` marks the end; ``cancel()`` stops a waiting producer.
    """

    def __init__(self, capacity: int, drop_oldest: bool) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.drop_oldest = capacity, drop_oldest
        self._items: deque = deque()
        self._cond = threading.Condition()
        self.dropped = 0
        self.peak = 0
        self.finished = False
        self.cancelled = False
        self.error: str | None = None

    def put(self, item: Any) -> bool:
        """Add ``item``; False when the consumer has cancelled (the producer should stop)."""
        with self._cond:
            while len(self._items) >= self.capacity and not self.drop_oldest and not self.cancelled:
                self._cond.wait()
            if self.cancelled:
                return False
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.peak = max(self.peak, len(self._items))
            self._cond.notify_all()
            return True

    def get(self, timeout: float) -> Any | None:
        """The oldest item; None at the end; StreamError after ``timeout`` seconds without one."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items and not self.finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StreamError(f"no frame for {timeout:g} s (the source stalled, or ended without "
                                      "an end marker)")
                self._cond.wait(left)
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            return None

    def finish(self, error: str | None = None) -> None:
        with self._cond:
            self.finished, self.error = True, error
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._items.clear()
            self._cond.notify_all()


Source = str | Path | BinaryIO


def source_name(source: Source) -> str:
    """How a source is named in messages."""
    if source == "-":
        return "stdin"
    if isinstance(source, str | Path):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "pipe"


def _is_url(source: Source) -> bool:
    return isinstance(source, str) and "://" in source


class _AvailableBytes:
    """A binary file object whose ``read(n)`` returns what is available (``read1``) instead of waiting for
    ``n`` bytes, so that frames of a live pipe are decoded as they arrive."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def read(self, n: int = -1) -> bytes:
        return self._f.read1(n) if hasattr(self._f, "read1") else self._f.read(n)


def _open_container(source: Source, live: bool, timeout: float, format: str | None):
    """``av.open`` for each kind of source (a live local file is followed while it grows)."""
    import av

    kwargs: dict[str, Any] = {"timeout": (timeout, timeout)}
    if format:
        kwargs["format"] = format
    if source == "-":
        return av.open(_AvailableBytes(sys.stdin.buffer), **kwargs)
    if isinstance(source, str | Path) and not _is_url(source):
        path = Path(source)
        if not path.exists():
            raise StreamError(f"no such file: {path}")
        if live:
            kwargs["options"] = {"follow": "1"}
        return av.open(str(path), **kwargs)
    if _is_url(source):
        return av.open(str(source), **kwargs)
    return av.open(_AvailableBytes(source), **kwargs)  # type: ignore[arg-type]


def _message(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class FrameReader:
    """Decodes ``source`` in a background thread into :class:`SampledFrame` s of every ``frame_step``-th frame
    at ``size`` ``(H, W)``; iterate it (once) in the consumer. ``live``: real-time mode (a full ring drops the
    oldest frame; a local file is followed while it is written). ``capacity``: frames the ring holds.
    ``timeout``: seconds without a frame (or to open) before :class:`StreamError`. ``format``: the container
    format when it cannot be probed (e.g. ``"mpegts"`` on a pipe). ``decode_threads``: FFmpeg decode threads
    (0: FFmpeg's choice).

    Iteration raises StreamError (after every frame before the failure) when the source cannot be opened,
    stalls, breaks mid-way, or ends well before the duration its container states (a truncated file).
    """

    def __init__(self, source: Source, size: tuple[int, int], frame_step: int = 1, live: bool = False,
                 capacity: int = 64, timeout: float = DEFAULT_TIMEOUT, format: str | None = None,
                 decode_threads: int = 0) -> None:
        if frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.source, self.name = source, source_name(source)
        self.size, self.frame_step = (int(size[0]), int(size[1])), frame_step
        self.live, self.timeout = live, timeout
        self.format, self.decode_threads = format, decode_threads
        self.ring = FrameRing(capacity, drop_oldest=live)
        self.info: StreamInfo | None = None
        self._opened = threading.Event()
        self._open_error: str | None = None
        #: frames decoded (every frame of the source, converted or not) and the end of the last one (seconds)
        self.decoded = 0
        self.end_time = 0.0
        #: live mode: frames missing from the stream's timestamps (lost in transport)
        self.lost = 0
        self._thread = threading.Thread(target=self._run, name=f"vidfast-decode {self.name}", daemon=True)
        self._started = False

    @property
    def dropped(self) -> int:
        """Converted frames the ring dropped because the consumer fell behind (live mode only)."""
        return self.ring.dropped

    def start(self) -> StreamInfo:
        """Start decoding; the source's :class:`StreamInfo` once it is open (StreamError otherwise)."""
        if not self._started:
            self._started = True
            self._thread.start()
        if not self._opened.wait(self.timeout + 1.0):
            self.ring.cancel()
            raise StreamError(f"{self.name}: could not open within {self.timeout:g} s")
        if self._open_error is not None:
            raise StreamError(f"{self.name}: {self._open_error}")
        assert self.info is not None
        return self.info

    def __iter__(self):
        self.start()
        while True:
            try:
                item = self.ring.get(self.timeout)
            except StreamError as exc:
                raise StreamError(f"{self.name}: {exc}") from None
            if item is None:
                break
            yield item
        if self.ring.error is not None:
            raise StreamError(f"{self.name}: {self.ring.error}")

    def close(self) -> None:
        """Stop the decode thread (it exits at its next frame, or at its read timeout)."""
        self.ring.cancel()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            container = _open_container(self.source, self.live, self.timeout, self.format)
        except Exception as exc:  # av.error.* (FFmpeg) and OSError: reported to the consumer as one line
            self._open_error = f"cannot open: {_message(exc)}"
            self._opened.set()
            return
        try:
            if not container.streams.video:
                self._open_error = "has no video stream"
                self._opened.set()
                return
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.decode_threads
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 25.0
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None and not self.live:
                duration = container.duration / 1e6
            self.info = StreamInfo(self.name, fps, stream.codec_context.width, stream.codec_context.height,
                                   None if self.live else duration, stream.codec_context.name)
            self._opened.set()
            self.ring.finish(self._decode(container, stream, fps))
        except Exception as exc:  # anything from the decoder thread must reach the consumer as one line
            self._opened.set()
            self.ring.finish(_message(exc))
        finally:
            container.close()

    def _decode(self, container, stream, fps: float) -> str | None:
        """Decode until the end; an error message, or None when the source ended cleanly."""
        import av

        out_h, out_w = self.size
        reformatter = av.video.reformatter.VideoReformatter()
        first_pts: float | None = None
        last_time = -1.0
        try:
            for frame in container.decode(stream):
                n = self.decoded
                self.decoded += 1
                if frame.time is not None:
                    first_pts = frame.time if first_pts is None else first_pts
                    t = frame.time - first_pts
                else:
                    t = n / fps
                gap = t - last_time if n else 0.0
                if gap > GAP_FRAMES / fps:
                    if not self.live:
                        return (f"{round(gap * fps) - 1} frames are missing after {last_time:.2f} s (corrupt "
                                "data)")
                    self.lost += round(gap * fps) - 1
                last_time = t
                self.end_time = t + 1 / fps
                if n % self.frame_step:
                    continue
                width, height = resize_for(frame.width, frame.height, out_h, out_w)
                rgb = next(rgb_frames([frame], reformatter, width, height))
                crop = np.ascontiguousarray(center_crop(rgb, out_h, out_w))
                if not self.ring.put(SampledFrame(n, t, crop, time.perf_counter())):
                    return None
        except av.error.ExitError:
            return f"no data for {self.timeout:g} s after {self.decoded} frames (the source stalled)"
        except (av.error.FFmpegError, OSError) as exc:
            return f"broke after {self.decoded} frames ({last_time + 1 / fps:.2f} s): {_message(exc)}"
        if self.decoded == 0:
            return "no frame could be decoded"
        stated = self.info.duration if self.info is not None else None
        end = last_time + 1 / fps
        if stated is not None and stated - end > max(TRUNCATION_SLACK_S, 2 / fps) and math.isfinite(stated):
            return f"ended at {end:.2f} s of the {stated:.2f} s its container states (truncated or corrupt)"
        return None

"""Probing videos and frame folders (frame count, fps, size, and whether they are usable), and running
such per-file jobs in a process pool with a progress display.

A probe never raises for a bad file: it returns ``status="bad"`` and a reason ``"<category>: <detail>"`` with
the category one of ``missing``, ``empty``, ``not a video``, ``undecodable``, ``truncated``, ``no frames``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from vidfast.data.decoders import list_frame_images, open_container, stream_rate
from vidfast.errors import DataError
from vidfast.progress import Progress
from vidfast.video_index import is_frame_packet

#: a container's stated length is trusted down to this fraction before a video counts as truncated
_DURATION_TOLERANCE = 0.95


@dataclass
class ProbeResult:
    """What a probe found: the manifest's ``num_frames, fps, width, height, status, reason`` fields."""

    num_frames: int = 0
    fps: float = 0.0
    width: int = 0
    height: int = 0
    status: str = "ok"
    reason: str = ""

    @classmethod
    def bad(cls, category: str, detail: str = "") -> ProbeResult:
        """A ``bad`` result with reason ``"category: detail"``."""
        detail = " ".join(detail.split())
        return cls(status="bad", reason=f"{category}: {detail}" if detail else category)

    def to_dict(self) -> dict[str, object]:
        """Plain dict (for the JSON-lines cache)."""
        return asdict(self)


def reason_category(reason: str) -> str:
    """The category of a reason ``"<category>: <detail>"`` (used to count skipped files by cause)."""
    return reason.split(":", 1)[0].strip() or "unknown"


def _message(exc: BaseException) -> str:
    """An FFmpeg error's text without the errno prefix, else the exception's text."""
    return str(getattr(exc, "strerror", None) or exc or type(exc).__name__)


def probe_path(path: str | os.PathLike[str]) -> ProbeResult:
    """Probe a video file, or a frame folder (:func:`~vidfast.data.decoders.list_frame_images`); never raises
    for a bad input."""
    path = Path(path)
    try:
        if path.is_dir():
            return probe_frame_folder(path)
        if not path.exists():
            return ProbeResult.bad("missing", "no such file")
        if path.stat().st_size == 0:
            return ProbeResult.bad("empty", "zero-byte file")
        return probe_video(path)
    except OSError as exc:
        return ProbeResult.bad("missing", f"cannot read ({exc.strerror or exc})")


def _looks_like_video(path: Path) -> bool:
    """True when the first bytes carry the signature of a common video container (MP4/MOV, Matroska/WebM, AVI,
    MPEG-PS/TS, FLV, Ogg, ASF)."""
    with open(path, "rb") as f:
        head = f.read(189)
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
        or head.startswith((b"\x1aE\xdf\xa3", b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x30\x26\xb2\x75"))
        or (head.startswith(b"RIFF") and head[8:11] == b"AVI")
        or (len(head) == 189 and head[0] == head[188] == 0x47)
    )


def _mp4_truncation(path: Path) -> str | None:
    """For an MP4/MOV file: describes the top-level box that runs past the end of the file, else None."""
    size = path.stat().st_size
    offset = 0
    with open(path, "rb") as f:
        while offset < size:
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                return f"box header cut at byte {offset}"
            box_size = int.from_bytes(header[:4], "big")
            if box_size == 1 and len(header) == 16:
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                return None
            if box_size < 8:
                return None
            if offset + box_size > size:
                kind = header[4:8].decode("latin-1")
                return f"'{kind}' box needs {offset + box_size} bytes, the file has {size}"
            offset += box_size
    return None


def probe_video(path: Path) -> ProbeResult:
    """Probe a video with PyAV.

    Counts the video stream's packets (cheap demux, no decode), checks them against the frame count and
    duration the container states (truncation), decodes the first frame, and decodes from the last keyframe
    to the end.
    """
    import av

    try:
        container, stream = open_container(path)
    except DataError as error:
        exc = error.__cause__
        if exc is None:
            return ProbeResult.bad("not a video", "no video stream")
        if not _looks_like_video(path):
            return ProbeResult.bad("not a video", _message(exc))
        cut = _mp4_truncation(path) if path.suffix.lower() in (".mp4", ".m4v", ".mov") else None
        if cut is not None:
            return ProbeResult.bad("truncated", cut)
        return ProbeResult.bad("undecodable", f"cannot open container ({_message(exc)})")
    with container:
        stream.thread_type = "AUTO"
        fps = float(stream_rate(stream) or 0.0)
        time_base = float(stream.time_base) if stream.time_base else 0.0

        packets = 0
        keyframe_pts: int | None = None
        end_time = 0.0
        demux_error = ""
        try:
            for packet in container.demux(stream):
                if not is_frame_packet(packet):
                    continue
                packets += 1
                if packet.pts is not None:
                    if packet.is_keyframe:
                        keyframe_pts = packet.pts if keyframe_pts is None else max(keyframe_pts, packet.pts)
                    end_time = max(end_time, (packet.pts + (packet.duration or 0)) * time_base)
        except av.error.FFmpegError as exc:
            demux_error = _message(exc)
        if packets == 0:
            return ProbeResult.bad("truncated" if demux_error else "no frames",
                                   demux_error or "the video stream holds no frames")
        if demux_error:
            return ProbeResult.bad("truncated", f"read error after {packets} frames ({demux_error})")
        stated = stream.frames
        if stated > 0 and packets < stated * _DURATION_TOLERANCE - 1:
            return ProbeResult.bad("truncated", f"{packets} of {stated} frames present")
        stated_seconds = (
            float(stream.duration * stream.time_base) if stream.duration and stream.time_base
            else (container.duration or 0) / 1e6
        )
        if stated_seconds > 0 and fps > 0 and end_time > 0:
            if end_time < stated_seconds * _DURATION_TOLERANCE - 2.0 / fps:
                detail = f"frames end at {end_time:.2f} s of {stated_seconds:.2f} s"
                return ProbeResult.bad("truncated", detail)

        try:
            container.seek(0, stream=stream)
            first = next(container.decode(stream))
        except (av.error.FFmpegError, StopIteration) as exc:
            return ProbeResult.bad("undecodable", f"the first frame does not decode ({_message(exc)})")
        width, height = first.width, first.height
        try:
            if keyframe_pts is not None:
                container.seek(keyframe_pts, stream=stream, backward=True)
            decoded = sum(1 for _ in container.decode(stream))
        except av.error.FFmpegError as exc:
            return ProbeResult.bad("truncated", f"the last frames do not decode ({_message(exc)})")
        if decoded == 0:
            return ProbeResult.bad("truncated", "the last frames do not decode")
    return ProbeResult(num_frames=packets, fps=fps, width=width, height=height)


def probe_frame_folder(folder: Path) -> ProbeResult:
    """Probe a folder of pre-extracted frames: counts them, decodes the first and the last; ``fps`` is 0."""
    from PIL import Image, UnidentifiedImageError

    files = list_frame_images(folder)
    if not files:
        return ProbeResult.bad("no frames", "no .jpg/.jpeg/.png frames in the folder")
    sizes = []
    for which, file in (("first", files[0]), ("last", files[-1])):
        try:
            with Image.open(file) as image:
                image.load()
                sizes.append(image.size)
        except (OSError, UnidentifiedImageError) as exc:
            category = "empty" if file.stat().st_size == 0 else "undecodable"
            return ProbeResult.bad(category, f"{which} frame {file.name} ({exc})")
    (width, height), last = sizes
    if last != (width, height):
        detail = f"frames differ in size: {width}x{height} and {last[0]}x{last[1]}"
        return ProbeResult.bad("undecodable", detail)
    return ProbeResult(num_frames=len(files), fps=0.0, width=width, height=height)


T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Worker processes used when none are asked for: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def run_parallel(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int | None = None,
    description: str = "working",
    progress: bool = True,
) -> Iterator[tuple[int, R]]:
    """Apply ``fn`` to every item in ``workers`` processes (inline when 1) and yield ``(index, result)`` in
    completion order, showing progress. ``fn`` must be a picklable module-level function that does not raise
    for a bad item."""
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(items) <= 1:
        with Progress(description, len(items), "auto" if progress else "none") as bar:
            for index, item in enumerate(items):
                result = fn(item)
                bar.advance()
                yield index, result
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(items)))
    try:
        pending: dict[Future[R], int] = {}
        queue = iter(enumerate(items))

        def refill() -> None:
            for index, item in queue:
                pending[pool.submit(fn, item)] = index
                if len(pending) >= 4 * workers:
                    break

        refill()  # the worker processes start here, before the progress thread does
        with Progress(description, len(items), "auto" if progress else "none") as bar:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    bar.advance()
                    yield index, future.result()
                refill()
    finally:  # on an interruption, drop the queued jobs instead of running them out
        pool.shutdown(wait=True, cancel_futures=True)

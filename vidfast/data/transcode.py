"""Re-encoding a manifest's videos (smaller, short keyframe interval) for fast random clip access.

Each ``ok`` row (a video, a trimmed segment, or a JPEG frame folder) becomes one video in OUTDIR, resized so
its short side is ``short_side`` and encoded with a keyframe every ``gop`` frames; trimmed rows are cut to
their segment. Jobs run in parallel with progress; an output that already exists and probes fine is kept
(resume). The new manifest ``OUTDIR/manifest.csv`` holds the probed outputs.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

from vidfast.data import probe
from vidfast.data.decoders import list_frame_images, open_container, stream_rate
from vidfast.data.manifest import Manifest, ManifestRow, read_manifest, write_manifest
from vidfast.data.video_io import CODECS, VideoWriter
from vidfast.errors import DataError

TRANSCODE_CODECS: tuple[str, ...] = ("h264", "vp9", "mjpeg")


@dataclass(frozen=True)
class TranscodeJob:
    """One output: source ``src`` (video or frame folder), ``dst``, optional segment, encoding settings and
    the frame count the source is known to have (0: unknown; used to accept an existing output on resume)."""

    src: str
    dst: str
    start: float | None
    end: float | None
    short_side: int
    gop: int
    codec: str
    crf: int | None
    fast_decode: bool
    b_frames: bool
    frames_fps: float
    expected_frames: int


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so the short side is ``short_side``, both rounded (half up) to even numbers."""
    scale = short_side / min(width, height)

    def even(x: float) -> int:
        return max(2, math.floor(x / 2.0 + 0.5) * 2)

    return even(width * scale), even(height * scale)


def _video_frames(job: TranscodeJob) -> tuple[Iterator, Fraction | float]:
    """Decoded ``av.VideoFrame`` objects of the job's video (its segment only) and the source frame rate."""
    container, stream = open_container(job.src)
    stream.thread_type = "AUTO"
    rate = stream_rate(stream) or Fraction(25)

    def frames() -> Iterator:
        with container:
            if job.start:
                container.seek(int(job.start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else 0.0
                if job.start is not None and t < job.start - 1e-6:
                    continue
                if job.end is not None and t >= job.end - 1e-6:
                    break
                yield frame

    return frames(), rate


def _folder_frames(job: TranscodeJob) -> tuple[Iterator, float]:
    """The frames of a frame folder as ``av.VideoFrame`` objects, at ``job.frames_fps``."""
    import av
    import numpy as np
    from PIL import Image

    def frames() -> Iterator:
        for file in list_frame_images(job.src):
            with Image.open(file) as image:
                yield av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")

    return frames(), job.frames_fps


def transcode_one(job: TranscodeJob) -> tuple[probe.ProbeResult, bool]:
    """Run one job; return the probe of the output and whether an existing output was kept. Never raises for a
    bad input: failures come back as ``bad`` results."""
    import av

    dst = Path(job.dst)
    if dst.exists():
        existing = probe.probe_path(dst)
        complete = job.expected_frames in (0, existing.num_frames)
        if existing.status == "ok" and complete:
            return existing, True
    tmp = dst.with_name(f".{dst.stem}.part{dst.suffix}")
    try:
        frames, rate = _folder_frames(job) if Path(job.src).is_dir() else _video_frames(job)
        writer = None
        try:
            for frame in frames:
                if writer is None:
                    width, height = output_size(frame.width, frame.height, job.short_side)
                    writer = VideoWriter(tmp, width, height, fps=rate, codec=job.codec, gop=job.gop,
                                         crf=job.crf, fast_decode=job.fast_decode, b_frames=job.b_frames)
                writer.write(frame.reformat(width=writer.width, height=writer.height, format=writer.pix_fmt,
                                            interpolation="AREA"))
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            return probe.ProbeResult.bad("no frames", "nothing to transcode in the segment"), False
        os.replace(tmp, dst)
    except (av.error.FFmpegError, OSError, ValueError, DataError) as exc:
        tmp.unlink(missing_ok=True)
        return probe.ProbeResult.bad("transcode failed", str(getattr(exc, "strerror", None) or exc)), False
    return probe.probe_path(dst), False


def _output_names(rows: list[ManifestRow], base: Path, suffix: str) -> list[str]:
    """Output paths relative to OUTDIR: the source's path below ``base`` with the codec's suffix, plus
    ``_<start ms>_<end ms>`` for a trimmed row; the source suffix is kept where two names would collide."""
    def name(row: ManifestRow, keep_suffix: bool) -> str:
        relative = Path(os.path.relpath(row.path, base))
        stem = relative.name if keep_suffix or Path(row.path).is_dir() else relative.stem
        if row.start is not None:
            end = "end" if row.end is None else f"{int(round(row.end * 1000)):09d}"
            stem += f"_{int(round(row.start * 1000)):09d}_{end}"
        return (relative.parent / (stem + suffix)).as_posix()

    names = [name(r, False) for r in rows]
    clashes = {n for n, c in Counter(names).items() if c > 1}
    return [name(r, True) if n in clashes else n for r, n in zip(rows, names, strict=True)]


def transcode_manifest(
    manifest: str | Path | Manifest,
    out_dir: str | Path,
    short_side: int = 128,
    gop: int = 16,
    codec: str = "h264",
    workers: int | None = None,
    crf: int | None = None,
    frames_fps: float = 25.0,
    progress: bool = True,
    fast_decode: bool = True,
    b_frames: bool = False,
) -> tuple[Manifest, int]:
    """Re-encode the ``ok`` rows of ``manifest`` into ``out_dir`` and write ``out_dir/manifest.csv``.

    Returns the new manifest and the number of outputs kept from an earlier run. Labels and splits carry over;
    a trimmed row's output holds only its segment (so its start/end become empty); frame folders play at
    ``frames_fps``. Rows that fail to transcode are ``bad`` rows of the new manifest. ``fast_decode``,
    ``b_frames``: h264 encoded for decoding speed, by default without B-frames (the random-access preset; see
    :class:`~vidfast.data.video_io.VideoWriter`).
    """
    if codec not in TRANSCODE_CODECS:
        raise ValueError(f"--codec must be one of {', '.join(TRANSCODE_CODECS)}, got {codec!r}")
    if short_side < 2:
        raise ValueError(f"--short-side must be >= 2, got {short_side}")
    if gop < 1:
        raise ValueError(f"--gop must be >= 1, got {gop}")
    if frames_fps <= 0:
        raise ValueError(f"frames fps must be > 0, got {frames_fps}")
    source = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    out_dir = Path(out_dir).absolute()
    rows = source.select(only_ok=True)
    base = Path(os.path.commonpath([os.path.dirname(r.path) for r in rows])) if rows else source.root
    names = _output_names(rows, base, CODECS[codec][2])
    jobs = [
        TranscodeJob(src=r.path, dst=str(out_dir / n), start=r.start, end=r.end, short_side=short_side,
                     gop=gop, codec=codec, crf=crf, fast_decode=fast_decode, b_frames=b_frames,
                     frames_fps=frames_fps,
                     expected_frames=r.num_frames if r.start is None and r.end is None else 0)
        for r, n in zip(rows, names, strict=True)
    ]
    for job in jobs:
        Path(job.dst).parent.mkdir(parents=True, exist_ok=True)
    results: list[probe.ProbeResult | None] = [None] * len(jobs)
    kept = 0
    runs = probe.run_parallel(transcode_one, jobs, workers, "transcoding", progress)
    for index, (result, was_kept) in runs:
        results[index] = result
        kept += was_kept
    new_rows = [
        replace(row, path=job.dst, start=None, end=None, num_frames=res.num_frames, fps=res.fps,
                width=res.width, height=res.height, status=res.status, reason=res.reason)
        for row, job, res in zip(rows, jobs, results, strict=True)
    ]
    write_manifest(out_dir / "manifest.csv", new_rows)
    return read_manifest(out_dir / "manifest.csv"), kept

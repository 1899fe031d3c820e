"""Timelines: class scores of sliding windows over a long video or a live stream (numpy + PyAV, no torch).

A window is ``clips`` consecutive model clips of ``clip_len`` frames taken every ``frame_step`` frames (so it
covers ``clips * clip_len * frame_step`` source frames); windows start every ``stride`` frames, a multiple of
``frame_step``, so that every window samples the same frames of the source as its neighbours. A window's
scores are the softmax probabilities of its clips averaged. ``smooth`` > 1 replaces them by the trailing
moving average over the last ``smooth`` windows scored (causal, so that a live stream does not wait for
future windows). When the source ends, one more window ending at the last frame covers what the stride
left; a source shorter than one window is loop-padded (as the training pipeline pads short videos).

:class:`Timeline` is the Python API (an iterator of :class:`WindowResult`); ``vidfast predict --timeline``
is the CLI. Per-second labels average the windows overlapping each second, weighted by the overlap.
"""

from __future__ import annotations

import csv
import math
import re
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from vidfast.conventions import normalising_affine
from vidfast.deploy.stream import (
    DEFAULT_TIMEOUT,
    FrameReader,
    SampledFrame,
    Source,
    StreamError,
    StreamInfo,
    source_name,
)
from vidfast.errors import VidfastError

#: windows per model call when reading a file (a live stream scores each window as soon as it is complete)
DEFAULT_BATCH = 8


class ClipScorer(Protocol):
    """What a timeline needs from a model: its clip ``(T, H, W)``, frame step, class names, and class
    probabilities ``float32 [N, C]`` of uint8 clips ``[N, T, H, W, 3]``."""

    clip: tuple[int, int, int]
    frame_step: int
    class_names: list[str]

    def probs(self, clips: np.ndarray) -> np.ndarray: ...


class OnnxClipScorer:
    """A :class:`vidfast.deploy.OnnxClassifier` as a :class:`ClipScorer`: uint8 frames go to a graph that
    preprocesses in-graph, float clips normalised here with the metadata's convention to the others."""

    def __init__(self, classifier) -> None:
        meta = classifier.metadata
        if meta.task != "classify":
            raise VidfastError(f"{classifier.path} is a {meta.task} export; a timeline needs class scores")
        self.classifier = classifier
        self.clip = tuple(meta.clip)
        self.frame_step = meta.frame_step
        self.class_names = list(meta.class_names) or [str(i) for i in range(self._num_classes())]
        scale, bias = normalising_affine(meta.input_convention.unit_mean, meta.input_convention.unit_std)
        self._scale = np.asarray(scale, np.float32)
        self._bias = np.asarray(bias, np.float32)

    def _num_classes(self) -> int:
        shape = self.classifier.session.get_outputs()[0].shape
        return int(shape[-1]) if isinstance(shape[-1], int) else 0

    def probs(self, clips: np.ndarray) -> np.ndarray:
        from vidfast.deploy.classifier import softmax

        if self.classifier.metadata.preprocess:
            return softmax(self.classifier.predict(clips))
        x = clips.astype(np.float32) * self._scale + self._bias  # [N, T, H, W, 3]
        return softmax(self.classifier.predict(np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))))


_SPAN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|f)?\s*$")


def parse_span(text: str | int | float | None) -> tuple[float, str] | None:
    """``"2s"``/``"1.5s"`` -> ``(2.0, "s")``; ``"48"``/``"48f"`` -> ``(48, "f")``; None stays None."""
    if text is None:
        return None
    if isinstance(text, int | float):
        text = str(text)
    match = _SPAN.match(text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"a window or stride is a positive number of frames (48, 48f) or seconds (2s), "
                         f"got {text!r}")
    unit = match.group(2) or "f"
    if unit == "f" and not float(match.group(1)).is_integer():
        raise ValueError(f"a number of frames must be whole, got {text!r}")
    return float(match.group(1)), unit


@dataclass(frozen=True)
class WindowPlan:
    """Windows of ``clips`` clips of ``clip_len`` frames every ``frame_step`` source frames, starting every
    ``stride`` converted frames (``stride * frame_step`` source frames)."""

    clip_len: int
    frame_step: int
    clips: int
    stride: int

    @property
    def samples(self) -> int:
        """Converted frames per window (``clips * clip_len``)."""
        return self.clips * self.clip_len

    @property
    def frames(self) -> int:
        """Source frames a window covers."""
        return self.samples * self.frame_step

    @property
    def stride_frames(self) -> int:
        """Source frames between window starts."""
        return self.stride * self.frame_step


def plan_windows(clip_len: int, frame_step: int, fps: float, window: str | None = None,
                 stride: str | None = None) -> WindowPlan:
    """Align a window (default: one clip) to whole clips and a stride (default: the window) to whole frame
    steps, at the source's ``fps`` for lengths in seconds (nearest, at least one clip / one frame step)."""

    def frames(span: tuple[float, str] | None, default: int) -> float:
        if span is None:
            return default
        value, unit = span
        return value * fps if unit == "s" else value

    clip_frames = clip_len * frame_step
    clips = max(1, round(frames(parse_span(window), clip_frames) / clip_frames))
    stride_samples = max(1, round(frames(parse_span(stride), clips * clip_frames) / frame_step))
    return WindowPlan(clip_len, frame_step, clips, stride_samples)


@dataclass(frozen=True)
class WindowResult:
    """One scored window: ``start``/``end`` in seconds from the first frame, ``first_frame`` its first source
    frame, ``probs`` float32 ``[C]`` (smoothed when smoothing is on; ``raw`` without), ``latency`` seconds
    from the decode of its last frame to its scores."""

    index: int
    first_frame: int
    start: float
    end: float
    probs: np.ndarray
    raw: np.ndarray
    latency: float

    def top(self, class_names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
        """The ``min(k, C)`` best classes as ``(name, score)``, best first."""
        return top_labels(self.probs, class_names, k)


def top_labels(probs: np.ndarray, class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [(class_names[i], float(probs[i])) for i in order]


@dataclass
class TimelineStats:
    """How a run went: frames decoded, dropped (live mode, model behind: converted frames the ring let go)
    and lost (live mode: missing from the stream's timestamps), windows scored and skipped, media seconds
    read, wall seconds, latency sum and maximum (seconds; running totals, so that a stream of any length
    keeps constant state) and the ring's peak occupancy."""

    frames_decoded: int = 0
    frames_dropped: int = 0
    frames_lost: int = 0
    windows: int = 0
    windows_skipped: int = 0
    media_seconds: float = 0.0
    wall_seconds: float = 0.0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    ring_capacity: int = 0
    ring_peak: int = 0

    @property
    def realtime_factor(self) -> float:
        """Media seconds per wall second (2.0: twice as fast as real time)."""
        return self.media_seconds / self.wall_seconds if self.wall_seconds > 0 else math.nan

    def to_dict(self) -> dict:
        return {
            "frames_decoded": self.frames_decoded,
            "frames_dropped": self.frames_dropped,
            "frames_lost": self.frames_lost,
            "windows": self.windows,
            "windows_skipped": self.windows_skipped,
            "media_seconds": round(self.media_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "realtime_factor": round(self.realtime_factor, 3),
            "frames_per_second": (round(self.frames_decoded / self.wall_seconds, 2) if self.wall_seconds
                                  else None),
            "latency_mean_s": _finite(self.latency_sum / self.windows if self.windows else math.nan),
            "latency_max_s": _finite(self.latency_max if self.windows else math.nan),
            "ring_capacity": self.ring_capacity,
            "ring_peak": self.ring_peak,
        }

    def summary(self) -> str:
        d = self.to_dict()
        lat = "" if d["latency_mean_s"] is None else (
            f", latency mean {d['latency_mean_s']:.3f} s max {d['latency_max_s']:.3f} s")
        return (f"{self.windows} windows over {self.media_seconds:.1f} s in {self.wall_seconds:.1f} s "
                f"({self.realtime_factor:.2f}x real time, {d['frames_per_second']} frames/s decoded), "
                f"{self.frames_dropped} frames dropped, {self.frames_lost} lost, "
                f"{self.windows_skipped} windows skipped{lat}")


def _finite(x: float) -> float | None:
    return round(x, 4) if math.isfinite(x) else None


class Timeline:
    """Sliding-window scores of ``source`` (see the module docstring); iterate it for :class:`WindowResult`.

    Args:
        scorer: a :class:`ClipScorer`, e.g. ``OnnxClipScorer(OnnxClassifier("model.onnx"))``.
        source: a path, a URL, ``"-"`` (stdin) or a binary file object.
        window, stride: ``"2s"`` or ``"32"`` frames (see :func:`plan_windows`).
        smooth: trailing moving average over this many windows (1: none).
        live: real-time mode: frames are dropped (counted) when the model falls behind; the ring then holds
            one window and one stride of frames, and windows are scored one at a time as they complete.
        batch: windows per model call when not live.
        timeout: seconds without a frame before the source counts as stalled.
        format: container format of a source that cannot be probed (e.g. ``"mpegts"``).
        progress: called after each model call with ``(media seconds done, stats)``.

    After the iteration, ``stats`` says how it went and ``info`` what the source was; a source that stalls,
    breaks or ends early raises :class:`~vidfast.deploy.stream.StreamError` after the windows before it.
    """

    def __init__(self, scorer: ClipScorer, source: Source, window: str | None = None,
                 stride: str | None = None, smooth: int = 1, live: bool = False, batch: int = DEFAULT_BATCH,
                 timeout: float = DEFAULT_TIMEOUT, format: str | None = None, progress=None,
                 decode_threads: int = 0) -> None:
        if smooth < 1:
            raise ValueError(f"smooth must be >= 1 window, got {smooth}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        parse_span(window), parse_span(stride)  # ValueError before anything is opened
        self.scorer, self.source = scorer, source
        self.window, self.stride, self.smooth, self.live = window, stride, smooth, live
        self.batch = 1 if live else batch
        self.timeout, self.format, self.progress = timeout, format, progress
        self.decode_threads = decode_threads
        self.stats = TimelineStats()
        self.info: StreamInfo | None = None
        self.plan: WindowPlan | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.scorer.class_names)

    def __iter__(self) -> Iterator[WindowResult]:
        t, h, w = self.scorer.clip
        frame_step = self.scorer.frame_step
        # a file's ring only needs to keep the decoder ahead; a live one holds the last window and stride
        # (the plan is known once the frame rate is; until then this bound is enough for either)
        reader = FrameReader(self.source, (h, w), frame_step=frame_step, live=self.live, capacity=4 * t,
                             timeout=self.timeout, format=self.format, decode_threads=self.decode_threads)
        started = time.perf_counter()
        try:
            self.info = reader.start()
            self.plan = plan_windows(t, frame_step, self.info.fps, self.window, self.stride)
            if self.live:
                reader.ring.capacity = self.plan.samples + self.plan.stride
            self.stats.ring_capacity = reader.ring.capacity
            yield from self._windows(reader)
        finally:
            reader.close()
            self.stats.frames_decoded = reader.decoded
            self.stats.frames_dropped = reader.dropped
            self.stats.frames_lost = reader.lost
            self.stats.ring_peak = reader.ring.peak
            self.stats.wall_seconds = time.perf_counter() - started

    def _windows(self, reader: FrameReader) -> Iterator[WindowResult]:
        plan = self.plan
        assert plan is not None and self.info is not None
        fps = self.info.fps
        pending: deque[SampledFrame] = deque()  # consecutive frames from the next window's start on
        tail: deque[SampledFrame] = deque(maxlen=plan.samples)  # the last window's worth, for the end
        ready: list[tuple[list[SampledFrame], float | None]] = []  # frames, end when not a whole window
        recent: deque[np.ndarray] = deque(maxlen=self.smooth)
        next_start = 0  # in converted frames (source frame // frame_step)
        covered = 0  # converted frames up to which a window has been formed

        def flush() -> Iterator[WindowResult]:
            if not ready:
                return
            clips = np.stack([np.stack([f.rgb for f in frames]) for frames, _ in ready])
            t, h, w = self.scorer.clip
            probs = self.scorer.probs(clips.reshape(-1, t, h, w, 3)).reshape(len(ready), plan.clips, -1)
            done = time.perf_counter()
            for (frames, end), raw in zip(ready, probs.mean(axis=1), strict=True):
                recent.append(raw)
                start = frames[0].time
                end = start + plan.frames / fps if end is None else end
                result = WindowResult(self.stats.windows, frames[0].index, start, end,
                                      np.mean(recent, axis=0).astype(np.float32), raw.astype(np.float32),
                                      done - frames[-1].arrived)
                self.stats.windows += 1
                self.stats.latency_sum += result.latency
                self.stats.latency_max = max(result.latency, self.stats.latency_max)
                yield result
            ready.clear()
            if self.progress is not None:
                self.progress(self.stats.media_seconds, self.stats)

        try:
            for frame in reader:
                sample = frame.index // plan.frame_step
                self.stats.media_seconds = reader.end_time
                if pending and sample != pending[-1].index // plan.frame_step + 1:
                    pending.clear()  # frames were dropped: the window being formed is lost
                if tail and sample != tail[-1].index // plan.frame_step + 1:
                    tail.clear()
                tail.append(frame)
                if sample > next_start and not pending:
                    skipped = -(-(sample - next_start) // plan.stride)
                    self.stats.windows_skipped += skipped
                    next_start += skipped * plan.stride
                if sample < next_start:
                    continue
                pending.append(frame)
                if len(pending) == plan.samples:
                    ready.append((list(pending), None))
                    covered = sample + 1
                    next_start += plan.stride
                    while pending and pending[0].index // plan.frame_step < next_start:
                        pending.popleft()
                    if len(ready) >= self.batch:
                        yield from flush()
        except StreamError:
            yield from flush()  # the windows before the failure are kept
            raise
        self.stats.media_seconds = reader.end_time
        if tail and tail[-1].index // plan.frame_step + 1 > covered:
            frames = list(tail)
            if covered == 0:  # shorter than a window: loop-padded
                frames = [frames[i % len(frames)] for i in range(plan.samples)]
            if len(frames) == plan.samples:
                ready.append((frames, min(frames[0].time + plan.frames / fps, reader.end_time)))
        yield from flush()


def per_second(windows: Sequence[WindowResult]) -> list[tuple[int, np.ndarray]]:
    """``(second, probs [C])`` for every whole second ``[s, s + 1)`` some window overlaps: the windows'
    (smoothed) probabilities averaged, weighted by how much of the second each covers."""
    if not windows:
        return []
    last = max(w.end for w in windows)
    sums: dict[int, np.ndarray] = {}
    weights: dict[int, float] = {}
    for w in windows:
        for s in range(int(math.floor(w.start)), min(int(math.ceil(w.end)), int(math.ceil(last)))):
            overlap = min(w.end, s + 1) - max(w.start, s)
            if overlap <= 0:
                continue
            sums[s] = sums.get(s, 0) + overlap * w.probs
            weights[s] = weights.get(s, 0.0) + overlap
    return [(s, (sums[s] / weights[s]).astype(np.float32)) for s in sorted(sums)]


def _labels(probs: np.ndarray, names: Sequence[str], k: int) -> list[dict]:
    return [{"label": name, "score": round(score, 6)} for name, score in top_labels(probs, names, k)]


def timeline_dict(windows: Sequence[WindowResult], names: Sequence[str], topk: int = 5) -> dict:
    """JSON-ready ``{"timeline": [{"start", "end", "labels"}], "seconds": [{"second", "labels"}]}``
    (seconds rounded to the ms, labels best first)."""
    return {
        "timeline": [{"start": round(w.start, 3), "end": round(w.end, 3),
                      "labels": _labels(w.probs, names, topk)} for w in windows],
        "seconds": [{"second": s, "labels": _labels(p, names, topk)} for s, p in per_second(windows)],
    }


CSV_HEADER = ("path", "kind", "start", "end", "rank", "label", "score")


def write_timeline_csv(path: str | Path, rows_by_video: Sequence[tuple[str, Sequence[WindowResult]]],
                       names: Sequence[str], topk: int = 5) -> None:
    """One row per (video, window or second, rank): ``path, kind (window|second), start, end, rank, label,
    score`` (seconds)."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_HEADER)
        for video, windows in rows_by_video:
            spans = [("window", w.start, w.end, w.probs) for w in windows]
            spans += [("second", float(s), float(s + 1), p) for s, p in per_second(windows)]
            for kind, start, end, probs in spans:
                for rank, (label, score) in enumerate(top_labels(probs, names, topk), 1):
                    out.writerow([video, kind, f"{start:.3f}", f"{end:.3f}", rank, label, f"{score:.6f}"])


@dataclass
class TimelineOutcome:
    """One source's timeline: the windows scored (all of them up to a failure), how the run went, and
    ``error`` (one line) when the source stalled, broke, ended early or could not be rendered."""

    source: str
    windows: list[WindowResult]
    stats: TimelineStats
    error: str | None = None
    rendered: int | None = None

    def video_probs(self) -> np.ndarray | None:
        """The windows' raw probabilities averaged (a video-level score), None without windows."""
        return np.mean([w.raw for w in self.windows], axis=0) if self.windows else None

    def to_dict(self, class_names: Sequence[str], topk: int = 5) -> dict:
        """``vidfast predict --json``'s object: path, video-level labels, timeline, seconds, stats, error."""
        probs = self.video_probs()
        return {
            "path": self.source,
            "labels": [] if probs is None else _labels(probs, class_names, topk),
            **timeline_dict(self.windows, class_names, topk),
            "stats": self.stats.to_dict(),
            "error": self.error,
        }


def run_timeline(scorer: ClipScorer, source: Source, on_window=None, progress: str = "auto",
                 render: str | Path | None = None, **options) -> TimelineOutcome:
    """A :class:`Timeline` of ``source`` (``options``: its keyword arguments) run to the end, never raising
    for the source's failures or Ctrl-C (they become ``error``, the windows before them kept). ``on_window``
    is called with each :class:`WindowResult`; ``progress`` ("auto", "rich", "plain", "none") shows a bar over
    the seconds of a file with the real-time factor; ``render`` re-encodes a file with the labels drawn."""
    from vidfast.progress import Progress

    if render is not None and (not isinstance(source, str | Path) or str(source) == "-"
                               or "://" in str(source)):
        raise ValueError("--render re-reads the video to draw on it: it needs a file, not a pipe or a URL")
    bar: list[Progress] = []

    def advance(media_seconds: float, stats: TimelineStats) -> None:
        info = timeline.info
        if not bar:
            known = info is not None and info.duration is not None
            total = math.ceil(info.duration) if known else 0
            bar.append(Progress(f"timeline {source_name(source)}", total, mode=progress if known else "none"))
        done = min(int(media_seconds), bar[0].total)
        elapsed = time.perf_counter() - started
        bar[0].advance(done - bar[0].done, f"{media_seconds / elapsed:.1f}x real time" if elapsed else "")

    timeline = Timeline(scorer, source, progress=advance if progress != "none" else None, **options)
    started = time.perf_counter()
    error = None
    windows: list[WindowResult] = []
    try:
        for window in timeline:
            windows.append(window)
            if on_window is not None:
                on_window(window)
    except StreamError as exc:
        error = str(exc)
    except KeyboardInterrupt:  # how a live stream is usually ended: the windows so far are still written
        error = f"{source_name(source)}: interrupted"
    finally:
        for b in bar:
            b.close()
    outcome = TimelineOutcome(source_name(source), windows, timeline.stats, error)
    if render is not None:
        from vidfast.deploy.render import render_timeline

        try:
            outcome.rendered = render_timeline(source, render, windows, scorer.class_names)
        except StreamError as exc:
            outcome.error = outcome.error or str(exc)
    return outcome


__all__ = [
    "ClipScorer",
    "OnnxClipScorer",
    "TimelineOutcome",
    "StreamError",
    "Timeline",
    "TimelineStats",
    "WindowPlan",
    "WindowResult",
    "per_second",
    "plan_windows",
    "run_timeline",
    "timeline_dict",
    "write_timeline_csv",
]

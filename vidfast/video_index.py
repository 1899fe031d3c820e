"""Facts about a PyAV video stream shared by the training decoders (:mod:`vidfast.data.decoders.pyav`) and
the torch-free deployment reader (:mod:`vidfast.deploy.video`): its frame rate, which demuxed packets are
frames, and the index of every frame's presentation time and the keyframes to seek to. numpy + PyAV only."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


def stream_rate(stream) -> Fraction | None:
    """Frame rate of a PyAV video stream: its average rate, else the guessed one, else the base rate (None:
    unknown)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else None


def is_frame_packet(packet) -> bool:
    """Whether a demuxed packet is a presented frame: not empty (the demuxer's flush) and not marked discard
    (e.g. cut by an MP4 edit list; the decoder never outputs it)."""
    return packet.size > 0 and not packet.is_discard


@dataclass(frozen=True)
class StreamIndex:
    """Presentation timestamps of every frame (sorted: frame ``i`` has ``pts[i]``) and keyframe positions.

    A keyframe is sought at its own pts first: MP4/MKV demuxers land exactly on it, whereas its dts (earlier
    under B-frame reordering) lands one GOP early. ``safe_seek_ts[k]`` (min of the pts and dts of keyframe
    ``key_frames[k]``) is the retry for a demuxer that overshoots the pts: a backward seek to it lands on the
    keyframe or earlier whatever timestamp the demuxer's index uses. ``pts`` is empty when the container
    carries no timestamps; the decoder then counts frames from the start.
    """

    num_frames: int
    pts: np.ndarray
    key_frames: np.ndarray
    safe_seek_ts: np.ndarray

    @property
    def seekable(self) -> bool:
        return self.pts.size == self.num_frames and self.key_frames.size > 0

    def keyframe_before(self, frame: int) -> int:
        """Position in ``key_frames`` of the last keyframe at or before ``frame`` (-1: none)."""
        return bisect_right(self.key_frames.tolist(), frame) - 1


def build_stream_index(container, stream) -> StreamIndex:
    """Demux (without decoding) every packet of ``stream`` and index frames by presentation time."""
    stamps: list[int] = []
    keys: list[tuple[int, int]] = []
    count = 0
    for packet in container.demux(stream):
        if not is_frame_packet(packet):
            continue
        count += 1
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is None:
            continue
        stamps.append(ts)
        if packet.is_keyframe:
            keys.append((ts, min(ts, packet.dts) if packet.dts is not None else ts))
    pts = np.asarray(sorted(stamps), dtype=np.int64)
    if pts.size != count or np.unique(pts).size != pts.size:
        return StreamIndex(count, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
    position = {int(p): i for i, p in enumerate(pts)}
    keys.sort()
    return StreamIndex(
        count,
        pts,
        np.asarray([position[k] for k, _ in keys], dtype=np.int64),
        np.asarray([s for _, s in keys], dtype=np.int64),
    )

"""Which file decoder ``backend="auto"`` tries first on the CPU, measured once per machine.

PyAV, decord2 and torchcodec read the same files; which is fastest depends on the processor and on the
FFmpeg builds the wheels carry. The first time ``auto`` finds more than one of them usable, each decodes the
same random 16-frame clips of a short 128-px H.264 video with a keyframe every 16 frames (what ``vidfast data
transcode`` writes), half of them starting on a keyframe (as keyframe snapping draws them) and half
anywhere, opening the file per clip, one codec thread, in interleaved rounds after a warm-up one; a
backend's rate is that of its fastest round (other processes slow rounds down, never up). ~1-2 s in all. The
order is kept in the runtime cache (store ``decoders``, see :mod:`vidfast.runtime.cache`) under the machine
and the libraries' versions, and in memory for the process (DataLoader workers inherit it).
"""

from __future__ import annotations

import logging
import tempfile
import time
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from vidfast.runtime.cache import JsonlStore, machine_fingerprint

log = logging.getLogger("vidfast.data")

#: the measurement video: frames, height, width, keyframe interval; clips per backend and round; rounds
_FRAMES, _HEIGHT, _WIDTH, _GOP = 96, 128, 170, 16
_CLIP, _CLIPS, _ROUNDS = 16, 8, 5
#: distribution each backend's version is read from
_DISTRIBUTIONS = {"pyav": "av", "decord2": "decord2", "torchcodec": "torchcodec"}


def _version(name: str) -> str:
    try:
        return metadata.version(_DISTRIBUTIONS.get(name, name))
    except metadata.PackageNotFoundError:
        return "?"


def _test_video(folder: Path) -> Path:
    """A moving gradient with texture, encoded as ``vidfast data transcode`` encodes."""
    from vidfast.data.video_io import write_video

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:_HEIGHT, :_WIDTH]
    texture = rng.integers(0, 40, (_HEIGHT + _FRAMES, _WIDTH + _FRAMES), dtype=np.uint8)
    frames = np.stack([
        np.stack([(x * 2 + t * 3) % 256, (y * 2 + t) % 256, texture[t:t + _HEIGHT, t:t + _WIDTH] * 6],
                 axis=-1)
        for t in range(_FRAMES)
    ]).astype(np.uint8)
    return write_video(folder / "probe.mp4", frames, gop=_GOP, crf=23, fast_decode=True)


def measure(names: tuple[str, ...]) -> dict[str, float]:
    """Frames/s of random clips decoded by each backend of ``names`` (see the module docstring)."""
    from vidfast.data.decoders.base import BACKENDS

    rng = np.random.default_rng(0)
    starts = rng.integers(0, _FRAMES - _CLIP + 1, (_ROUNDS, _CLIPS))
    starts[:, ::2] -= starts[:, ::2] % _GOP
    fastest = dict.fromkeys(names, float("inf"))
    with tempfile.TemporaryDirectory(prefix="vidfast-decoders-") as folder:
        path = _test_video(Path(folder))
        for r, round_starts in enumerate(starts):
            for name in names:
                opener = BACKENDS[name].threaded
                assert opener is not None
                begin = time.perf_counter()
                for start in round_starts.tolist():
                    video = opener(path, 1)
                    video.get_frames(range(start, start + _CLIP))
                    video.close()
                if r:  # round 0 warms up
                    fastest[name] = min(fastest[name], time.perf_counter() - begin)
    return {name: _CLIPS * _CLIP / seconds for name, seconds in fastest.items()}


@cache
def measured_order(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` fastest first on this machine (measured once, then cached; a backend failing the measurement
    goes last, logged)."""
    versions = (f"{n} {_version(n)}" for n in sorted(names))
    key = " | ".join([machine_fingerprint(torch.device("cpu")), *versions])
    store = JsonlStore("decoders")
    cached = store.read().get(key)
    if cached is not None and sorted(cached.get("order", [])) == sorted(names):
        return tuple(cached["order"])
    try:
        rates = measure(names)
    except Exception as exc:  # noqa: BLE001 -- a decoder that breaks here must not stop the run; say why
        log.warning("could not time the decoders %s (%s: %s); auto keeps their default order",
                    ", ".join(names), type(exc).__name__, exc)
        return names
    order = tuple(sorted(names, key=lambda n: -rates[n]))
    log.info("decoders on this machine (random 16-frame clips, 1 thread): %s; auto uses %s first",
             ", ".join(f"{n} {rates[n]:.0f} frames/s" for n in order), order[0])
    store.append({"key": key, "order": list(order), "frames_per_s": rates})
    return order

"""The decoder interface and registry: :class:`Video`, :class:`DecoderBackend`, ``register``, ``open_video``.

A backend module (``pyav.py``, ``frame_folder.py``, ``dali.py``) defines its :class:`Video` class and calls
``register(DecoderBackend(...))`` once; ``vidfast/data/decoders/__init__.py`` imports it (one line). A
backend may *defer* decoding: in a DataLoader worker its video returns a :class:`Deferred` (a picklable
request) instead of frames, and the loader hands the batch's requests to ``DecoderBackend.decode_deferred``
in the main process (DALI's NVDEC decode on the GPU works so). (``vidfast.deploy.Backend`` is another thing:
the inference runtime, onnxruntime or PyTorch.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vidfast.errors import BackendUnavailable, DataError


class Video(Protocol):
    """An opened video: metadata plus random frame access. ``key_frames``: sorted int64 positions of the
    frames decoding can start at, where the backend knows them (None: unknown, or every frame)."""

    num_frames: int
    fps: float
    height: int
    width: int
    key_frames: np.ndarray | None

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` (0-based, any order, repeats allowed) as uint8 ``Tensor[t, H, W, 3]``."""
        ...

    def close(self) -> None:
        """Release files and decoder state."""
        ...

    def __enter__(self) -> Video: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass
class Deferred:
    """Frames that backend ``backend`` decodes later, batched, in the main process: ``request`` is whatever
    its ``decode_deferred`` takes (picklable; it crosses from a DataLoader worker)."""

    backend: str
    request: Any


class ClosingVideo:
    """Context-manager support and the default (no) deferral shared by the backends' video classes."""

    #: True when ``read_frames`` returns a :class:`Deferred` instead of frames
    defers: bool = False
    #: keyframe positions (see :class:`Video`)
    key_frames: np.ndarray | None = None

    def close(self) -> None:
        raise NotImplementedError

    def defer(self, indices: Sequence[int]) -> Deferred:
        """The request for frames ``indices`` (only for a video with ``defers``)."""
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_frames(video: Video, indices: Sequence[int]) -> torch.Tensor | Deferred:
    """uint8 ``Tensor[t, H, W, 3]`` of ``indices``, or the :class:`Deferred` request of a deferring video."""
    if getattr(video, "defers", False):
        return video.defer(indices)
    return video.get_frames(indices)


def check_indices(indices: Sequence[int], num_frames: int, path: str | Path) -> np.ndarray:
    """``indices`` as int64 ``[t]``; ValueError when empty, IndexError outside ``[0, num_frames)``."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("indices must not be empty")
    if idx.min() < 0 or idx.max() >= num_frames:
        raise IndexError(
            f"frame indices must lie in [0, {num_frames}) for {path}, got {idx.min()}..{idx.max()}"
        )
    return idx


@dataclass(frozen=True)
class DecoderBackend:
    """One decoding backend.

    ``refusal(path, device, deferred)``: why it cannot serve ``path`` on ``device`` (None: it can);
    ``deferred`` is True in a DataLoader worker that must not touch the device. ``open(path, device,
    deferred)``: the :class:`Video`. ``priority``: ``(cpu, gpu)`` rank in the ``auto`` order (lower first).
    ``unavailable(device)``: why the backend cannot run at all on ``device`` (None: it may).
    ``decode_deferred(requests, device)``: frames of :class:`Deferred` requests on ``device`` (DataError when
    the batch fails), for a backend whose videos defer. ``threaded(path, threads)``: the video opened on
    the CPU with ``threads`` codec threads, for the file decoders whose order in ``auto`` on the CPU is
    measured on each machine (:mod:`vidfast.data.decoders.ranking`).
    """

    name: str
    refusal: Callable[[Path, torch.device, bool], str | None]
    open: Callable[[Path, torch.device, bool], Video]
    priority: tuple[int, int]
    unavailable: Callable[[torch.device], str | None] = lambda device: None
    decode_deferred: Callable[[list[Any], torch.device], list[torch.Tensor]] | None = None
    threaded: Callable[[Path, int], Video] | None = None

    def defers_on(self, device: torch.device) -> bool:
        """Whether a worker's videos of this backend defer their decode to the main process on ``device``."""
        return self.decode_deferred is not None and device.type == "cuda" and self.unavailable(device) is None


#: backend name -> DecoderBackend, filled by the backend modules
BACKENDS: dict[str, DecoderBackend] = {}


def register(backend: DecoderBackend) -> DecoderBackend:
    """Add ``backend`` to :data:`BACKENDS` (a backend module calls this once)."""
    BACKENDS[backend.name] = backend
    return backend


def backend_priority(device: str | torch.device = "cpu") -> list[str]:
    """Order in which ``backend="auto"`` tries the backends on ``device``: their ``priority``, and on the CPU
    the file decoders that can run (those with ``threaded``) fastest first, as measured on this machine."""
    from vidfast.data.decoders.ranking import measured_order

    device = torch.device(device)
    slot = int(device.type == "cuda")
    order = sorted(BACKENDS, key=lambda name: BACKENDS[name].priority[slot])
    if device.type == "cpu":
        timed = [n for n in order
                 if BACKENDS[n].threaded is not None and BACKENDS[n].unavailable(device) is None]
        if len(timed) > 1:
            fastest = iter(measured_order(tuple(timed)))
            order = [next(fastest) if n in timed else n for n in order]
    return order


def candidates(backend: str, device: str | torch.device = "cpu") -> list[str]:
    """The backends ``backend`` (a name or ``auto``) may use on ``device``."""
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")
    return backend_priority(device) if backend == "auto" else [backend]


def select_backend(path: str | Path, backend: str = "auto", device: str | torch.device = "cpu",
                   deferred: bool = False) -> str:
    """Name of the first backend (of ``backend``, or of the ``auto`` priority list) able to serve ``path``.

    Raises :class:`BackendUnavailable` listing why each candidate refused, DataError for a missing path.
    """
    path = Path(path)
    device = torch.device(device)
    names = candidates(backend, device)
    if not path.exists():
        raise DataError(f"video not found: {path}")
    reasons = []
    for name in names:
        reason = BACKENDS[name].refusal(path, device, deferred)
        if reason is None:
            return name
        reasons.append(f"{name}: {reason}")
    raise BackendUnavailable(f"no decoding backend can read {path} on {device}: " + "; ".join(reasons))


def open_video(path: str | Path, backend: str = "auto", device: str | torch.device = "cpu",
               deferred: bool = False) -> Video:
    """Open ``path`` (video file or frame folder) with ``backend`` (``auto`` or a name of :data:`BACKENDS`).
    Frames come back on ``device`` for a backend that decodes there (DALI), on the CPU for the others.
    ``deferred`` (DataLoader workers): a backend that defers on ``device`` returns a video whose
    :func:`read_frames` gives a :class:`Deferred` request."""
    device = torch.device(device)
    name = select_backend(path, backend, device, deferred)
    return BACKENDS[name].open(Path(path), device, deferred)


def decode_deferred(requests: Sequence[Deferred], device: torch.device) -> list[torch.Tensor]:
    """Frames of every request, each by its backend's ``decode_deferred`` on ``device`` (DataError when one
    backend's batch fails)."""
    out: list[torch.Tensor | None] = [None] * len(requests)
    for name in dict.fromkeys(r.backend for r in requests):
        mine = [i for i, r in enumerate(requests) if r.backend == name]
        decode = BACKENDS[name].decode_deferred
        assert decode is not None, f"backend {name} does not defer"
        for i, frames in zip(mine, decode([requests[i].request for i in mine], device), strict=True):
            out[i] = frames
    return out  # type: ignore[return-value]


def defers(backend: str, device: str | torch.device) -> bool:
    """Whether some candidate of ``backend`` defers its decode to the main process on ``device``; for a named
    backend that cannot run on a CUDA ``device`` at all, DataError with the reason."""
    device = torch.device(device)
    names = candidates(backend, device)
    if backend != "auto" and device.type == "cuda":
        reason = BACKENDS[backend].unavailable(device)
        if reason is not None:
            raise DataError(f"backend {backend!r} on {device} is unavailable: {reason}")
    return any(BACKENDS[n].defers_on(device) for n in names)

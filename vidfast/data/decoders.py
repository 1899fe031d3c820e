"""Video decoding backends behind one small interface (``open_video``).

A :class:`Video` exposes ``num_frames``, ``fps``, ``height``, ``width`` and ``get_frames(indices)``, which
returns uint8 ``Tensor[t, H, W, 3]`` (RGB, frames in the requested order, repeats allowed). Backends, in
``auto`` priority order:

- ``dali`` (first when ``device`` is CUDA): NVIDIA DALI's ``decoders.video`` operator, NVDEC on the GPU;
  on the CPU it only decodes VP8/VP9/MJPEG.
- ``pyav``: libavcodec through PyAV on the CPU. Seeks to the last keyframe before the first needed frame,
  decodes only up to the last needed frame (seeking again across long gaps), threaded codec.
- ``frames``: a folder of pre-extracted JPEG frames ``image_00001.jpg, ...`` (the CVPR 2018 layout).

Each backend states why it cannot serve an input; when none can, :class:`BackendUnavailable` lists every
reason.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from vidfast.errors import BackendUnavailable, DataError

#: codecs whose decoding DALI supports on the CPU (all others need NVDEC, i.e. ``device="cuda"``)
DALI_CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
#: codecs DALI decodes with NVDEC on the GPU
DALI_GPU_CODECS = frozenset({"vp8", "vp9", "mjpeg", "av1", "mpeg4", "h264", "hevc"})
#: frames a PyAV seek must save to be worth it (a seek flushes the decoder and re-reads from a keyframe)
SEEK_GAIN = 4
_FRAME_FILE = re.compile(r"image_(\d+)\.jpe?g$", re.IGNORECASE)


class Video(Protocol):
    """An opened video: metadata plus random frame access."""

    num_frames: int
    fps: float
    height: int
    width: int

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` (0-based, any order, repeats allowed) as uint8 ``Tensor[t, H, W, 3]``."""
        ...

    def close(self) -> None:
        """Release files and decoder state."""
        ...

    def __enter__(self) -> Video: ...

    def __exit__(self, *exc: object) -> None: ...


class _ClosingVideo:
    """Context-manager support shared by the backends (``with open_video(p) as v: ...``)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_indices(indices: Sequence[int], num_frames: int, path: str | Path) -> np.ndarray:
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("indices must not be empty")
    if idx.min() < 0 or idx.max() >= num_frames:
        raise IndexError(
            f"frame indices must lie in [0, {num_frames}) for {path}, got {idx.min()}..{idx.max()}"
        )
    return idx


# --------------------------------------------------------------------------------------------- PyAV index


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


def _build_index(container, stream) -> StreamIndex:
    """Demux (without decoding) every packet of ``stream`` and index frames by presentation time."""
    stamps: list[int] = []
    keys: list[tuple[int, int]] = []
    count = 0
    for packet in container.demux(stream):
        if packet.size == 0 or packet.is_discard:
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


def _open_container(path: str):
    import av

    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot open video {path}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"no video stream in {path}")
    return container


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
    container = _open_container(str(path))
    try:
        return container.streams.video[0].codec_context.name
    finally:
        container.close()


class PyAVVideo(_ClosingVideo):
    """A video decoded on the CPU with PyAV (see module docstring for the seek strategy)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import av

        self.path = str(path)
        self.threads = default_threads() if threads is None else threads
        self._to_rgb = av.video.reformatter.VideoReformatter()
        self._open()
        try:
            self.index = _INDEX_CACHE.get(self.path, lambda: _build_index(self._container, self._stream))
        except av.FFmpegError as exc:
            self.close()
            raise DataError(f"cannot read {self.path}: {exc}") from None
        if self.index.num_frames == 0:
            self.close()
            raise DataError(f"no frames in {self.path}")
        self.num_frames = self.index.num_frames
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        self.height = int(self._stream.codec_context.height)
        self.width = int(self._stream.codec_context.width)

    def _rgb(self, frame) -> np.ndarray:
        """uint8 ``[H, W, 3]`` RGB of a decoded frame. One reformatter per video:
        ``frame.to_ndarray(format=...)`` builds a new swscale context for every frame, which costs 5-10x the
        conversion itself."""
        return self._to_rgb.reformat(frame, format="rgb24").to_ndarray()

    def _open(self) -> None:
        self._container = _open_container(self.path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = self.threads

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 ``Tensor[t, H, W, 3]`` for ``indices``; see :class:`Video`."""
        import av

        idx = _check_indices(indices, self.num_frames, self.path)
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


# --------------------------------------------------------------------------------------------- JPEG frames


class FramesVideo(_ClosingVideo):
    """A folder of JPEG frames ``image_00001.jpg, ...`` read with PIL (fps unknown: 0.0)."""

    def __init__(self, path: str | Path) -> None:
        from PIL import Image

        self.path = str(path)
        files = sorted(
            (int(m.group(1)), name) for name in os.listdir(self.path) if (m := _FRAME_FILE.match(name))
        )
        if not files:
            raise DataError(f"no image_XXXXX.jpg frames in {self.path}")
        self._files = [os.path.join(self.path, name) for _, name in files]
        self.num_frames = len(self._files)
        self.fps = 0.0
        try:
            with Image.open(self._files[0]) as image:
                self.width, self.height = image.size
        except OSError as exc:
            raise DataError(f"cannot read {self._files[0]}: {exc}") from None

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 ``Tensor[t, H, W, 3]`` for ``indices``; see :class:`Video`."""
        from PIL import Image

        idx = _check_indices(indices, self.num_frames, self.path)
        images: dict[int, np.ndarray] = {}
        for i in np.unique(idx).tolist():
            try:
                with Image.open(self._files[i]) as image:
                    images[i] = np.asarray(image.convert("RGB"))
            except OSError as exc:
                raise DataError(f"cannot read {self._files[i]}: {exc}") from None
            if images[i].shape[:2] != (self.height, self.width):
                raise DataError(
                    f"{self._files[i]} is {images[i].shape[1]}x{images[i].shape[0]}, "
                    f"expected {self.width}x{self.height}"
                )
        return torch.from_numpy(np.stack([images[i] for i in idx.tolist()]))

    def close(self) -> None:
        """Nothing to release (files are opened per frame)."""


# --------------------------------------------------------------------------------------------- DALI


@lru_cache(maxsize=1)
def dali_import_error() -> str | None:
    """Why ``nvidia.dali`` cannot be imported (None: it can)."""
    try:
        import nvidia.dali.fn as fn  # noqa: F401
    except ImportError as exc:
        return f"nvidia.dali is not installed ({exc}); pip install nvidia-dali-cuda130"
    return None


def _dali_decoder():
    """DALI's in-memory video decoder: ``fn.decoders.video`` (DALI >= 1.50) or its older experimental name."""
    import nvidia.dali.fn as fn

    return getattr(fn.decoders, "video", None) or fn.experimental.decoders.video


class DaliVideoDecoder:
    """A DALI pipeline decoding a batch of encoded videos at given frame indices.

    ``device="cpu"`` runs libavcodec inside DALI (VP8/VP9/MJPEG only); ``"cuda"`` uses NVDEC (DALI's ``mixed``
    backend) and returns CUDA tensors. One pipeline is built per process and device, sized for ``max_batch``.
    """

    def __init__(self, device: str = "cpu", max_batch: int = 8, threads: int = 1) -> None:
        self.device = torch.device(device)
        self.max_batch = max_batch
        self.threads = threads
        self.pipe = self._build()

    def _build(self):
        from nvidia.dali import fn, pipeline_def, types

        gpu = self.device.type == "cuda"
        decoder = _dali_decoder()

        @pipeline_def(
            batch_size=self.max_batch,
            num_threads=self.threads,
            device_id=(self.device.index or 0) if gpu else None,
            prefetch_queue_depth=1,
            exec_dynamic=True,
        )
        def graph():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1, device="cpu")
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1, device="cpu")
            return decoder(encoded, frames=frames, device="mixed" if gpu else "cpu")

        pipe = graph()
        pipe.build()
        return pipe

    def decode(self, encoded: Sequence[np.ndarray], indices: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Decode ``encoded[i]`` (uint8 file bytes) at ``indices[i]`` -> list of uint8 ``Tensor[t_i, H_i,
        W_i, 3]``
        on this decoder's device. Raises DataError if DALI fails (the pipeline is then rebuilt: DALI
        invalidates a pipeline after any operator error)."""
        out: list[torch.Tensor] = []
        for start in range(0, len(encoded), self.max_batch):
            chunk = slice(start, start + self.max_batch)
            self.pipe.feed_input("encoded", list(encoded[chunk]))
            self.pipe.feed_input("frames", [np.asarray(i, dtype=np.int32) for i in indices[chunk]])
            try:
                (videos,) = self.pipe.run()
            except RuntimeError as exc:
                self.pipe = self._build()
                detail = next((line for line in str(exc).splitlines() if "failed" in line.lower()), "error")
                raise DataError(f"DALI cannot decode this batch: {detail.strip()}") from None
            if self.device.type == "cuda":
                # copied on the GPU: the pipeline may reuse its output buffers on the next run
                out.extend(torch.from_dlpack(videos[i]).clone() for i in range(len(videos)))
            else:
                out.extend(torch.from_numpy(np.array(videos.at(i))) for i in range(len(videos)))
        return out


_DALI_DECODERS: dict[tuple[int, str], DaliVideoDecoder] = {}


def dali_decoder(device: str = "cpu") -> DaliVideoDecoder:
    """This process's shared :class:`DaliVideoDecoder` for ``device`` (rebuilt after a fork)."""
    key = (os.getpid(), str(torch.device(device)))
    if key not in _DALI_DECODERS:
        _DALI_DECODERS[key] = DaliVideoDecoder(device)
    return _DALI_DECODERS[key]


class DaliVideo(_ClosingVideo):
    """A video decoded by DALI. Metadata and the frame count come from the PyAV packet index, which numbers
    frames in presentation order as DALI does; ``encoded`` holds the file's bytes (uint8 ``[size]``)."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        self.path = str(path)
        with PyAVVideo(self.path) as probe:
            self.num_frames, self.fps, self.height, self.width = (
                probe.num_frames,
                probe.fps,
                probe.height,
                probe.width,
            )
        self.device = device
        self.encoded = np.fromfile(self.path, dtype=np.uint8)

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 ``Tensor[t, H, W, 3]`` (on ``device``) for ``indices``; see :class:`Video`."""
        idx = _check_indices(indices, self.num_frames, self.path)
        try:
            (frames,) = dali_decoder(self.device).decode([self.encoded], [idx])
        except DataError as exc:
            raise DataError(f"{self.path}: {exc}") from None
        return frames

    def close(self) -> None:
        self.encoded = np.empty(0, np.uint8)


# --------------------------------------------------------------------------------------------- selection


def _refuse_pyav(path: Path, device: torch.device) -> str | None:
    if path.is_dir():
        return "the path is a folder (frame folders are read by the 'frames' backend)"
    return None


def _refuse_frames(path: Path, device: torch.device) -> str | None:
    if not path.is_dir():
        return "the path is not a folder of image_XXXXX.jpg frames"
    if not any(_FRAME_FILE.match(entry.name) for entry in os.scandir(path)):
        return "the folder holds no image_XXXXX.jpg frames"
    return None


def dali_refusal(path: Path, device: torch.device, check_cuda: bool = True) -> str | None:
    """Why DALI cannot decode ``path`` on ``device`` (None: it can). ``check_cuda=False`` skips the CUDA
    availability test (for DataLoader workers, which must not touch CUDA; the main process checked it)."""
    if (error := dali_import_error()) is not None:
        return error
    if path.is_dir():
        return "the path is a folder, DALI decodes video files"
    if check_cuda and device.type == "cuda" and not torch.cuda.is_available():
        return "device is CUDA but torch.cuda.is_available() is False"
    try:
        codec = probe_codec(path)
    except DataError as exc:
        return str(exc)
    if device.type == "cpu" and codec not in DALI_CPU_CODECS:
        return (
            f"codec {codec!r} cannot be decoded by DALI on the CPU: DALI's CPU video decoder supports only "
            f"{'/'.join(sorted(DALI_CPU_CODECS))} and rejects {codec} ('not supported by the CPU variant of "
            f"this operator'); {codec} needs NVDEC, i.e. device='cuda'"
        )
    if device.type == "cuda" and codec not in DALI_GPU_CODECS:
        return f"codec {codec!r} is not supported by NVDEC in DALI"
    return None


#: backend name -> (why it refuses ``(path, device)`` or None, constructor)
BACKENDS: dict[
    str, tuple[Callable[[Path, torch.device], str | None], Callable[[Path, torch.device], Video]]
] = {
    "dali": (dali_refusal, lambda p, d: DaliVideo(p, device=str(d))),
    "pyav": (_refuse_pyav, lambda p, d: PyAVVideo(p)),
    "frames": (_refuse_frames, lambda p, d: FramesVideo(p)),
}


def backend_priority(device: str | torch.device = "cpu") -> list[str]:
    """Order in which ``backend="auto"`` tries the backends: DALI first on a GPU, PyAV first on the CPU."""
    if torch.device(device).type == "cuda":
        return ["dali", "pyav", "frames"]
    return ["pyav", "frames", "dali"]


def select_backend(path: str | Path, backend: str = "auto", device: str | torch.device = "cpu") -> str:
    """Name of the first backend (of ``backend``, or of the ``auto`` priority list) able to serve ``path``.

    Raises :class:`BackendUnavailable` listing why each candidate refused, DataError for a missing path.
    """
    path = Path(path)
    device = torch.device(device)
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {backend!r}")
    if not path.exists():
        raise DataError(f"video not found: {path}")
    candidates = backend_priority(device) if backend == "auto" else [backend]
    reasons = []
    for name in candidates:
        reason = BACKENDS[name][0](path, device)
        if reason is None:
            return name
        reasons.append(f"{name}: {reason}")
    raise BackendUnavailable(f"no decoding backend can read {path} on {device}: " + "; ".join(reasons))


def open_video(path: str | Path, backend: str = "auto", device: str | torch.device = "cpu") -> Video:
    """Open ``path`` (video file or JPEG frame folder) with ``backend`` (``auto``, ``pyav``, ``dali``,
    ``frames``). Frames come back on ``device`` for ``dali``, on the CPU for the others."""
    name = select_backend(path, backend, device)
    return BACKENDS[name][1](Path(path), torch.device(device))

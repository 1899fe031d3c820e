"""Writing small videos with PyAV (used by ``data synth``, ``data transcode`` and the tests)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

#: codec name accepted by the CLI -> (PyAV encoder, pixel format, default container suffix)
CODECS: dict[str, tuple[str, str, str]] = {
    "h264": ("libx264", "yuv420p", ".mp4"),
    "mpeg4": ("mpeg4", "yuv420p", ".avi"),
    "vp9": ("libvpx-vp9", "yuv420p", ".webm"),
    "vp8": ("libvpx", "yuv420p", ".webm"),
    "mjpeg": ("mjpeg", "yuvj420p", ".avi"),
}


def _rate(fps: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction (29.97... -> 30000/1001)."""
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return rate


def _fill_row_padding(frame) -> None:
    """Repeat each row's last sample into the alignment padding after it, which FFmpeg leaves uninitialised
    (8-bit planar formats such as yuv420p). libx264 reads that padding, so without this the same frames could
    encode to different bitstreams from run to run."""
    for plane in frame.planes:
        if plane.line_size == plane.width:
            continue
        buffer = np.frombuffer(plane, dtype=np.uint8)  # a writable view of the frame's memory
        rows = buffer[: plane.height * plane.line_size].reshape(plane.height, plane.line_size)
        rows[:, plane.width:] = rows[:, plane.width - 1: plane.width]


class VideoWriter:
    """Streams frames into a video file with PyAV (context manager).

    ``write`` takes uint8 ``[H, W, 3]`` RGB arrays or ``av.VideoFrame`` objects of the writer's size; ``gop``
    sets the keyframe interval (None: the encoder's default), ``crf`` the quality for h264/vp9, ``threads``
    the encoder threads (None: the encoder's default; 1 makes the output bit-exact reproducible).
    ``fast_decode`` (h264 only) encodes for decoding speed (x264 ``tune=fastdecode``: CAVLC, no deblocking,
    no weighted prediction): measured here, random 16-frame clips of 170x128 video decode ~25% faster for
    ~6% more bytes. ``b_frames=False`` (h264 only) encodes no B-frames: frames come out of the decoder as
    soon as they are decoded, so a clip that ends at a GOP's end does not wait for (and decode) the next
    keyframe; measured by ``bench/test_decode.py`` on 128-px GOP-16 files: 6.5% more bytes; the rate of
    keyframe-snapped clips was 0.88-1.27x that with B-frames over four runs on a loaded 2-core machine (no
    clear difference); unsnapped clips can be slower (with B-frames PyAV skips those before the start).
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: float | Fraction = 25,
        codec: str = "h264",
        gop: int | None = None,
        crf: int | None = None,
        threads: int | None = None,
        fast_decode: bool = False,
        b_frames: bool = True,
    ) -> None:
        import av

        if codec not in CODECS:
            raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"width and height must be positive and even, got {width}x{height}")
        encoder, pix_fmt, _ = CODECS[codec]
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.width, self.height, self.pix_fmt = int(width), int(height), pix_fmt
        options: dict[str, str] = {}
        if crf is not None and codec in ("h264", "vp9"):
            options["crf"] = str(crf)
        if codec == "vp9":
            options.setdefault("deadline", "realtime")
            options.setdefault("cpu-used", "8")
        self.container = av.open(str(self.path), mode="w")
        self.rate = _rate(fps)
        self.stream = self.container.add_stream(encoder, rate=self.rate)
        self.stream.width = self.width
        self.stream.height = self.height
        self.stream.pix_fmt = pix_fmt
        if gop is not None:
            self.stream.codec_context.gop_size = int(gop)
        if threads is not None:
            self.stream.codec_context.thread_count = int(threads)
        if codec == "h264":
            options.setdefault("preset", "veryfast")
            if fast_decode:
                options["tune"] = "fastdecode"
            params = [] if b_frames else ["bframes=0"]
            if gop is not None:
                params.append(f"keyint={int(gop)}:min-keyint={int(gop)}:scenecut=0")
            if params:
                options["x264-params"] = ":".join(params)
        self.stream.options = options
        self.frames_written = 0

    def write(self, frame) -> None:
        """Encode one frame: uint8 ``[H, W, 3]`` RGB array or ``av.VideoFrame`` (re-timed here)."""
        import av
        from av.video.frame import PictureType

        if isinstance(frame, np.ndarray):
            if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
                raise ValueError(f"frames must be uint8 [{self.height}, {self.width}, 3], "
                                 f"got {frame.dtype} {tuple(frame.shape)}")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if (frame.width, frame.height, frame.format.name) != (self.width, self.height, self.pix_fmt):
            frame = frame.reformat(width=self.width, height=self.height, format=self.pix_fmt)
        _fill_row_padding(frame)
        frame.pict_type = PictureType.NONE  # a decoded frame's I/P type would otherwise force the encoder's
        frame.pts = self.frames_written
        frame.time_base = 1 / self.rate
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self.container is None:
            return
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float | Fraction = 25,
    codec: str = "h264",
    gop: int | None = None,
    crf: int | None = None,
    threads: int | None = None,
    fast_decode: bool = False,
    b_frames: bool = True,
) -> Path:
    """Encode ``frames`` (uint8 ``[T, H, W, 3]`` RGB, H and W even) to ``path`` with PyAV and return the path.

    ``gop``, ``crf``, ``threads``, ``fast_decode``, ``b_frames``: see :class:`VideoWriter`.
    """
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    with VideoWriter(path, width=frames.shape[2], height=frames.shape[1], fps=fps, codec=codec, gop=gop,
                     crf=crf, threads=threads, fast_decode=fast_decode, b_frames=b_frames) as writer:
        for image in frames:
            writer.write(image)
    return writer.path

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


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 25,
    codec: str = "h264",
    gop: int | None = None,
    crf: int | None = None,
) -> Path:
    """Encode ``frames`` (uint8 ``[T, H, W, 3]`` RGB, H and W even) to ``path`` with PyAV and return the path.

    ``gop`` sets the keyframe interval (None: the encoder's default); ``crf`` the quality for h264/vp9.
    """
    import av

    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    encoder, pix_fmt, _ = CODECS[codec]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, str] = {}
    if crf is not None and codec in ("h264", "vp9"):
        options["crf"] = str(crf)
    if codec == "vp9":
        options.setdefault("deadline", "realtime")
        options.setdefault("cpu-used", "8")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(encoder, rate=Fraction(fps))
        stream.width = int(frames.shape[2])
        stream.height = int(frames.shape[1])
        stream.pix_fmt = pix_fmt
        if gop is not None:
            stream.codec_context.gop_size = int(gop)
        if codec == "h264":
            options.setdefault("preset", "veryfast")
            if gop is not None:
                options["x264-params"] = f"keyint={int(gop)}:min-keyint={int(gop)}:scenecut=0"
        stream.options = options
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

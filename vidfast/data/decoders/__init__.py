"""Video decoding backends behind one small interface (``open_video``), one module per backend.

A :class:`Video` exposes ``num_frames``, ``fps``, ``height``, ``width`` and ``get_frames(indices)``, which
returns uint8 ``Tensor[t, H, W, 3]`` (RGB, frames in the requested order, repeats allowed). Each backend
module registers a :class:`DecoderBackend` (its refusal reasons, its ``auto`` priority on the CPU and on a
GPU, and optionally a deferred batch decode); when none can serve an input, :class:`BackendUnavailable` lists
every reason. Adding a backend: a new module here calling ``register(DecoderBackend(...))`` and its import
line below.
"""

from vidfast.data.decoders.base import (
    BACKENDS,
    DecoderBackend,
    Deferred,
    Video,
    backend_priority,
    decode_deferred,
    defers,
    open_video,
    read_frames,
    register,
    select_backend,
)
from vidfast.data.decoders.dali import DaliVideo, dali_decoder, dali_import_error
from vidfast.data.decoders.decord2 import Decord2Video, decord2_import_error
from vidfast.data.decoders.frame_folder import FrameFolderVideo, list_frame_images
from vidfast.data.decoders.pyav import PyAVVideo, open_container, probe_codec, stream_rate
from vidfast.data.decoders.torchcodec import TorchCodecVideo, torchcodec_import_error

__all__ = [
    "BACKENDS", "DecoderBackend", "DaliVideo", "Decord2Video", "Deferred", "FrameFolderVideo", "PyAVVideo",
    "TorchCodecVideo", "Video", "backend_priority", "dali_decoder", "dali_import_error", "decode_deferred",
    "decord2_import_error",
    "defers", "list_frame_images", "open_container", "open_video", "probe_codec", "read_frames", "register",
    "select_backend", "stream_rate", "torchcodec_import_error",
]

"""Datasets, manifests, decoding, sampling and loading.

Manifests (``read_manifest``, ``build_manifest``) describe a dataset on disk; decoders (``open_video``) read
frames; samplers pick frame indices and boxes that ``vidfast.ops.cube_crop`` turns into clips;
``make_loader`` ties them together for training and evaluation, ``load_clips`` for prediction.
"""

from vidfast.data.clips import load_clips
from vidfast.data.dataset import ClipDataset
from vidfast.data.decoders import DaliVideo, FramesVideo, PyAVVideo, Video, open_video, select_backend
from vidfast.data.loader import VideoLoader, make_loader
from vidfast.data.manifest import (
    HEADER,
    SPLITS,
    Manifest,
    ManifestRow,
    build_manifest,
    read_manifest,
    skipped_by_reason,
    summarize,
    write_manifest,
)
from vidfast.data.probe import ProbeResult, probe_path
from vidfast.data.samplers import SpatialConfig, TemporalConfig, sample_box, sample_temporal
from vidfast.data.sources import SOURCES, list_source
from vidfast.data.synth import MOTIONS, synthesize_dataset
from vidfast.data.transcode import transcode_manifest
from vidfast.data.video_io import VideoWriter, write_video

__all__ = [
    "HEADER",
    "MOTIONS",
    "SOURCES",
    "SPLITS",
    "ClipDataset",
    "DaliVideo",
    "FramesVideo",
    "Manifest",
    "ManifestRow",
    "ProbeResult",
    "PyAVVideo",
    "SpatialConfig",
    "TemporalConfig",
    "Video",
    "VideoLoader",
    "VideoWriter",
    "build_manifest",
    "list_source",
    "load_clips",
    "make_loader",
    "open_video",
    "probe_path",
    "read_manifest",
    "sample_box",
    "sample_temporal",
    "select_backend",
    "skipped_by_reason",
    "summarize",
    "synthesize_dataset",
    "transcode_manifest",
    "write_manifest",
    "write_video",
]

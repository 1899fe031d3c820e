"""Datasets, manifests, decoding, sampling and loading.

Manifests (``read_manifest``, ``build_manifest``) describe a dataset on disk (a CSV plus a memory-mapped
columns sidecar, :mod:`vidfast.data.columns`); decoders (``open_video``) read
frames; clip policies (``vidfast.data.policies``) plan frame indices and boxes that ``vidfast.ops.cube_crop``
turns into clips; ``read_clips`` reads one video through policies (evaluation, prediction, ``load_clips``)
and ``make_loader`` batches a manifest through one (training, validation).
"""

from vidfast.data.batch import Batch, Skip
from vidfast.data.dataset import ClipDataset
from vidfast.data.decoders import (
    DaliVideo,
    Decord2Video,
    FrameFolderVideo,
    PyAVVideo,
    TorchCodecVideo,
    Video,
    open_video,
    select_backend,
)
from vidfast.data.loader import LoaderConfig, VideoLoader, make_loader
from vidfast.data.manifest import (
    HEADER,
    SPLITS,
    Manifest,
    ManifestColumns,
    ManifestRow,
    build_manifest,
    read_manifest,
    skipped_by_reason,
    summarize,
    write_manifest,
)
from vidfast.data.policies import (
    ClipOutput,
    ClipPolicy,
    ClipSampling,
    CubicPuzzle,
    clip_policy,
    create_policy,
    register_policy,
    sliding_windows,
    training_clips,
    uniform_clips,
)
from vidfast.data.probe import ProbeResult, probe_path
from vidfast.data.reader import Segment, load_clips, read_clips
from vidfast.data.samplers import SpatialConfig, TemporalConfig, sample_box
from vidfast.data.sources import SOURCES, list_source
from vidfast.data.synth import MOTIONS, synthesize_dataset
from vidfast.data.transcode import transcode_manifest
from vidfast.data.video_io import VideoWriter, write_video

__all__ = [
    "HEADER",
    "MOTIONS",
    "SOURCES",
    "SPLITS",
    "Batch",
    "ClipDataset",
    "ClipOutput",
    "ClipPolicy",
    "ClipSampling",
    "CubicPuzzle",
    "DaliVideo",
    "Decord2Video",
    "FrameFolderVideo",
    "Manifest",
    "ManifestColumns",
    "ManifestRow",
    "LoaderConfig",
    "ProbeResult",
    "PyAVVideo",
    "Segment",
    "Skip",
    "SpatialConfig",
    "TemporalConfig",
    "TorchCodecVideo",
    "Video",
    "VideoLoader",
    "VideoWriter",
    "build_manifest",
    "clip_policy",
    "create_policy",
    "list_source",
    "load_clips",
    "make_loader",
    "open_video",
    "probe_path",
    "read_clips",
    "read_manifest",
    "register_policy",
    "sample_box",
    "select_backend",
    "skipped_by_reason",
    "sliding_windows",
    "summarize",
    "synthesize_dataset",
    "training_clips",
    "transcode_manifest",
    "uniform_clips",
    "write_manifest",
    "write_video",
]

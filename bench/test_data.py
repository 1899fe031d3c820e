"""Data pipeline benchmark: decode frames/s and loader clips/s for 16x112x112 training clips.

Inputs: 96-frame 320x240 videos (H.264 as encoded by default, H.264 and VP9 with a keyframe every 16 frames,
as ``vidfast data transcode --gop 16`` writes them) and the same videos as JPEG frame folders, at 320x240 and
at the transcoded videos' 128 px. Loaders: 2 workers, batch 8, multi-scale corner crop + flip, normalised
float output.

- ``naive``: decode the whole video with PyAV, then crop/resize in NumPy;
- ``jpeg``: the CVPR 2018 code's way, pre-extracted JPEG frames read one by one with PIL, PIL crop/resize;
  ``jpeg-s128``: the same from frames at the short side of 128 that ``*_s128_*`` videos have (like for like
  with them: same pixels per clip, same crops);
- ``vidfast-*``: ``make_loader`` (keyframe seek, only the needed frames, ``cube_crop``), per backend/codec;
  ``snap-16``: clip starts snapped to keyframes (``keyframe_snap=16``); ``auto``: the decoder measured
  fastest on this machine.

Run: ``.venv/bin/python -m pytest bench/test_data.py -q -s`` (the decode rates come from pytest-benchmark's
timings, so not with ``--benchmark-disable``). Ratios are printed at the end and written to
``bench/results/data.json``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidfast.conventions import KINETICS_MEAN, KINETICS_STD
from vidfast.data.decoders import dali_import_error, open_video
from vidfast.data.loader import LoaderConfig, make_loader
from vidfast.data.manifest import ManifestRow, read_manifest, write_manifest
from vidfast.data.policies import training_clips
from vidfast.data.samplers import SpatialConfig, sample_box
from vidfast.data.synth import MOTIONS, render_motion_video
from vidfast.data.transcode import output_size, transcode_manifest
from vidfast.data.video_io import write_video

FRAMES, HEIGHT, WIDTH = 96, 240, 320
CLIP, SIZE, BATCH, WORKERS = 16, 112, 8, 2
#: frame size of the ``*_s128_*`` videos and of the ``jpeg_s128`` frames: (width, height)
S128 = output_size(WIDTH, HEIGHT, 128)
VIDEOS = int(os.environ.get("VIDFAST_BENCH_VIDEOS", "16"))
EPOCHS = int(os.environ.get("VIDFAST_BENCH_EPOCHS", "3"))
VARIANTS = {
    "h264": ("h264", None, ".mp4"),
    "h264_gop16": ("h264", 16, ".mp4"),
    "vp9_gop16": ("vp9", 16, ".webm"),
}
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per variant a manifest of ``VIDEOS`` videos, plus ``jpeg`` and ``jpeg_s128``: list files of frame
    folders at 320x240 and at a short side of 128. Variants: 320x240 H.264 as encoded by default (one
    keyframe), H.264 and VP9 with ``gop=16``, and both transcoded by ``transcode_manifest`` to a short side of
    128 with ``gop=16``."""
    root = tmp_path_factory.mktemp("bench_data")
    rows: dict[str, list[ManifestRow]] = {name: [] for name in VARIANTS}
    folders: dict[str, list[Path]] = {"jpeg": [], "jpeg_s128": []}
    for i in range(VIDEOS):
        frames = render_motion_video(
            MOTIONS[i % len(MOTIONS)], FRAMES, (HEIGHT, WIDTH), np.random.default_rng(i)
        )
        for name, (codec, gop, suffix) in VARIANTS.items():
            path = write_video(root / name / f"v{i:03d}{suffix}", frames, codec=codec, gop=gop, crf=23)
            rows[name].append(
                ManifestRow(
                    str(path),
                    i % len(MOTIONS),
                    MOTIONS[i % len(MOTIONS)].name,
                    "train",
                    None,
                    None,
                    FRAMES,
                    25.0,
                    WIDTH,
                    HEIGHT,
                    "ok",
                    "",
                )
            )
        for name, size in (("jpeg", (WIDTH, HEIGHT)), ("jpeg_s128", S128)):
            folder = root / name / f"v{i:03d}"
            folder.mkdir(parents=True)
            for t, frame in enumerate(frames):
                image = Image.fromarray(frame)
                if image.size != size:
                    image = image.resize(size, Image.BILINEAR)
                image.save(folder / f"image_{t + 1:05d}.jpg", quality=90)
            folders[name].append(folder)
    out = {name: write_manifest(root / f"{name}.csv", r) for name, r in rows.items()}
    for codec in ("h264", "vp9"):  # the recommended fast path: ``vidfast data transcode --short-side 128``
        name = f"{codec}_s128_gop16"
        transcode_manifest(out["h264"], root / name, short_side=128, gop=16, codec=codec, progress=False)
        out[name] = root / name / "manifest.csv"
    for name, paths in folders.items():
        out[name] = root / f"{name}.txt"
        out[name].write_text("\n".join(map(str, paths)))
    return out


# ------------------------------------------------------------------------------------------ baselines


class _BaselineDataset(torch.utils.data.Dataset):
    """Random 16-frame clip, multi-scale corner crop, flip, resize to 112, normalise: the training
    transform."""

    def __init__(self, paths: list[str], load: Callable[[str, np.random.Generator], tuple[list, int, int]]):
        self.paths, self.load = paths, load
        self.mean = torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1)
        self.std = torch.tensor(KINETICS_STD).view(3, 1, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng(i)
        clip = torch.from_numpy(np.stack(self.load(self.paths[i], rng)))  # [t, S, S, 3] uint8
        return (clip.permute(3, 0, 1, 2).float() / 255 - self.mean) / self.std


def _naive_load(path: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Decode every frame with PyAV, then crop and resize (nearest) in NumPy."""
    with av.open(path) as container:
        video = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    start = rng.integers(0, len(video) - CLIP + 1)
    (y, x, h, w), flip = sample_box(HEIGHT, WIDTH, SpatialConfig(), rng)
    rows = y + (np.arange(SIZE) * h) // SIZE
    cols = x + (np.arange(SIZE) * w) // SIZE
    cols = cols[::-1] if flip else cols
    return list(video[start : start + CLIP][:, rows][:, :, cols])


def _jpeg_load(folder: str, rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH
               ) -> list[np.ndarray]:
    """The CVPR 2018 code's path: open image_XXXXX.jpg one by one with PIL, crop, resize, flip (frames of
    ``height`` x ``width``)."""
    start = rng.integers(0, FRAMES - CLIP + 1)
    (y, x, h, w), flip = sample_box(height, width, SpatialConfig(), rng)
    out = []
    for t in range(start, start + CLIP):
        with Image.open(os.path.join(folder, f"image_{t + 1:05d}.jpg")) as image:
            crop = image.convert("RGB").crop((x, y, x + w, y + h)).resize((SIZE, SIZE), Image.BILINEAR)
        out.append(np.asarray(crop.transpose(Image.FLIP_LEFT_RIGHT) if flip else crop))
    return out


def _baseline_loader(paths: list[str], load) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        _BaselineDataset(paths, load),
        batch_size=BATCH,
        shuffle=True,
        num_workers=WORKERS,
        persistent_workers=True,
    )


def _epoch_clips(loader: Iterable) -> int:
    return sum(len(b) for b in loader)


def _interleaved_clips_per_second(loaders: dict[str, Iterable]) -> dict[str, float]:
    """Clips/s of every loader over ``EPOCHS`` epochs after one warm-up epoch (worker start-up excluded).
    Epochs run round-robin over the loaders, so that load from other processes hits all of them alike."""
    clips = dict.fromkeys(loaders, 0)
    elapsed = dict.fromkeys(loaders, 0.0)
    for epoch in range(EPOCHS + 1):
        for name, loader in loaders.items():
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            start = time.perf_counter()
            n = _epoch_clips(loader)
            if epoch:
                clips[name] += n
                elapsed[name] += time.perf_counter() - start
    return {name: clips[name] / elapsed[name] for name in loaders}


def _paths(manifest: Path) -> list[str]:
    return [row.path for row in read_manifest(manifest).select()]


def _record(benchmark, name: str, value: float, unit: str) -> None:
    RESULTS[name] = value
    benchmark.extra_info[unit] = value
    print(f"\n{name}: {value:.1f} {unit}")


# ------------------------------------------------------------------------------------------ decode


@pytest.mark.parametrize("variant", ["h264", "h264_gop16", "vp9_gop16", "h264_s128_gop16"])
def test_decode_full_video(benchmark, dataset, variant: str) -> None:
    """Frames/s of decoding a whole video to RGB with PyAV, one thread (the naive baseline's decode)."""
    path = _paths(dataset[variant])[0]

    def run() -> int:
        with av.open(path) as container:
            return sum(1 for f in container.decode(video=0) if f.to_ndarray(format="rgb24") is not None)

    frames = benchmark.pedantic(run, rounds=3, iterations=1)
    _record(benchmark, f"decode_full/{variant}", frames / benchmark.stats.stats.min, "frames/s")


@pytest.mark.parametrize(
    "backend,variant",
    [
        ("pyav", "h264"),
        ("pyav", "h264_gop16"),
        ("pyav", "vp9_gop16"),
        ("pyav", "h264_s128_gop16"),
        ("pyav", "vp9_s128_gop16"),
        ("dali", "vp9_gop16"),
        ("dali", "vp9_s128_gop16"),
    ],
)
def test_decode_random_clips(benchmark, dataset, backend: str, variant: str) -> None:
    """Returned frames/s of ``get_frames`` for random 16-frame clips (open, seek, decode, close)."""
    if backend == "dali" and dali_import_error():
        pytest.skip(dali_import_error())
    paths = _paths(dataset[variant])
    rng = np.random.default_rng(0)

    def run() -> int:
        for path in paths:
            start = int(rng.integers(0, FRAMES - CLIP + 1))
            with open_video(path, backend=backend) as video:
                video.get_frames(range(start, start + CLIP))
        return len(paths) * CLIP

    frames = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=1)
    _record(benchmark, f"decode_clips/{backend}/{variant}", frames / benchmark.stats.stats.min, "frames/s")


# ------------------------------------------------------------------------------------------ loaders


#: vidfast loaders: (backend, variant, crop_in, keyframe_snap)
VIDFAST_LOADERS = [
    ("pyav", "h264", "worker", 0),
    ("pyav", "h264_gop16", "worker", 0),
    ("pyav", "h264_gop16", "main", 0),
    ("pyav", "vp9_gop16", "worker", 0),
    ("pyav", "h264_s128_gop16", "worker", 0),
    ("pyav", "h264_s128_gop16", "main", 0),
    ("pyav", "h264_s128_gop16", "worker", 16),
    ("auto", "h264_s128_gop16", "worker", 16),
    ("pyav", "vp9_s128_gop16", "worker", 0),
    ("dali", "vp9_s128_gop16", "worker", 0),
]


def test_loaders_side_by_side(benchmark, dataset) -> None:
    """End-to-end clips/s: the two baselines and every vidfast loader, measured interleaved."""
    loaders: dict[str, Iterable] = {
        "loader/naive": _baseline_loader(_paths(dataset["h264"]), _naive_load),
        "loader/jpeg": _baseline_loader(dataset["jpeg"].read_text().split("\n"), _jpeg_load),
        "loader/jpeg-s128": _baseline_loader(dataset["jpeg_s128"].read_text().split("\n"),
                                             functools.partial(_jpeg_load, height=S128[1], width=S128[0])),
    }
    for backend, variant, crop_in, snap in VIDFAST_LOADERS:
        if backend == "dali" and dali_import_error():
            continue
        name = f"loader/vidfast-{backend}/{variant}/crop-in-{crop_in}" + (f"/snap-{snap}" if snap else "")
        loaders[name] = make_loader(
            dataset[variant], training_clips(CLIP, size=SIZE, keyframe_snap=snap),
            LoaderConfig(backend=backend, batch_size=BATCH, workers=WORKERS, crop_in=crop_in),
        )
    if torch.cuda.is_available() and not dali_import_error():
        loaders["loader/vidfast-dali-gpu/h264_s128_gop16"] = make_loader(
            dataset["h264_s128_gop16"], training_clips(CLIP, size=SIZE),
            LoaderConfig(backend="dali", batch_size=BATCH, workers=WORKERS, device="cuda"),
        )
    for name, value in benchmark.pedantic(_interleaved_clips_per_second, (loaders,), rounds=1).items():
        _record(benchmark, name, value, "clips/s")


def test_report() -> None:
    """Ratios against the baselines (needs the loader benchmarks above in the same run)."""
    if not {"loader/naive", "loader/jpeg", "loader/jpeg-s128"} <= set(RESULTS):
        pytest.skip("run the whole file")
    ratios = {
        name: {
            "clips/s": value,
            "vs_naive": value / RESULTS["loader/naive"],
            "vs_jpeg": value / RESULTS["loader/jpeg"],
            "vs_jpeg_s128": value / RESULTS["loader/jpeg-s128"],
        }
        for name, value in RESULTS.items()
        if name.startswith("loader/")
    }
    report = {
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "cpu_cores": os.cpu_count(),
        "videos": VIDEOS,
        "epochs": EPOCHS,
        "results": RESULTS,
        "loader_ratios": ratios,
    }
    out = Path(__file__).parent / "results" / "data.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(
        "\n"
        + "\n".join(
            f"{k:55s} {v['clips/s']:7.1f} clips/s  x{v['vs_naive']:.2f} naive  x{v['vs_jpeg']:.2f} jpeg  "
            f"x{v['vs_jpeg_s128']:.2f} jpeg-s128"
            for k, v in ratios.items()
        )
    )

"""Helpers shared by several test modules: tiny checkpoints, datasets and videos written at test time, and
the CLI run in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidfast.data.video_io import write_video

CLIP = {"clip_len": 8, "size": 32, "frame_step": 1, "mean": [0.4345, 0.4051, 0.3775],
        "std": [0.2768, 0.2713, 0.2737]}


def make_checkpoint(path, class_names, seed=0, arch="resnet10", task="classify", **overrides):
    """A vidfast classifier checkpoint of a tiny randomly initialised model (what ``fit`` writes)."""
    from vidfast.models import create_model

    torch.manual_seed(seed)
    model = create_model(arch, num_classes=len(class_names), widen_factor=0.25)
    checkpoint = {"arch": arch, "model_kwargs": {"widen_factor": 0.25}, "task": task,
                  "num_classes": len(class_names), "class_names": list(class_names),
                  "state_dict": model.state_dict(), "data": dict(CLIP), **overrides}
    torch.save(checkpoint, path)
    return path


def make_dataset(root, classes=3, per_class=2, split="test"):
    """Synthetic motion videos (16 frames, 32x32) and a manifest listing them all in ``split``."""
    from vidfast.data import write_manifest
    from vidfast.data.manifest import ManifestRow
    from vidfast.data.synth import synthesize_dataset

    paths = synthesize_dataset(root / "videos", classes=classes, per_class=per_class, frames=16,
                               size=(32, 32))
    names = sorted({p.parent.name for p in paths})
    rows = [ManifestRow(str(p), names.index(p.parent.name), p.parent.name, split, None, None, 16, 25.0,
                        32, 32, "ok", "") for p in paths]
    write_manifest(root / "manifest.csv", rows)
    return root / "manifest.csv", names, paths


def run_cli(*args):
    """``vidfast ARGS`` in-process; returns typer's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner
    from vidfast_cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def write_bar_videos(
    root: Path, per_class: int = 24, frames: int = 16, size: int = 32, seed: int = 0
) -> None:
    """ROOT/left|right/*.mp4: a 6-pixel bright bar moving 2-3 px/frame left or right (wrapping around)."""
    rng = np.random.default_rng(seed)
    for label, direction in (("left", -1), ("right", 1)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            x0, speed = rng.integers(0, size), rng.integers(2, 4)
            video = np.empty((frames, size, size, 3), np.uint8)
            video[:] = rng.integers(0, 100, size=3)
            color = rng.integers(150, 256, size=3)
            for t in range(frames):
                video[t, :, (np.arange(6) + x0 + direction * speed * t) % size] = color
            write_video(root / label / f"{label}_{i:03d}.mp4", video)

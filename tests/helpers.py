"""Helpers shared by several test modules: tiny checkpoints, datasets and videos written at test time, and
the CLI run in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import strategies as st

from vidfast.data.video_io import write_video
from vidfast.ops import OUT_DTYPES

# "cpu", and "cuda" marked `cuda` and skipped without a GPU: the devices the op tests run on.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[
        pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ]),
]
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


@dataclass(frozen=True)
class CliResult:
    """What a ``vidfast`` command run in a fresh interpreter left: ``exit_code``, ``stdout``, ``stderr``."""

    exit_code: int
    stdout: str
    stderr: str


def run_cli_fresh(*args, threads: int = 1) -> CliResult:
    """``vidfast ARGS`` in a fresh interpreter (``threads`` intra-op threads), as a user runs it: for long
    jobs that should not inherit the state hundreds of earlier tests left in the test process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "vidfast_cli.app", *map(str, args)], capture_output=True,
                          text=True, env=env)
    return CliResult(done.returncode, done.stdout, done.stderr)


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


def cube_crop_case(seed: int, n: int = 2, p: int = 3, t: int = 3, size: tuple[int, int] = (6, 6),
                   frames: int = 7, hw: tuple[int, int] = (13, 17), copy: bool | None = None,
                   ragged: bool = False) -> dict:
    """Random cube_crop arguments; ``copy`` True/False forces every box to the output size / a resize."""
    g = torch.Generator().manual_seed(seed)
    oh, ow = size
    randint = lambda lo, hi, shape=(): torch.randint(lo, hi + 1, shape, generator=g)  # noqa: E731
    if ragged:
        shapes = [(int(randint(1, frames)), int(randint(max(oh, 2), hw[0])), int(randint(max(ow, 2), hw[1])))
                  for _ in range(n)]
        video = [torch.randint(0, 256, (*s, 3), dtype=torch.uint8, generator=g) for s in shapes]
    else:
        shapes = [(frames, *hw)] * n
        video = torch.randint(0, 256, (n, frames, *hw, 3), dtype=torch.uint8, generator=g)
    frame_idx = torch.stack([randint(0, s[0] - 1, (p, t)) for s in shapes])
    boxes = []
    for s in shapes:
        for _ in range(p):
            resize = bool(randint(0, 1)) if copy is None else not copy
            h, w = (int(randint(1, s[1])), int(randint(1, s[2]))) if resize else (oh, ow)
            boxes.append([int(randint(0, s[1] - h)), int(randint(0, s[2] - w)), h, w])
    square = oh == ow
    return {
        "video": video,
        "frame_idx": frame_idx,
        "boxes": torch.tensor(boxes).view(n, p, 4),
        "out_size": (t, oh, ow),
        "perm": torch.stack([torch.randperm(p, generator=g) for _ in range(n)]),
        "flip": randint(0, 1, (n, p)).bool(),
        "rot": randint(0, 3, (n, p)) if square else 2 * randint(0, 1, (n, p)),
        "channel": randint(-1, 2, (n, p)),
    }


def cube_crop_draws(max_size: int) -> dict:
    """Hypothesis strategies of random cube_crop tests, by argument: seed, n, p, t, oh, ow (sides up to
    ``max_size``), copy and ragged of ``cube_crop_case``, then dtype and channels_last."""
    return {
        "seed": st.integers(0, 2**16),
        "n": st.integers(1, 3),
        "p": st.integers(1, 4),
        "t": st.integers(1, 4),
        "oh": st.integers(1, max_size),
        "ow": st.integers(1, max_size),
        "copy": st.sampled_from([None, True, False]),
        "ragged": st.booleans(),
        "dtype": st.sampled_from(OUT_DTYPES),
        "channels_last": st.booleans(),
    }


def cube_crop_on(args: dict, device: str) -> dict:
    """``args`` with the video (batch or ragged list) moved to ``device``; index tensors stay on the CPU."""
    moved = dict(args)
    video = args["video"]
    moved["video"] = [v.to(device) for v in video] if isinstance(video, list) else video.to(device)
    return moved


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, theirs, ...), read from ``/proc``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found.update(below)
        todo += below
    return found


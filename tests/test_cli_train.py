"""``vidfast pretrain|train|finetune`` end to end on tiny videos; every bad input ends in one error line."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import pytest
import torch
from helpers import write_bar_videos
from typer.testing import CliRunner
from vidfast_cli.app import app

from vidfast.data.manifest import build_manifest
from vidfast.engine.checkpoint import atomic_save

runner = CliRunner()
TINY = ["--arch", "resnet18", "--widen-factor", "0.25", "--workers", "0", "--epochs", "1"]
CLASSIFY = [*TINY, "--clip-len", "8", "--size", "32", "--batch-size", "8"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bars_cli")
    write_bar_videos(root / "videos", per_class=12)
    build_manifest("folder", root / "videos", root / "manifest.csv", val_fraction=0.25, progress=False)
    return root / "manifest.csv"


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def _one_error_line(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]


@pytest.mark.slow
def test_pretrain_then_finetune(manifest, tmp_path):
    puzzle_cfg = tmp_path / "puzzle.yaml"
    puzzle_cfg.write_text(
        "puzzle:\n  sampler: {frame_size: 32, cell_size: 16, cube_size: 12}\nruntime:\n  tensorboard: false\n"
    )
    pre = tmp_path / "pre"
    out = _ok(
        [
            "pretrain",
            str(manifest),
            *TINY,
            "--clip-len",
            "4",
            "--size",
            "16",
            "--batch-size",
            "4",
            "--lr",
            "0.01",
            "--run-dir",
            str(pre),
            "--config",
            str(puzzle_cfg),
        ]
    )
    assert "puzzle accuracy" in out
    puzzle = torch.load(pre / "best.pt", weights_only=True)
    assert (puzzle["task"], puzzle["arch"], puzzle["class_names"]) == ("puzzle", "resnet18", [])
    assert puzzle["puzzle"] == {"num_pieces": 4, "num_perm_classes": 48, "rotation_classes": 4}
    assert "backbone.conv1.weight" in puzzle["state_dict"] and "perm_head.fc1.weight" in puzzle["state_dict"]
    saved_cfg = (pre / "config.yaml").read_text()
    assert "cube_size: 12" in saved_cfg and "task: puzzle" in saved_cfg

    ft = tmp_path / "ft"
    _ok(
        [
            "finetune",
            str(manifest),
            "--from",
            str(pre / "best.pt"),
            "--ft-begin-module",
            "layer3",
            *CLASSIFY,
            "--run-dir",
            str(ft),
            "--no-amp",
            "--optimizer",
            "sgd",
            "--lr",
            "0.01",
        ]
    )
    tuned = torch.load(ft / "last.pt", weights_only=True)
    assert (tuned["task"], tuned["num_classes"], tuned["class_names"]) == ("classify", 2, ["left", "right"])
    assert tuned["model_kwargs"] == puzzle["model_kwargs"] == {"widen_factor": 0.25}
    before, after = puzzle["state_dict"], tuned["state_dict"]
    assert torch.equal(after["conv1.weight"], before["backbone.conv1.weight"])  # loaded and frozen
    assert torch.equal(after["layer2.1.conv2.weight"], before["backbone.layer2.1.conv2.weight"])
    assert not torch.equal(
        after["layer4.1.conv2.weight"], before["backbone.layer4.1.conv2.weight"]
    )  # trained


def _rewrite(src: Path, dst: Path, change) -> Path:
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        change(i, row)
        row["path"] = str((src.parent / row["path"]).resolve())
    with open(dst, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dst


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_bad_inputs_exit_1_with_one_line(manifest, tmp_path):
    run = ["--run-dir", str(tmp_path / "run")]
    _one_error_line(["train", str(tmp_path / "missing.csv"), *CLASSIFY, *run], "missing.csv")
    _one_error_line(["train", str(manifest), *CLASSIFY, "--arch", "resnet19", *run], "resnet19")

    empty = tmp_path / "empty.csv"
    empty.write_text(manifest.read_text().splitlines()[0] + "\n")
    _one_error_line(["train", str(empty), *CLASSIFY, *run], "train")
    only_val = _rewrite(manifest, tmp_path / "only_val.csv", lambda i, row: row.update(split="val"))
    _one_error_line(["train", str(only_val), *CLASSIFY, *run], "no ok row in split 'train'")

    if not torch.cuda.is_available():
        _one_error_line(["train", str(manifest), *CLASSIFY, "--device", "cuda", *run], "no CUDA GPU")

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    _one_error_line(["finetune", str(manifest), "--from", str(corrupt), *CLASSIFY, *run], "corrupt.pt")
    _one_error_line(
        ["finetune", str(manifest), "--from", str(tmp_path / "nope.pt"), *CLASSIFY, *run], "nope.pt"
    )
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state_dict": _Evil(marker)}))
    _one_error_line(["finetune", str(manifest), "--from", str(evil), *CLASSIFY, *run], "evil.pt")
    assert not marker.exists()

    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("optim:\n  lrr: 0.1\n")
    _one_error_line(["train", str(manifest), *CLASSIFY, "--config", str(bad_cfg), *run], "optim.lrr")

    # resuming a 2-class run on a manifest with 3 classes
    atomic_save({"task": "classify", "arch": "resnet18", "num_classes": 2}, tmp_path / "run" / "last.pt")
    three = _rewrite(
        manifest,
        tmp_path / "three.csv",
        lambda i, row: row.update(label="2", label_name="up") if i % 3 == 0 else None,
    )
    _one_error_line(["train", str(three), *CLASSIFY, "--resume", *run], "num_classes 2 but this run has 3")
    _one_error_line(
        ["train", str(manifest), *CLASSIFY, "--resume", "--run-dir", str(tmp_path / "new")], "no checkpoint"
    )


def test_help_lists_every_shared_option():
    result = runner.invoke(app, ["finetune", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--arch",
        "--widen-factor",
        "--clip-len",
        "--size",
        "--frame-step",
        "--batch-size",
        "--epochs",
        "--lr",
        "--optimizer",
        "--workers",
        "--device",
        "--amp",
        "--channels-last",
        "--compile",
        "--seed",
        "--run-dir",
        "--config",
        "--from",
        "--ft-begin-module",
        "--resume",
        "--auto-resume",
        "--checkpoint-every",
        "--keep-checkpoints",
        "--checkpoint-failures",
        "--preempt-signal",
    ):
        assert option in result.stdout, option

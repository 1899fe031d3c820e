"""Every input error a user can cause in eval/predict ends with one ``error:`` line and exit code 1."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import make_checkpoint, make_dataset, run_cli


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    manifest, names, paths = make_dataset(root, classes=2, per_class=1)
    return {"root": root, "manifest": manifest, "names": names, "video": paths[0],
            "ckpt": make_checkpoint(root / "ok.pt", names)}


def assert_one_error_line(result, *fragments):
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def eval_args(setup, manifest=None, ckpt=None):
    return ("eval", manifest or setup["manifest"], "-c", ckpt or setup["ckpt"], "--workers", 0, "--clips", 1,
            "--run-dir", setup["root"] / "run")


class _Payload:
    """Unpickling this would create a file: what a malicious checkpoint could do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_missing_manifest(setup):
    assert_one_error_line(run_cli(*eval_args(setup, manifest=setup["root"] / "nope.csv")), "nope.csv")


def test_missing_checkpoint(setup):
    assert_one_error_line(run_cli(*eval_args(setup, ckpt=setup["root"] / "nope.pt")), "nope.pt")
    assert_one_error_line(run_cli("predict", setup["video"], "-c", setup["root"] / "nope.pt"), "nope.pt")


def test_unknown_arch_in_checkpoint(setup):
    ckpt = make_checkpoint(setup["root"] / "arch.pt", setup["names"])
    data = torch.load(ckpt, weights_only=True)
    torch.save({**data, "arch": "resnet999"}, ckpt)
    assert_one_error_line(run_cli(*eval_args(setup, ckpt=ckpt)), "resnet999")


def test_empty_manifest(setup):
    empty = setup["root"] / "empty.csv"
    empty.write_text(setup["manifest"].read_text().splitlines()[0] + "\n")
    assert_one_error_line(run_cli(*eval_args(setup, manifest=empty)))


def test_no_ok_row_for_the_split(setup):
    assert_one_error_line(run_cli(*eval_args(setup), "--split", "val"), "'val'")
    bad = setup["root"] / "bad.csv"
    lines = setup["manifest"].read_text().splitlines()
    rows = [line.replace(",ok,", ",bad,decode: broken") for line in lines[1:]]
    bad.write_text("\n".join([lines[0], *rows]))
    assert_one_error_line(run_cli(*eval_args(setup, manifest=bad)), "'test'")


def test_class_count_mismatch(setup):
    ckpt = make_checkpoint(setup["root"] / "three.pt", ["a", "b", "c"])
    assert_one_error_line(run_cli(*eval_args(setup, ckpt=ckpt)), "class")


def test_puzzle_checkpoint_is_not_a_classifier(setup):
    ckpt = make_checkpoint(setup["root"] / "puzzle.pt", setup["names"], task="puzzle")
    assert_one_error_line(run_cli(*eval_args(setup, ckpt=ckpt)), "puzzle")


def test_corrupt_checkpoint(setup):
    corrupt = setup["root"] / "corrupt.pt"
    corrupt.write_bytes(setup["ckpt"].read_bytes()[:5000])
    assert_one_error_line(run_cli(*eval_args(setup, ckpt=corrupt)), "corrupt.pt")


def test_malicious_checkpoint_is_refused_without_running_it(setup):
    marker = setup["root"] / "pwned"
    evil = setup["root"] / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": _Payload(str(marker))}, f, protocol=2)
    assert_one_error_line(run_cli(*eval_args(setup, ckpt=evil)), "evil.pt")
    assert_one_error_line(run_cli("predict", setup["video"], "-c", evil), "evil.pt")
    assert not marker.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_device_cuda_without_gpu(setup):
    assert_one_error_line(run_cli(*eval_args(setup), "--device", "cuda"), "cuda")
    assert_one_error_line(run_cli("predict", setup["video"], "-c", setup["ckpt"], "--device", "cuda"), "cuda")


def test_undecodable_video_to_predict(setup):
    garbage = setup["root"] / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    assert_one_error_line(run_cli("predict", garbage, "-c", setup["ckpt"]), "garbage.mp4")
    missing = setup["root"] / "missing.mp4"
    assert_one_error_line(run_cli("predict", missing, "-c", setup["ckpt"]), "missing.mp4")


def test_predict_needs_exactly_one_model_source(setup):
    assert_one_error_line(run_cli("predict", setup["video"]), "--checkpoint")
    assert_one_error_line(run_cli("predict", setup["video"], "-c", setup["ckpt"], "--onnx", setup["ckpt"]),
                          "--onnx")


def test_console_script_prints_one_line_without_traceback(setup):
    """The installed ``vidfast`` entry point (a real process, not the in-process runner)."""
    script = Path(sys.executable).with_name("vidfast")
    done = subprocess.run([str(script), *map(str, eval_args(setup, ckpt="nope.pt"))], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and done.stderr.startswith("error: ")

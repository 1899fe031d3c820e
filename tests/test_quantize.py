"""int8 export calibrated on a manifest, OpenVINO behind the session interface and the measured runtime
choice, and ``vidfast eval --onnx`` with the same report as ``--checkpoint``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import make_checkpoint, make_dataset, run_cli

from vidfast.data import read_manifest
from vidfast.data.reader import load_clips
from vidfast.deploy import OnnxClassifier, read_metadata
from vidfast.deploy.openvino import openvino_available
from vidfast.export import export_onnx
from vidfast.export.quantize import CANDIDATES, MIN_AGREEMENT
from vidfast.models import load_checkpoint, read_checkpoint

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="the openvino runtime is not installed")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("int8")
    manifest, names, paths = make_dataset(root, classes=3, per_class=4, split="train")
    ckpt = _with_a_decisive_head(make_checkpoint(root / "c.pt", names), manifest)
    fp32 = export_onnx(ckpt, root / "fp32.onnx", with_preprocess=True).path
    return {"root": root, "manifest": manifest, "names": names, "paths": paths, "ckpt": ckpt, "fp32": fp32}


def _with_a_decisive_head(ckpt: Path, manifest: Path) -> Path:
    """``ckpt`` with its classifier refitted (ridge regression to +-1 class targets) on the features of the
    clips that calibration takes, one per video: top-1 by a margin of about 2, as a trained model has it. The
    random head's logits lay within 0.003 of each other on some clips, which int8 moved by up to 0.01: top-1
    flipped, and an export failed now and then with "no int8 layout keeps top-1"."""
    checkpoint = read_checkpoint(ckpt)
    model = load_checkpoint(None, checkpoint)
    rows = read_manifest(manifest).select(split="train")
    data = checkpoint["data"]
    clips = torch.cat([load_clips(row.path, clip_len=data["clip_len"], frame_step=data["frame_step"],
                                  size=data["size"], clips=1, mean=data["mean"], std=data["std"])
                       for row in rows])
    with torch.no_grad():
        features = model.eval().forward_features(clips)
    inputs = torch.cat([features, torch.ones(len(features), 1)], 1)
    targets = torch.nn.functional.one_hot(torch.tensor([row.label for row in rows])).float() * 2 - 1
    ridge = 1e-3 * inputs.pow(2).sum() / len(inputs) * torch.eye(inputs.shape[1])
    solution = torch.linalg.solve(inputs.T @ inputs + ridge, inputs.T @ targets)
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.copy_(solution[:-1].T)
        head.bias.copy_(solution[-1])
    torch.save({**checkpoint, "state_dict": model.state_dict()}, ckpt)
    return ckpt


@pytest.fixture(scope="module")
def int8_export(files: dict):
    return export_onnx(files["ckpt"], files["root"] / "int8.onnx", with_preprocess=True, int8=True,
                       calibrate=files["manifest"], calibration_count=12)


def test_int8_export_measures_every_candidate_and_keeps_an_eligible_one(int8_export) -> None:
    report = int8_export.quantization
    assert report is not None and (report.calibration_clips, report.held_out_clips) == (9, 3)
    assert [t.candidate for t in report.trials] == [c.name for c in CANDIDATES]
    chosen = next(t for t in report.trials if t.candidate == report.chosen)
    assert not chosen.error and chosen.agreement >= MIN_AGREEMENT
    eligible = [t for t in report.trials if not t.error and t.agreement >= MIN_AGREEMENT]
    assert chosen.best[1] == min(t.best[1] for t in eligible) and report.runtime == chosen.best[0]
    meta = read_metadata(int8_export.path)
    assert meta.precision == "int8" and meta.any_frame_size
    props = {p.key: p.value for p in onnx.load(str(int8_export.path)).metadata_props}
    assert json.loads(props["vidfast.int8"])["chosen"] == report.chosen
    ops = {n.op_type for n in onnx.load(str(int8_export.path)).graph.node}
    assert ops & {"QuantizeLinear", "QLinearConv"}  # quantised, and the preprocessing graph still in front
    assert "Resize" in ops


def test_int8_scores_stay_close_to_fp32(files: dict, int8_export) -> None:
    fp32, int8 = OnnxClassifier(files["fp32"]), OnnxClassifier(int8_export.path)
    for path in files["paths"][:3]:
        np.testing.assert_allclose(int8.predict_video(path, clips=2), fp32.predict_video(path, clips=2),
                                   rtol=0, atol=0.05)


def test_int8_needs_a_calibration_manifest(files: dict) -> None:
    result = run_cli("export", "-c", files["ckpt"], "-o", files["root"] / "never.onnx", "--int8")
    assert result.exit_code == 1 and "--int8 needs --calibrate MANIFEST" in result.stderr
    assert not (files["root"] / "never.onnx").exists()


@needs_openvino
def test_openvino_session_and_the_measured_choice(files: dict) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (2, 8, 40, 56, 3), dtype=np.uint8)
    cpu = OnnxClassifier(files["fp32"], providers="cpu")
    ov = OnnxClassifier(files["fp32"], providers="openvino")
    assert ov.provider == "OpenVINO"
    want = cpu.predict(frames)
    np.testing.assert_allclose(ov.predict(frames), want, rtol=0, atol=1e-5 * np.abs(want).max())
    auto = OnnxClassifier(files["fp32"])
    assert set(auto.runtime_seconds) == {"CPUExecutionProvider", "OpenVINO"}
    assert auto.provider == min(auto.runtime_seconds, key=auto.runtime_seconds.__getitem__)


@needs_openvino
def test_openvino_sessions_freed_in_any_order_leave_signals_deliverable(files: dict) -> None:
    """Two sessions freed first-made-first, then a signal with a Python handler: the process must live. With a
    Core per session, OpenVINO's CPU plugin (on CPUs with AMX) left the main thread on an unmapped signal
    stack, and the kernel killed the process at the next handled signal (in the suite: a pool's SIGCHLD)."""
    script = (
        "import os, signal, sys\n"
        "from vidfast.deploy.openvino import OpenVinoSession\n"
        "first, second = OpenVinoSession(sys.argv[1]), OpenVinoSession(sys.argv[1])\n"
        "del first, second\n"
        "signal.signal(signal.SIGUSR1, lambda *_: print('handled'))\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(files["fp32"])], capture_output=True, text=True,
                          timeout=300)
    assert (done.returncode, done.stdout.strip()) == (0, "handled"), done.stderr[-500:]


def test_eval_onnx_writes_the_same_report_as_the_checkpoint(files: dict) -> None:
    runs = files["root"]
    common = ["--split", "train", "--clips", "2", "--workers", "0", "--json"]
    by_ckpt = run_cli("eval", files["manifest"], "-c", files["ckpt"], "--no-amp", "--device", "cpu",
                      "--run-dir", runs / "ev_ckpt", *common)
    by_onnx = run_cli("eval", files["manifest"], "--onnx", files["fp32"], "--run-dir", runs / "ev_onnx",
                      *common)
    assert by_ckpt.exit_code == 0 and by_onnx.exit_code == 0, by_onnx.stderr
    a, b = (json.loads((runs / d / "report.json").read_text()) for d in ("ev_ckpt", "ev_onnx"))
    assert b["onnx"] == str(files["fp32"]) and b["precision"].startswith("fp32 on ") and a["onnx"] is None
    # the preprocessing graph gets the clip-sized frames rounded to uint8: the same predictions, not the same
    # bits
    assert (a["num_videos"], a["confusion"]) == (b["num_videos"], b["confusion"])
    both = run_cli("eval", files["manifest"], "-c", files["ckpt"], "--onnx", files["fp32"], *common)
    assert both.exit_code == 1 and "either --checkpoint" in both.stderr

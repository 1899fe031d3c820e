"""``vidfast predict``: PyTorch and onnxruntime paths on synthetic videos, several files, bad files."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import make_checkpoint, make_dataset, run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    _, names, paths = make_dataset(root, classes=3, per_class=1)
    return {"root": root, "names": names, "paths": paths, "ckpt": make_checkpoint(root / "c.pt", names)}


def test_predict_prints_topk_labels_per_file(files):
    result = run_cli("predict", *files["paths"][:2], "--checkpoint", files["ckpt"], "--topk", 2, "--clips", 2)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, files["paths"], strict=False):
        assert line.startswith(f"{path}: ")
        labels = line.split(": ", 1)[1].split(", ")
        assert len(labels) == 2 and all(label.split()[0] in files["names"] for label in labels)


def test_predict_json_scores_are_video_level_probabilities(files):
    result = run_cli("predict", files["paths"][0], "-c", files["ckpt"], "--topk", 5, "--json", "--no-amp")
    assert result.exit_code == 0, result.stderr
    (entry,) = json.loads(result.stdout)
    assert entry["error"] is None and entry["path"] == str(files["paths"][0])
    scores = [label["score"] for label in entry["labels"]]
    assert len(scores) == 3  # top-min(5, C)
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_predict_reports_each_bad_file_and_exits_nonzero(files, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 20)
    result = run_cli("predict", files["paths"][0], bad, files["paths"][1], "-c", files["ckpt"], "--clips", 1)
    assert result.exit_code == 1
    assert len(result.stdout.strip().splitlines()) == 2  # both good files still predicted
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}: ")
    assert "Traceback" not in result.stderr + result.stdout


def test_onnx_and_pytorch_paths_agree(files, tmp_path):
    pytest.importorskip("onnxruntime")
    from vidfast.deploy.predict import open_scorer
    from vidfast.export import export_onnx

    model = tmp_path / "model.onnx"
    export_onnx(files["ckpt"], model)
    torch_scorer = open_scorer([files["ckpt"]], device="cpu", autocast=False, channels_last=False)
    onnx_scorer = open_scorer(onnx=model, device="cpu")
    assert onnx_scorer.class_names == torch_scorer.class_names == files["names"]
    for path in files["paths"]:
        expected = torch_scorer.video_probs(path, clips=2)
        got = torch.from_numpy(onnx_scorer.video_probs(path, clips=2))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-3)
    result = run_cli("predict", files["paths"][0], "--onnx", model, "--json", "--clips", 2)
    assert result.exit_code == 0, result.stderr
    reference = run_cli("predict", files["paths"][0], "-c", files["ckpt"], "--json", "--clips", 2, "--no-amp")
    onnx_top = [x["label"] for x in json.loads(result.stdout)[0]["labels"]]
    torch_top = [x["label"] for x in json.loads(reference.stdout)[0]["labels"]]
    assert onnx_top[0] == torch_top[0]

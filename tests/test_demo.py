"""The main job at tiny size: ``vidfast demo --quick`` end to end (synth -> index -> pretrain -> finetune and
scratch -> eval -> export -> onnxruntime predict)."""

from __future__ import annotations

import json

from helpers import run_cli


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "--quick", "--out", out)
    assert result.exit_code == 0, result.stderr + result.stdout
    summary = json.loads((out / "summary.json").read_text())
    for run in ("scratch", "finetune"):
        assert 0.0 <= summary[run]["video_top1"] <= 1.0
        assert (out / run / "curves.png").exists() and (out / run / "last.pt").exists()
        assert (out / f"eval_{run}" / "confusion.png").exists()
        assert json.loads((out / f"eval_{run}" / "report.json").read_text())["num_videos"] == summary[
            "num_val_videos"]
    # the paper's setting: a separate unlabelled pool, 2 labelled and 2 held-out videos per class
    assert (summary["num_pool_videos"], summary["num_train_videos"], summary["num_val_videos"]) == (
        4 * 8, 4 * 2, 4 * 2)
    assert 0.0 <= summary["puzzle"]["train_acc"] <= 1.0 and summary["puzzle"]["chance"] == 1 / 48
    assert (out / "pretrain" / "last.pt").exists()
    deploy = summary["deploy"]
    assert (out / "export" / "model.onnx").exists() and deploy["example"]["error"] is None
    agree, total = map(int, deploy["top1_agreement"].split("/"))
    assert total == summary["num_val_videos"] and agree >= total - 1  # bf16 PyTorch vs fp32 onnxruntime
    assert "random init" in result.stdout and "puzzle-pretrained" in result.stdout
    assert "puzzle pretraining" in result.stdout  # the verdict sentence
    gap = summary["gap"]  # puzzle-pretrained minus random init over the held-out videos, with its interval
    assert gap["videos"] == summary["num_val_videos"] and gap["low"] <= gap["gap"] <= gap["high"]
    diff = 100 * (summary["finetune"]["video_top1"] - summary["scratch"]["video_top1"])
    assert abs(gap["gap"] - diff) < 1e-6
    assert f"[{gap['low']:+.1f}, {gap['high']:+.1f}]" in summary["verdict"] and "Caveat" in summary["verdict"]
    # a rerun replaces the previous demo; a foreign non-empty folder is refused
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused = run_cli("demo", "--quick", "--out", foreign)
    assert refused.exit_code == 1 and "not a vidfast demo directory" in refused.stderr

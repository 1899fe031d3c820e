"""Evaluation metrics against hand-computed cases, the score ensemble, and ``vidfast eval`` end to end."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from helpers import make_checkpoint, make_dataset, run_cli

from vidfast.engine.metrics import (
    classification_report,
    confusion_matrix,
    per_class_accuracy,
    plot_confusion,
    topk_accuracy,
    topk_hits,
    video_scores,
)
from vidfast.scoring import ensemble_scores


def test_topk_hits_and_accuracy_hand_computed():
    scores = torch.tensor([
        [0.1, 0.6, 0.2, 0.05, 0.03, 0.02],  # ranking 1,2,0,3,4,5
        [0.5, 0.1, 0.1, 0.1, 0.1, 0.1],
        [0.0, 0.1, 0.2, 0.3, 0.15, 0.25],  # ranking 3,5,2,4,1,0
    ])
    labels = torch.tensor([2, 0, 0])
    assert topk_hits(scores, labels, 1).tolist() == [False, True, False]
    assert topk_hits(scores, labels, 2).tolist() == [True, True, False]
    assert topk_hits(scores, labels, 5).tolist() == [True, True, False]
    assert topk_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, labels, 5) == pytest.approx(2 / 3)
    assert topk_accuracy(scores, labels, 6) == pytest.approx(1.0)


def test_topk_with_fewer_classes_than_k_is_top_c():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
    labels = torch.tensor([2, 0])
    assert topk_hits(scores, labels, 5).tolist() == [True, True]
    assert topk_accuracy(scores, labels, 5) == 1.0
    assert math.isnan(topk_accuracy(scores[:0], labels[:0], 1))


def test_topk_rejects_bad_shapes():
    with pytest.raises(ValueError, match="scores must be"):
        topk_hits(torch.zeros(3), torch.zeros(3, dtype=torch.long), 1)


def test_video_scores_average_clips_per_video():
    clips = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.0, 1.0]])
    ids, scores = video_scores(clips, torch.tensor([7, 3, 7, 3, 7]))
    assert ids.tolist() == [3, 7]
    torch.testing.assert_close(scores, torch.tensor([[0.4, 0.6], [0.4, 0.6]]))


def test_clip_and_video_level_accuracy_differ_as_computed_by_hand():
    # video 0 (label 0): clips predict 0, 1, 0 -> 2/3 clip hits; clip 2's top-2 is {1, 2}: the one top-2 miss;
    #                    averaged scores [0.47, 0.4, 0.13] -> video hit
    # video 1 (label 1): clips predict 0, 1     -> 1/2 clip hits, averaged [0.45, 0.55, 0]  -> video hit
    # video 2 (label 2): one clip predicting 0  -> miss, top-2 = {0, 2}                      -> top-2 hit
    clips = torch.tensor([
        [0.8, 0.2, 0.0], [0.0, 0.6, 0.4], [0.6, 0.4, 0.0],
        [0.6, 0.4, 0.0], [0.3, 0.7, 0.0],
        [0.5, 0.1, 0.4],
    ])
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    video = torch.tensor([0, 0, 0, 1, 1, 2])
    report, ids, scores = classification_report(clips, labels, video, ["a", "b", "c"], skipped=2, k=2)
    assert report.clip_top1 == pytest.approx(3 / 6)
    assert report.video_top1 == pytest.approx(2 / 3)
    assert report.clip_top5 == pytest.approx(5 / 6)
    assert report.video_top5 == pytest.approx(1.0)
    assert report.topk == 2
    assert report.confusion == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert report.per_class == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert (report.num_videos, report.num_clips, report.skipped) == (3, 6, 2)
    assert ids.tolist() == [0, 1, 2]
    torch.testing.assert_close(scores[1], torch.tensor([0.45, 0.55, 0.0]))


def test_report_rejects_mixed_labels_within_a_video():
    with pytest.raises(ValueError, match="different labels"):
        classification_report(torch.full((2, 2), 0.5), torch.tensor([0, 1]), torch.tensor([4, 4]), ["a", "b"])


def test_confusion_and_per_class_accuracy():
    predictions = torch.tensor([0, 1, 1, 2, 2, 2])
    labels = torch.tensor([0, 0, 1, 2, 2, 1])
    confusion = confusion_matrix(predictions, labels, 4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    accuracy = per_class_accuracy(confusion)
    assert accuracy[:3].tolist() == [0.5, 0.5, 1.0]
    assert math.isnan(accuracy[3])


def test_class_without_videos_is_null_in_json():
    clips = torch.tensor([[0.9, 0.1, 0.0]])
    report, _, _ = classification_report(clips, torch.tensor([0]), torch.tensor([0]), ["a", "b", "c"])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["per_class"] == {"a": 1.0, "b": None, "c": None}
    assert data["video_top5"] == 1.0 and data["topk"] == 3


def test_score_ensemble_averages_probabilities():
    spatial = torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    temporal = torch.tensor([[0.1, 0.9], [0.4, 0.6]])
    torch.testing.assert_close(ensemble_scores([spatial, temporal]), torch.tensor([[0.4, 0.6], [0.3, 0.7]]))
    # the ensemble fixes a video that one model gets wrong
    labels = torch.tensor([1, 1])
    assert topk_accuracy(spatial, labels, 1) == 0.5
    assert topk_accuracy(ensemble_scores([spatial, temporal]), labels, 1) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        ensemble_scores([spatial, temporal[:1]])
    with pytest.raises(ValueError, match="at least one"):
        ensemble_scores([])


def test_plot_confusion_writes_png(tmp_path):
    path = plot_confusion([[3, 1], [0, 4]], ["walk", "run"], tmp_path / "sub" / "confusion.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- end to end: tiny checkpoints and videos written at test time ------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    manifest, names, paths = make_dataset(root)
    return {"root": root, "manifest": manifest, "names": names, "paths": paths,
            "ckpt_a": make_checkpoint(root / "a.pt", names, seed=1),
            "ckpt_b": make_checkpoint(root / "b.pt", names, seed=2)}


def test_eval_cli_writes_report_and_confusion_png(dataset, tmp_path):
    result = run_cli("eval", dataset["manifest"], "--checkpoint", dataset["ckpt_a"], "--clips", 3,
                     "--workers", 0, "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    for key in ("clip_top1", "clip_top5", "video_top1", "video_top5"):
        assert 0.0 <= report[key] <= 1.0
    assert report["video_top5"] == 1.0  # top-min(5, 3) of 3 classes always holds the label
    assert report["num_videos"] == 6 and report["num_clips"] == 18 and report["skipped"] == 0
    assert set(report["per_class"]) == set(dataset["names"])
    assert sum(map(sum, report["confusion"])) == 6
    assert (tmp_path / "run" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "run" / "predictions.csv").read_text().splitlines()) == 7
    assert "video" in result.stdout


def test_score_ensemble_is_the_mean_of_the_members(dataset):
    from vidfast.scoring import ScoreEnsemble, decode_clips

    def ensemble(*paths):
        return ScoreEnsemble.from_checkpoints(paths, device="cpu", autocast=False, channels_last=False)

    a, b = ensemble(dataset["ckpt_a"]), ensemble(dataset["ckpt_b"])
    both = ensemble(dataset["ckpt_a"], dataset["ckpt_b"])
    clips = decode_clips(dataset["paths"][0], both.specs, clips=3)
    assert len(both.specs) == 1 and clips[0].shape == (3, 3, 8, 32, 32)
    expected = (a.clip_probs(clips) + b.clip_probs(clips)) / 2
    torch.testing.assert_close(both.clip_probs(clips), expected)
    assert not torch.allclose(a.clip_probs(clips), b.clip_probs(clips))


def test_eval_cli_score_ensemble_and_sliding_windows(dataset, tmp_path):
    result = run_cli("eval", dataset["manifest"], "-c", dataset["ckpt_a"], "-c", dataset["ckpt_b"],
                     "--sliding", "--workers", 0, "--no-amp", "--run-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["checkpoints"] == [str(dataset["ckpt_a"]), str(dataset["ckpt_b"])]
    assert report["clips"] == "sliding" and report["num_clips"] == 6 * 2  # 16 frames = 2 windows of 8


def test_eval_counts_a_video_that_no_longer_decodes(dataset, tmp_path):
    from vidfast.data import read_manifest, write_manifest

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    rows = read_manifest(dataset["manifest"]).rows
    rows.append(dataclasses.replace(rows[0], path=str(broken)))
    write_manifest(tmp_path / "manifest.csv", rows)
    result = run_cli("eval", tmp_path / "manifest.csv", "-c", dataset["ckpt_a"], "--clips", 1, "--workers", 2,
                     "--run-dir", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["num_videos"] == 6 and report["skipped"] == 1
    assert report["skipped_videos"][0]["path"] == str(broken)


def test_checkpoint_without_data_entry_uses_the_model_card_clip(tmp_path):
    """A checkpoint written by the CVPR 2018 code (``arch`` "resnet-10", no ``data``) evaluates at 16x112."""
    from vidfast.models import create_model
    from vidfast.scoring import load_classifier

    model = create_model("resnet10", num_classes=5)
    torch.save({"arch": "resnet-10", "state_dict": model.state_dict(), "epoch": 3}, tmp_path / "cvpr.pt")
    loaded = load_classifier(tmp_path / "cvpr.pt", frame_step=2)
    assert (loaded.spec.clip_len, loaded.spec.size, loaded.spec.frame_step) == (16, 112, 2)
    assert loaded.model.num_classes == 5 and loaded.class_names == []


def _relabel(dataset, tmp_path, unlabelled: int):
    """The dataset's manifest with ``unlabelled`` rows' labels removed (-1, as in a test split), one per class
    while any class keeps another labelled row (so the manifest still names every class)."""
    from vidfast.data import read_manifest, write_manifest

    rows = read_manifest(dataset["manifest"]).rows
    order = sorted(range(len(rows)), key=lambda i: ([r.label for r in rows[:i]].count(rows[i].label), i))
    chosen = set(order[:unlabelled])
    rows = [dataclasses.replace(r, label=-1, label_name="") if i in chosen else r for i, r in enumerate(rows)]
    write_manifest(tmp_path / "manifest.csv", rows)
    return tmp_path / "manifest.csv"


def test_eval_of_an_unlabelled_split_writes_predictions_and_says_so(dataset, tmp_path):
    manifest = _relabel(dataset, tmp_path, unlabelled=6)
    result = run_cli("eval", manifest, "-c", dataset["ckpt_a"], "--clips", 2, "--workers", 0,
                     "--run-dir", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["num_videos"], report["num_unlabelled"], report["video_top1"]) == (0, 6, None)
    assert "has no labels" in report["labels"]
    lines = (tmp_path / "run" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "path,label,top1,score1,top2,score2,top3,score3"
    assert len(lines) == 7
    for line in lines[1:]:
        path, label, *top = line.split(",")
        assert label == "" and set(top[0::2]) == set(dataset["names"])  # top-3 of 3 classes: all of them
        assert sum(map(float, top[1::2])) == pytest.approx(1.0, abs=1e-3)
    assert not (tmp_path / "run" / "confusion.png").exists()


def test_eval_of_a_mixed_split_counts_the_labelled_rows(dataset, tmp_path):
    manifest = _relabel(dataset, tmp_path, unlabelled=2)
    result = run_cli("eval", manifest, "-c", dataset["ckpt_a"], "--clips", 2, "--workers", 0,
                     "--run-dir", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert (report["num_videos"], report["num_unlabelled"], report["num_clips"]) == (4, 2, 8)
    assert sum(map(sum, report["confusion"])) == 4
    assert "accuracy over the 4 labelled videos; 2 videos without a label" in " ".join(result.stdout.split())
    assert len((tmp_path / "run" / "predictions.csv").read_text().splitlines()) == 7


def test_report_needs_class_indices_and_is_empty_without_clips():
    scores = torch.tensor([[0.9, 0.1]])
    with pytest.raises(ValueError, match="label -1"):
        classification_report(scores, torch.tensor([-1]), torch.tensor([0]), ["a", "b"])
    report, ids, _ = classification_report(scores[:0], torch.tensor([], dtype=torch.long),
                                           torch.tensor([], dtype=torch.long), ["a", "b"])
    assert report.num_videos == 0 and len(ids) == 0 and math.isnan(report.video_top1)
    assert report.to_dict()["video_top1"] is None and report.confusion == [[0, 0], [0, 0]]

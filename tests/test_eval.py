"""Evaluation metrics against hand-computed cases, the score ensemble, and ``vidfast eval`` end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vidfast.engine.metrics import (
    classification_report,
    confusion_matrix,
    ensemble_scores,
    per_class_accuracy,
    plot_confusion,
    topk_accuracy,
    topk_hits,
    video_scores,
)


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

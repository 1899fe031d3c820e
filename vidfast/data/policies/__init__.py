"""Clip policies: how training, evaluation and prediction take samples from a video (see ``base.py``)."""

from vidfast.data.policies.base import ClipOutput, ClipParams, ClipPolicy
from vidfast.data.policies.clips import (
    ClipSampling,
    center_clip,
    clip_policy,
    sliding_windows,
    training_clips,
    uniform_clips,
)
from vidfast.data.policies.puzzle import CubicPuzzle

__all__ = [
    "ClipOutput", "ClipParams", "ClipPolicy", "ClipSampling", "CubicPuzzle", "center_clip", "clip_policy",
    "sliding_windows", "training_clips", "uniform_clips",
]

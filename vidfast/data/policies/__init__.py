"""Clip policies: how training, evaluation and prediction take samples from a video (see ``base.py``),
registered by name (``registry.py``)."""

from vidfast.data.policies.base import ClipOutput, ClipParams, ClipPolicy
from vidfast.data.policies.clips import (
    ClipSampling,
    clip_policy,
    sliding_windows,
    training_clips,
    uniform_clips,
)
from vidfast.data.policies.puzzle import CubicPuzzle
from vidfast.data.policies.registry import POLICIES, create_policy, register_policy

__all__ = [
    "POLICIES", "ClipOutput", "ClipParams", "ClipPolicy", "ClipSampling", "CubicPuzzle", "clip_policy",
    "create_policy", "register_policy", "sliding_windows", "training_clips", "uniform_clips",
]

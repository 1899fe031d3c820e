"""Paired comparisons of two initialisations: the gap in video top-1 and its 95 % interval from a two-level
paired bootstrap (seeds, then test videos, each resampled with replacement; both initialisations keep their
pairing: the same seed's labelled subset and pretraining, the same test videos).

The gap of a resample is the mean over its seeds and videos of ``correct_a - correct_b``; the interval is the
2.5th and 97.5th percentiles of the resampled gaps. Resampling the seeds carries the variance of the
pretraining, the labelled subset and the fine-tuning; resampling the videos carries the test set's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gap:
    """``a`` minus ``b`` in points of video top-1 (mean over seeds and videos) and its 95 % interval."""

    gap: float
    low: float
    high: float
    seeds: int
    videos: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def text(self) -> str:
        return f"{self.gap:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, draws: int = 4000, seed: int = 0) -> Gap:
    """The gap ``a - b`` of two ``[seeds, videos]`` 0/1 arrays (``[s, v]``: seed ``s``'s network got test
    video
    ``v`` right) with its 95 % paired-bootstrap interval over ``draws`` resamples, in points."""
    a, b = np.asarray(correct_a, dtype=np.float64), np.asarray(correct_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or not a.size:
        raise ValueError(f"need two [seeds, videos] arrays of one shape, got {a.shape} and {b.shape}")
    diff = a - b
    seeds, videos = diff.shape
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=draws)  # [draws, seeds]
    video_counts = rng.multinomial(videos, np.full(videos, 1 / videos), size=draws)  # [draws, videos]
    resampled = ((seed_counts @ diff) * video_counts).sum(1) / (seeds * videos)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return Gap(100 * float(diff.mean()), 100 * float(low), 100 * float(high), seeds, videos)

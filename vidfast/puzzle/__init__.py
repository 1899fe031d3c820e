"""vidfast.puzzle: the Space-Time Cubic Puzzle sampler (Kim et al., AAAI 2019)."""

from vidfast.puzzle.sampler import (
    PERMUTATIONS,
    SPATIAL,
    TEMPORAL,
    PuzzleConfig,
    PuzzleOptions,
    PuzzleSample,
    sample_puzzle,
    temporal_fits,
)

__all__ = [
    "PERMUTATIONS", "SPATIAL", "TEMPORAL", "PuzzleConfig", "PuzzleOptions", "PuzzleSample", "sample_puzzle",
    "temporal_fits",
]

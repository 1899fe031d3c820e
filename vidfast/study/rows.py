"""The study's rows: the initialisations it compares, and the score ensembles of ``--ablation``."""

from __future__ import annotations

from dataclasses import dataclass, field

from vidfast.engine.config import PuzzleTaskConfig
from vidfast.puzzle import PuzzleOptions


@dataclass(frozen=True)
class Row:
    """One initialisation: ``pretext`` None (random init), ``"puzzle"`` (cubic puzzles as the puzzle section
    ``puzzle`` says: the sampler's choices, the loss weights) or ``"classify"`` (the pool's labels)."""

    name: str
    label: str
    pretext: str | None = None
    puzzle: PuzzleTaskConfig = field(default_factory=PuzzleTaskConfig)


def _sampled(**choices: float | bool) -> PuzzleTaskConfig:
    """The default puzzle section with the sampler's ``choices``."""
    return PuzzleTaskConfig(sampler=PuzzleOptions(**choices))


ROWS: tuple[Row, ...] = (
    Row("random", "random init"),
    Row("random_long", "random init + pretraining's compute"),
    Row("st_puzzle", "ST-puzzle (full)", "puzzle"),
    Row("rotation_only", "rotation only (3DRotNet-style)", "puzzle",
        PuzzleTaskConfig(permutation_weight=0.0)),
    Row("supervised", "supervised on the pool (upper bound)", "classify"),
)
#: Kim et al.'s Tables 2 and 4, with ``ablation``
ABLATION_ROWS: tuple[Row, ...] = (
    Row("spatial_puzzle", "S-puzzle", "puzzle", _sampled(spatial_prob=1.0)),
    Row("temporal_puzzle", "T-puzzle", "puzzle", _sampled(spatial_prob=0.0)),
    Row("no_regularisation", "no regularisation", "puzzle",
        _sampled(jitter=False, channel_prob=0.0, rotation=False)),
    Row("channel_replication", "+ channel replication", "puzzle",
        _sampled(jitter=False, channel_prob=0.5, rotation=False)),
    Row("channel_jitter", "+ random jittering", "puzzle",
        _sampled(jitter=True, channel_prob=0.5, rotation=False)),
)
#: score ensembles (softmax averaged per video) of fine-tuned rows, with ``ablation``
ENSEMBLES: dict[str, tuple[str, ...]] = {"st_ensemble": ("spatial_puzzle", "temporal_puzzle")}
#: random init with a longer budget: it shares the selection runs of "random"
LONG = "random_long"
#: every row's label in the report
LABELS: dict[str, str] = {row.name: row.label for row in (*ROWS, *ABLATION_ROWS)} | {
    "st_ensemble": "ST score ensemble"
}

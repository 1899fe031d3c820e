"""The study's rows: the initialisations it compares, and the score ensembles of ``--ablation``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Row:
    """One initialisation: ``pretext`` None (random init), ``"puzzle"`` (cubic puzzles with ``puzzle``'s
    options: ``sampler`` overrides, ``permutation_weight``) or ``"classify"`` (the pool's labels)."""

    name: str
    label: str
    pretext: str | None = None
    puzzle: dict[str, Any] = field(default_factory=dict)


ROWS: tuple[Row, ...] = (
    Row("random", "random init"),
    Row("random_long", "random init + pretraining's compute"),
    Row("st_puzzle", "ST-puzzle (full)", "puzzle"),
    Row("rotation_only", "rotation only (3DRotNet-style)", "puzzle", {"permutation_weight": 0.0}),
    Row("supervised", "supervised on the pool (upper bound)", "classify"),
)
#: Kim et al.'s Tables 2 and 4, with ``ablation``
ABLATION_ROWS: tuple[Row, ...] = (
    Row("spatial_puzzle", "S-puzzle", "puzzle", {"sampler": {"spatial_prob": 1.0}}),
    Row("temporal_puzzle", "T-puzzle", "puzzle", {"sampler": {"spatial_prob": 0.0}}),
    Row(
        "no_regularisation",
        "no regularisation",
        "puzzle",
        {"sampler": {"jitter": False, "channel_prob": 0.0, "rotation": False}},
    ),
    Row(
        "channel_replication",
        "+ channel replication",
        "puzzle",
        {"sampler": {"jitter": False, "channel_prob": 0.5, "rotation": False}},
    ),
    Row(
        "channel_jitter",
        "+ random jittering",
        "puzzle",
        {"sampler": {"jitter": True, "channel_prob": 0.5, "rotation": False}},
    ),
)
#: score ensembles (softmax averaged per video) of fine-tuned rows, with ``ablation``
ENSEMBLES: dict[str, tuple[str, ...]] = {"st_ensemble": ("spatial_puzzle", "temporal_puzzle")}
#: random init with a longer budget: it shares the selection runs of "random"
LONG = "random_long"
#: every row's label in the report
LABELS: dict[str, str] = {row.name: row.label for row in (*ROWS, *ABLATION_ROWS)} | {
    "st_ensemble": "ST score ensemble"
}

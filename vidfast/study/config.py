"""The study's sizes and its model-selection procedure: torch-free, so that the CLI makes its options from
them (:mod:`vidfast_cli.options`)."""

from __future__ import annotations

from dataclasses import dataclass

from vidfast.engine.config import SEED, Geometry, Recipe, option
from vidfast.errors import VidfastError
from vidfast.study.rows import ABLATION_ROWS, ROWS, Row


@dataclass(frozen=True)
class Selection:
    """The selection procedure: the rate grid ``lrs`` (at most 3 values), the budget of ``steps`` of every
    selection run, validation every ``val_every`` steps, ``warmup`` steps of linear warmup."""

    lrs: tuple[float, ...]
    steps: int
    val_every: int
    warmup: int = 5


@dataclass(frozen=True)
class StudyConfig:
    """Sizes of the study; :meth:`quick` for tests.

    ``catalogues``: the synthetic data sets to run (``aligned``, ``control``), each ``classes`` x
    (``pool_per_class``, ``labelled_per_class``, ``test_per_class``) videos of ``frames`` frames at
    ``video_size`` pixels, or ``pool`` / ``labelled`` / ``test``: manifests of the user's own data (their
    ``train`` rows, ``train`` rows and ``test`` rows; all three or none), run as the one catalogue ``own``.
    ``ks``: labelled videos per class of a cell; ``seeds``: pretrainings per pretrained row, each reused by
    the cells of its seed at every k (a cell's seed also draws its labelled subset and its training order).
    ``pretrain_epochs`` of the pool per pretraining; ``pretrain_recipes``: the candidates, one chosen per
    row by the pretext's validation loss (held-out pool videos) after a pilot pretraining of
    ``recipe_epochs`` (at most ``pretrain_epochs``) on seed 0 with each. ``selection``: rate grid and step
    budget of the fine-tunes, ``probe_selection`` of the linear probes. ``eval_clips`` clips per video
    (validation and test); ``bootstrap`` resamples of the paired intervals. ``jobs``: catalogues run at
    once, each in its own process with an equal share of the CPU's cores (0: one per catalogue, at most
    one per core).

    The default size (about an hour on 2 CPU cores, the two catalogues side by side) is chosen so that the
    classes can be learnt: on clips of 8x32x32 from 32-pixel videos no row, the supervised
    upper bound included, left chance (``bench/results/study-cpu-2core-2026-12-03``).
    """

    out: str = option("study_runs", help="Folder of the study (data, runs, cache, report.md, results.json, "
                      "plots); a study already there is continued, its finished work reused.")
    pool: str | None = option(None, help="Your unlabelled pretraining manifest (all its usable rows; with "
                              "--labelled and --test instead of synthetic data).")
    labelled: str | None = option(None, help="Your labelled manifest (its train rows).")
    test: str | None = option(None, help="Your test manifest (its test rows).")
    catalogues: tuple[str, ...] = option(("aligned", "control"), help="Synthetic data catalogues, "
                                         "comma-separated: aligned (drifts right/left/down/up, particles "
                                         "fall down), control (spins, slides, swings in any direction, "
                                         "gravity drawn per video). Default: both.")
    classes: int = 4
    pool_per_class: int = 32
    labelled_per_class: int = 16
    test_per_class: int = 75
    frames: int = option(32, min=1, help="Frames of every labelled and test video held in memory (its middle "
                         "ones).")
    video_size: int = 64
    ks: tuple[int, ...] = option((2, 4, 8), help="Labelled videos per class of the cells, comma-separated, "
                                 "each >= 2 (default 2,4,8).")
    seeds: int = option(3, min=1, help="Pretrainings per row, each reused by its cells (default 3).")
    ablation: bool = option(False, negatable=False, help="Also the rows of Kim et al.'s Tables 2 and 4 "
                            "(spatial-only, temporal-only, no regularisation, + channel replication, + "
                            "jittering, S+T ensemble).")
    geometry: Geometry = Geometry(clip_len=16, size=48, cube_len=8, cube_size=32, batch_size=8, workers=0)
    pretrain_epochs: int = option(30, min=1, help="Epochs of every pretraining on the pool.")
    pretrain_recipes: tuple[Recipe, ...] = (Recipe("sgd", 0.02), Recipe("adamw", 0.001))
    recipe_epochs: int = 5
    selection: Selection = Selection(lrs=(0.01, 0.03, 0.1), steps=64, val_every=8)
    probe_selection: Selection = Selection(lrs=(0.01, 0.1, 1.0), steps=100, val_every=10)
    eval_clips: int = 2
    pretext_puzzles: int = 200
    bootstrap: int = 4000
    jobs: int = option(0, min=0, help="Catalogues run at once, each in its own process with an equal share "
                       "of the cores (0: one per catalogue, at most one per core).")
    seed: int = SEED(0)

    @classmethod
    def quick(cls, out: str = "study_runs") -> StudyConfig:
        """Seconds per run: 2 classes, tiny videos and clips, 2 seeds, 2 pretraining epochs after 1-epoch
        recipe pilots, 4-step selection runs (a smoke test; its accuracies mean nothing)."""
        return cls(
            out=out,
            classes=2,
            pool_per_class=8,
            labelled_per_class=4,
            test_per_class=3,
            frames=16,
            video_size=32,
            ks=(2, 4),
            seeds=2,
            geometry=Geometry(clip_len=4, size=32, cube_len=2, cube_size=16, batch_size=4, workers=0),
            pretrain_epochs=2,
            recipe_epochs=1,
            selection=Selection(lrs=(0.01, 0.05), steps=4, val_every=2, warmup=1),
            probe_selection=Selection(lrs=(0.1, 1.0), steps=4, val_every=2),
            eval_clips=1,
            pretext_puzzles=4,
            bootstrap=200,
        )

    def rows(self) -> tuple[Row, ...]:
        return (*ROWS, *ABLATION_ROWS) if self.ablation else ROWS

    def own_data(self) -> bool:
        given = [self.pool, self.labelled, self.test]
        if any(given) and not all(given):
            raise VidfastError("--pool, --labelled and --test go together (your own data), or none of them")
        return all(given)

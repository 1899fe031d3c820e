"""A label-efficiency study a skeptical reviewer accepts: Kim et al.'s comparison (random init vs Space-Time
Cubic Puzzle pretraining) in miniature, with tuned baselines, rows that isolate the cause (rotation only,
supervised pretraining, random init with the pretraining's compute, linear probes), controls for the rotation
shortcut in the synthetic data, and paired intervals.

- :mod:`~vidfast.study.config`: the study's sizes (``StudyConfig``; torch-free, for the CLI's options);
- :mod:`~vidfast.study.sets`: the pool / labelled / test sets, the draws, the videos held in memory;
- :mod:`~vidfast.study.cache`: the one cache every finished piece of work goes through (a study resumes);
- :mod:`~vidfast.study.learners`: model selection on validation and the final fit of a cell;
- :mod:`~vidfast.study.rows`: the initialisations compared;
- :mod:`~vidfast.study.runner`: pretrainings and cells (``run_study``);
- :mod:`~vidfast.study.stats`: paired bootstrap intervals;
- :mod:`~vidfast.study.report`: ``report.md``, the plot, the verdict.

The names below load their modules when first used: importing ``vidfast.study.config`` loads no torch.
"""

from __future__ import annotations

from vidfast.lazy import lazy_names

_MODULES = {
    "ABLATION_ROWS": "vidfast.study.rows",
    "ENSEMBLES": "vidfast.study.rows",
    "ROWS": "vidfast.study.rows",
    "Gap": "vidfast.study.stats",
    "Row": "vidfast.study.rows",
    "Sets": "vidfast.study.sets",
    "StudyConfig": "vidfast.study.config",
    "holdout_split": "vidfast.study.sets",
    "labelled_subset": "vidfast.study.sets",
    "paired_bootstrap": "vidfast.study.stats",
    "read_sets": "vidfast.study.sets",
    "run_study": "vidfast.study.runner",
    "synthesize_sets": "vidfast.study.sets",
}

__all__ = sorted(_MODULES)

__getattr__ = lazy_names("vidfast.study", _MODULES)

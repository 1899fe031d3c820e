"""A label-efficiency study a skeptical reviewer accepts: Kim et al.'s comparison (random init vs Space-Time
Cubic Puzzle pretraining) in miniature, with tuned baselines, rows that isolate the cause (rotation only,
supervised pretraining, random init with the pretraining's compute, linear probes), controls for the rotation
shortcut in the synthetic data, and paired intervals.

- :mod:`~vidfast.study.sets`: the pool / labelled / test sets, the draws, the videos held in memory;
- :mod:`~vidfast.study.cache`: the one cache every finished piece of work goes through (a study resumes);
- :mod:`~vidfast.study.learners`: model selection on validation and the final fit of a cell;
- :mod:`~vidfast.study.rows`: the initialisations compared;
- :mod:`~vidfast.study.runner`: pretrainings and cells (``run_study``);
- :mod:`~vidfast.study.stats`: paired bootstrap intervals;
- :mod:`~vidfast.study.report`: ``report.md``, the plot, the verdict.
"""

from vidfast.study.rows import ABLATION_ROWS, ENSEMBLES, ROWS, Row
from vidfast.study.runner import StudyConfig, run_study
from vidfast.study.sets import Sets, holdout_split, labelled_subset, read_sets, synthesize_sets
from vidfast.study.stats import Gap, paired_bootstrap

__all__ = [
    "ABLATION_ROWS",
    "ENSEMBLES",
    "ROWS",
    "Gap",
    "Row",
    "Sets",
    "StudyConfig",
    "holdout_split",
    "labelled_subset",
    "paired_bootstrap",
    "read_sets",
    "run_study",
    "synthesize_sets",
]

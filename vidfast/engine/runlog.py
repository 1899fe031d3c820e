"""Run logging: a progress bar (rich on a terminal, plain lines otherwise), ``metrics.csv``, TensorBoard
scalars, ``train.log`` and the loss/accuracy curves PNG written at the end of a run.

Only the main rank logs; on other ranks every method is a no-op.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any

from vidfast.progress import Progress

METRIC_COLUMNS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    "train_rot_acc",
    "val_loss",
    "val_acc",
    "val_rot_acc",
    "val_clips",
    "clips_per_s",
    "seconds",
]


class EpochProgress:
    """Progress of one epoch: ``update(clips, loss, acc)`` after each step, running averages shown on a
    :class:`vidfast.progress.Progress` (plain lines go to the run log every ``log_every`` steps)."""

    def __init__(self, logger: RunLogger, title: str, total_steps: int, start_step: int = 0):
        self.clips = 0
        self.loss_sum = 0.0
        self.acc_sum = 0.0
        mode = logger.progress_mode if logger.active else "none"
        self.bar = Progress(title, total_steps, mode, start=start_step, plain_every=logger.log_every,
                            emit=logger.info)

    @property
    def done(self) -> int:
        """Steps of the epoch done (resumed ones included)."""
        return self.bar.done

    @property
    def clips_per_s(self) -> float:
        elapsed = self.bar.elapsed
        return self.clips / elapsed if elapsed > 0 else 0.0

    def update(self, clips: int, loss: float, acc: float) -> None:
        """One step done on ``clips`` clips with mean ``loss`` and accuracy ``acc`` (running averages
        shown)."""
        self.clips += clips
        self.loss_sum += loss * clips
        self.acc_sum += acc * clips
        count = max(self.clips, 1)
        self.bar.advance(1, f"loss {self.loss_sum / count:.4f} acc {self.acc_sum / count:.3f} "
                            f"{self.clips_per_s:.1f} clips/s")

    def close(self) -> None:
        self.bar.close()


class RunLogger:
    """Writes ``RUN/train.log``, ``RUN/metrics.csv``, ``RUN/tb/`` (TensorBoard) and ``RUN/curves.png``.

    Args:
        run_dir: the run directory.
        active: False on non-main ranks (then nothing is printed or written).
        progress: "auto" (rich on a TTY, plain lines otherwise), "rich", "plain" or "none".
        tensorboard: also write TensorBoard scalars.
        append: keep an existing metrics.csv (resume) instead of starting a new one.
        log_every: plain-progress line every this many steps.
    """

    def __init__(
        self,
        run_dir: str | Path,
        active: bool = True,
        progress: str = "auto",
        tensorboard: bool = True,
        append: bool = False,
        log_every: int = 10,
    ):
        self.run_dir = Path(run_dir)
        self.active = active
        self.log_every = max(1, log_every)
        if progress == "auto":
            progress = "rich" if sys.stdout.isatty() else "plain"
        self.progress_mode = progress
        self.csv_path = self.run_dir / "metrics.csv"
        self._tb = None
        if not active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.run_dir / "train.log", "a" if append else "w", encoding="utf-8")
        if not (append and self.csv_path.is_file()):
            with open(self.csv_path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(METRIC_COLUMNS)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def info(self, message: str) -> None:
        """A line on stdout (unless progress is "none") and in train.log."""
        if not self.active:
            return
        if self.progress_mode != "none":
            print(message, flush=True)
        self._log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        self._log_file.flush()

    def epoch_progress(self, title: str, total_steps: int, start_step: int = 0) -> EpochProgress:
        return EpochProgress(self, title, total_steps, start_step)

    def write_metrics(self, row: dict[str, Any]) -> None:
        """Append one epoch's metrics (keys from ``METRIC_COLUMNS``; missing ones left empty) to
        CSV/TensorBoard."""
        if not self.active:
            return
        unknown = set(row) - set(METRIC_COLUMNS)
        if unknown:
            raise KeyError(f"unknown metric columns {sorted(unknown)}")
        with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(["" if row.get(k) is None else row[k] for k in METRIC_COLUMNS])
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("epoch", "step") and value is not None:
                    self._tb.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self._tb.flush()

    def close(self, plots: bool = True) -> Path | None:
        """Flush and close; write ``curves.png`` from metrics.csv when ``plots``. Returns the PNG path if
        written."""
        if not self.active:
            return None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._log_file.close()
        if plots:
            return plot_curves(self.csv_path, self.run_dir / "curves.png")
        return None


def read_metrics(csv_path: str | Path) -> list[dict[str, float | None]]:
    """Rows of a metrics.csv as dicts of floats (None where empty)."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        return [
            {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def plot_curves(csv_path: str | Path, out_png: str | Path) -> Path | None:
    """Training/validation loss and accuracy per epoch (cf. Hara et al.'s Figure 4) as a PNG; None if no
    rows."""
    rows = read_metrics(csv_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((ax_loss, "loss", "loss"), (ax_acc, "acc", "accuracy")):
        for split, style in (("train", "-o"), ("val", "--s")):
            points = [
                (r["epoch"], r[f"{split}_{metric}"]) for r in rows if r[f"{split}_{metric}"] is not None
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(0.0, 1.0)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png

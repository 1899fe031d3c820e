"""One progress display for every long loop (probing, training epochs, evaluation): a rich bar on a
terminal, plain lines otherwise (logs, CI), or nothing. Imports nothing of vidfast, so every layer may use it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

MODES = ("auto", "rich", "plain", "none")


def format_eta(seconds: float) -> str:
    """``H:MM:SS``, or ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def on_terminal_only(mode: str) -> str:
    """``mode`` for a short wait whose outcome is logged anyway: "auto" becomes a rich bar on a terminal and
    nothing otherwise (a log or a captured stderr gets the outcome's line, not a line per item)."""
    if mode != "auto":
        return mode
    from rich.console import Console

    return "rich" if Console(stderr=True).is_terminal else "none"


class Progress:
    """Progress of ``total`` items, ``start`` of them already done; ``advance(n, stats)`` after each.

    Args:
        mode: "auto" (rich when stderr is a terminal, plain lines otherwise), "rich", "plain" or "none".
        plain_every: a plain line every this many items (default: about every 10 %) and at the last one.
        emit: where plain lines go (default: stderr).
        transient: the rich bar disappears when done.
    A context manager; ``close()`` ends a rich bar.
    """

    def __init__(self, description: str, total: int, mode: str = "auto", start: int = 0,
                 plain_every: int | None = None, emit: Callable[[str], None] | None = None,
                 transient: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"progress must be one of {', '.join(MODES)}, got {mode!r}")
        from rich.console import Console

        console = Console(stderr=True)
        if mode == "auto":
            mode = "rich" if console.is_terminal else "plain"
        self.description, self.total, self.start, self.done = description, total, start, start
        self.mode = mode if total > 0 else "none"
        self.plain_every = max(1, plain_every or total // 10)
        self.emit = emit or _stderr_line
        self._started = time.perf_counter()
        self._rich = None
        if self.mode == "rich":
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
                                      console=console, transient=transient)
            self._task = self._rich.add_task(description, total=total, completed=start, stats="")
            self._rich.start()

    @property
    def elapsed(self) -> float:
        """Seconds since the display started."""
        return time.perf_counter() - self._started

    def advance(self, n: int = 1, stats: str = "") -> None:
        """``n`` more items done; ``stats`` (e.g. running loss) shown next to the count."""
        self.done += n
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done, stats=stats)
        elif self.mode == "plain" and (self.done % self.plain_every == 0 or self.done == self.total):
            elapsed = self.elapsed
            eta = (self.total - self.done) * elapsed / max(self.done - self.start, 1)
            text = f" {stats}" if stats else ""
            self.emit(f"{self.description}: {self.done}/{self.total}{text} ({elapsed:.0f} s, "
                      f"eta {format_eta(eta)})")

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

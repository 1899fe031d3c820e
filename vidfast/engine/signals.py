"""Stop requests: Ctrl-C, SIGTERM or the preemption signal (``runtime.preempt_signal``, SIGUSR1 by default)
ask a training loop to stop after its current step (and checkpoint); a second Ctrl-C aborts at once, a second
SIGTERM or preemption signal changes nothing (the checkpoint under way finishes or, killed, is never seen)."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopRequest:
    """Handlers of SIGINT, SIGTERM and ``preempt_signal`` that ask the loop to stop after the current step.

    ``signals`` are the numbers handled: the loader's workers ignore them (the main process ends the
    workers), so a signal sent to the whole process group, as SLURM and ``timeout`` do, stops the run the
    same way as one sent to the main process alone.
    """

    def __init__(self, preempt_signal: str = "SIGUSR1") -> None:
        self.requested: str | None = None
        self.signals = tuple(
            dict.fromkeys((signal.SIGINT, signal.SIGTERM, signal.Signals[preempt_signal]))
        )
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.requested is None:
            self.requested = signal.Signals(signum).name

    @property
    def preempted(self) -> bool:
        """The stop came from a signal other than Ctrl-C (preemption, time limit, ``kill``)."""
        return self.requested not in (None, "SIGINT")

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


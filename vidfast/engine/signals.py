"""Stop requests: Ctrl-C or SIGTERM ask a training loop to stop after its current step (and checkpoint);
a second Ctrl-C aborts at once."""

from __future__ import annotations

import signal
import threading
from typing import Any


class StopRequest:
    """SIGINT/SIGTERM handlers that ask the loop to stop after the current step (a second Ctrl-C aborts)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

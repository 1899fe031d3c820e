"""The ``vidfast`` command line with fault-injection hooks, as the fault tests run it under ``torchrun``.

Environment (all optional; files go to ``VF_MARKERS``):
- ``VF_KILL=RANK:STEP``: that rank SIGKILLs itself after optimizer step STEP, once per job (a file says so).
- ``VF_HOLD=STEP``: after step STEP every rank writes ``at-STEP-rankR`` (its pid and ``VF_AGENT`` inside) and
  waits until it has received a stop signal or the file ``release`` exists (the test sends or writes it), so
  that what the test does lands on a known step.
- ``VF_KILL_IN_WRITE=N``: the N-th checkpoint write of rank 0 SIGKILLs its process half-way (a grace period
  shorter than a checkpoint write).
Every rank writes ``exit-rankR-ATTEMPT`` with its exit code (ATTEMPT: ``TORCHELASTIC_RESTART_COUNT``).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from pathlib import Path

import torch
from vidfast_cli.app import app

import vidfast.engine
from vidfast.engine.signals import StopRequest

MARKERS = Path(os.environ.get("VF_MARKERS", "."))
RANK = int(os.environ.get("RANK", "0"))
ATTEMPT = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
HOLD_DEADLINE_S = 120.0
received: list[str] = []


def _write(name: str, text: str) -> None:
    tmp = MARKERS / f".{name}.tmp"
    tmp.write_text(text)
    tmp.replace(MARKERS / name)


def _on_step(event) -> None:
    kill = os.environ.get("VF_KILL")
    if kill:
        rank, step = (int(v) for v in kill.split(":"))
        once = MARKERS / "killed"
        if rank == RANK and event.step == step and not once.exists():
            once.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    hold = os.environ.get("VF_HOLD")
    if hold and event.step == int(hold):
        _write(f"at-{event.step}-rank{RANK}", f"{os.getpid()} {os.environ.get('VF_AGENT', '-')}")
        deadline = time.monotonic() + HOLD_DEADLINE_S
        while not (received or (MARKERS / "release").exists()) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling for the signal or the file, bounded


def _record_signal(handle):
    @functools.wraps(handle)
    def wrapper(self, signum, frame):
        received.append(signal.Signals(signum).name)
        return handle(self, signum, frame)

    return wrapper


def _killed_in_write(save, n: int):
    calls = {"n": 0}

    @functools.wraps(save)
    def wrapper(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            f.write(b"PK\x03\x04 half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return save(obj, f, *args, **kwargs)

    return wrapper


def main() -> None:
    StopRequest._handle = _record_signal(StopRequest._handle)
    if os.environ.get("VF_KILL_IN_WRITE"):
        torch.save = _killed_in_write(torch.save, int(os.environ["VF_KILL_IN_WRITE"]))
    fit = vidfast.engine.fit
    vidfast.engine.fit = lambda cfg: fit(cfg, callbacks=[_on_step])
    code = 0
    try:
        app(prog_name="vidfast")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    _write(f"exit-rank{RANK}-{ATTEMPT}", str(code))
    sys.exit(code)


if __name__ == "__main__":
    main()

"""Measurements that are expensive to repeat, kept per machine in append-only JSON-lines files.

Directory: ``$VIDFAST_CACHE_DIR``, else ``$XDG_CACHE_HOME/vidfast``, else ``~/.cache/vidfast``. A record is
appended with one ``write`` (several processes, e.g. DDP ranks, may append at once); the last record of a key
wins. Deleting the files makes vidfast measure again. An unwritable directory only costs the re-measuring.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch


def cache_dir() -> Path:
    """The directory of vidfast's measurement caches (not created here)."""
    if os.environ.get("VIDFAST_CACHE_DIR"):
        return Path(os.environ["VIDFAST_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vidfast"


class JsonlStore:
    """``cache_dir()/<name>.probe-cache.jsonl``: records ``{"key": str, ...}``, the last per key wins."""

    def __init__(self, name: str) -> None:
        self.path = cache_dir() / f"{name}.probe-cache.jsonl"

    def read(self) -> dict[str, dict[str, Any]]:
        """Key -> last record (lines that do not parse are ignored)."""
        records: dict[str, dict[str, Any]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return records
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                records[record["key"]] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (silently skipped where the directory cannot be written)."""
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            return
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_fingerprint(device: torch.device) -> str:
    """What a kernel measurement depends on besides its shapes: torch build, processor, instruction set."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        hardware = f"{torch.cuda.get_device_name(index)} sm{major}{minor} cuda {torch.version.cuda} " \
                   f"cudnn {torch.backends.cudnn.version()}"
    else:
        hardware = f"{cpu_name()} {torch.backends.cpu.get_cpu_capability()}"
    return f"torch {torch.__version__} | {hardware}"

"""The study's one cache: every finished piece of work (a pretraining's summary, a cell's selection curves, a
cell) is a JSON file under the study's folder, written atomically once the work is done, and read back
instead of redoing the work. A killed study continues from the files it finds; a file exists only for work
that finished."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Cache:
    """JSON results under ``root``, by relative name (``"aligned/pretrain/st_puzzle/seed0"``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    def get(self, name: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The cached result ``name``, or ``compute()``'s, written atomically before it is returned."""
        path = self.path(name)
        if path.exists():
            return json.loads(path.read_text())
        result = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(result, indent=1))
        partial.replace(path)
        return result

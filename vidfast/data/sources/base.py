"""Dataset sources: turn a dataset on disk (+ its official annotation files) into manifest candidates.

Each source returns a :class:`Listing`: entries (absolute path, label, split, optional segment) and the
class names. Nothing is probed here; an entry the source already knows to be unusable (a listed clip missing
on disk, an empty segment) carries a ``reason`` and becomes a ``bad`` manifest row.

Splits: ``train``, ``val``, ``test``, ``unused``. The held-out part of the official UCF-101 / HMDB-51 splits
is ``test``; the ``validation`` subset of Kinetics / ActivityNet / the CVPR 2018 JSON files is ``val``.

This module holds the pieces the layouts share and the registry: each layout is a module of this package
whose listing function carries :func:`register_source` (and ``__init__.py`` imports it: one line).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vidfast.errors import DataError

VIDEO_SUFFIXES: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".flv", ".3gp", ".mpg", ".mpeg", ".ogv", ".wmv", ".ts"}
)


#: subset names of the ActivityNet / CVPR 2018 JSON files and of the Kinetics CSVs -> manifest split
SUBSETS: dict[str, str] = {
    "training": "train", "train": "train",
    "validation": "val", "validate": "val", "val": "val", "valid": "val",
    "testing": "test", "test": "test",
}


@dataclass
class SourceEntry:
    """One candidate manifest row: ``path`` absolute; ``label`` -1 where unknown; ``start``/``end`` seconds
    of a trimmed segment; ``reason`` non-empty when the entry is known to be bad before probing."""

    path: str
    label: int
    label_name: str
    split: str
    start: float | None = None
    end: float | None = None
    reason: str = ""


@dataclass
class Listing:
    """What a source found: its entries (sorted) and the class names (index = label)."""

    entries: list[SourceEntry]
    class_names: list[str]


#: a layout's listing: function(root, annotations, split) -> Listing
ListSource = Callable[[Path, Path | None, int], Listing]
#: source name -> its listing function, filled by :func:`register_source`
SOURCES: dict[str, ListSource] = {}


def register_source(name: str) -> Callable[[ListSource], ListSource]:
    """Decorator: register a layout's listing function as source ``name``."""
    def register(function: ListSource) -> ListSource:
        SOURCES[name] = function
        return function

    return register


def _require(path: Path, what: str, is_kind: Callable[[Path], bool], kind: str) -> Path:
    """``path`` if it exists and ``is_kind``; else a one-line DataError naming ``what``."""
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if not is_kind(path):
        raise DataError(f"{what} must be {kind}: {path}")
    return path


def require_dir(path: Path, what: str) -> Path:
    return _require(path, what, Path.is_dir, "a folder")


def require_file(path: Path, what: str) -> Path:
    return _require(path, what, Path.is_file, "a file")


def visible(path: Path) -> bool:
    return not path.name.startswith(".")


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based numbers (CRLF or LF line ends)."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text annotation file") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def check_split(split: int) -> int:
    if split not in (1, 2, 3):
        raise ValueError(f"--split must be 1, 2 or 3, got {split}")
    return split


def sorted_entries(entries: list[SourceEntry]) -> list[SourceEntry]:
    return sorted(entries, key=lambda e: (e.path, e.start if e.start is not None else -1.0))


def index_files(root: Path, keep: Callable[[Path], bool]) -> dict[str, list[Path]]:
    """Every file under ``root`` that ``keep`` accepts, by stem (one walk for the whole dataset)."""
    index: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if not filename.startswith(".") and keep(path):
                index.setdefault(path.stem, []).append(path)
    return index


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def read_json(path: Path, what: str) -> dict:
    require_file(path, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a JSON {what} ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise DataError(f"{path} is not a {what}: it has no 'database' object")
    return data


def subset(path: Path, video_id: str, info: object) -> str:
    subset = info.get("subset") if isinstance(info, dict) else None
    if not isinstance(subset, str) or subset.lower() not in SUBSETS:
        raise DataError(f"{path}: video {video_id!r} has no valid subset (training/validation/testing)")
    return SUBSETS[subset.lower()]


def list_source(
    source: str, root: str | Path, annotations: str | Path | None = None, split: int = 1
) -> Listing:
    """Run the named source (one of :data:`SOURCES`)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    return SOURCES[source](Path(root).expanduser().absolute(),
                           None if annotations is None else Path(annotations).expanduser().absolute(), split)

"""The ``folder`` layout: ``ROOT/<class>/<video or frame folder>``."""

from __future__ import annotations

from pathlib import Path

from vidfast.data.sources.base import (
    Listing,
    SourceEntry,
    register_source,
    require_dir,
    sorted_entries,
    visible,
)
from vidfast.errors import DataError


@register_source("folder")
def list_folder(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """``ROOT/<class>/<video>``: every visible file (or frame folder) of a class folder; all ``train``."""
    if annotations is not None:
        raise ValueError("--annotations is not used by the folder source (classes are the folder names)")
    root = require_dir(root, "dataset root")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and visible(p))
    if not classes:
        raise DataError(f"no class folders in {root} (the folder source expects ROOT/<class>/<video>)")
    entries = [
        SourceEntry(str(item), label, name, "train")
        for label, name in enumerate(classes)
        for item in sorted((root / name).iterdir())
        if visible(item)
    ]
    return Listing(sorted_entries(entries), classes)

"""The ``hmdb51`` layout: HMDB-51 videos with the official ``testTrainMulti_7030_splits`` files."""

from __future__ import annotations

from pathlib import Path

from vidfast.data.sources.base import (
    Listing,
    SourceEntry,
    check_split,
    read_lines,
    register_source,
    require_dir,
    sorted_entries,
)
from vidfast.errors import DataError

_HMDB_FLAGS = {"0": "unused", "1": "train", "2": "test"}


def _hmdb51_annotation_dir(root: Path, annotations: Path | None) -> Path:
    if annotations is not None:
        if annotations.is_file():
            raise DataError(f"hmdb51 --annotations must be the testTrainMulti_7030_splits folder, "
                            f"not a file: {annotations}")
        return require_dir(annotations, "hmdb51 annotation folder")
    for candidate in (root / "testTrainMulti_7030_splits", root.parent / "testTrainMulti_7030_splits"):
        if candidate.is_dir():
            return candidate
    raise DataError(f"hmdb51 needs --annotations: the testTrainMulti_7030_splits folder (not found in or "
                    f"beside {root})")


@register_source("hmdb51")
def list_hmdb51(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """HMDB-51: ``ROOT/<class>/<video>.avi`` with the official ``<class>_test_split<K>.txt`` files (lines
    ``<video>.avi <0|1|2>``: 1 train, 2 test, 0 unused)."""
    root = require_dir(root, "dataset root")
    folder = _hmdb51_annotation_dir(root, annotations)
    split = check_split(split)
    suffix = f"_test_split{split}.txt"
    split_files = sorted(p for p in folder.iterdir() if p.name.endswith(suffix))
    if not split_files:
        raise DataError(f"no <class>{suffix} files in {folder} "
                        f"(expected the testTrainMulti_7030_splits folder)")
    class_names = sorted(p.name[: -len(suffix)] for p in split_files)
    entries: list[SourceEntry] = []
    for split_file in split_files:
        name = split_file.name[: -len(suffix)]
        label = class_names.index(name)
        for line_no, line in read_lines(split_file):
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or parts[1] not in _HMDB_FLAGS:
                raise DataError(f"{split_file}:{line_no}: expected '<video>.avi <0|1|2>', got {line!r}")
            path = root / name / parts[0]
            entries.append(SourceEntry(str(path), label, name, _HMDB_FLAGS[parts[1]],
                                       reason="" if path.exists() else "missing: listed video not on disk"))
    return Listing(sorted_entries(entries), class_names)

"""The ``ucf101`` layout: UCF-101 videos with the official ``ucfTrainTestlist`` files."""

from __future__ import annotations

import os
from pathlib import Path

from vidfast.data.sources.base import (
    Listing,
    SourceEntry,
    check_split,
    read_lines,
    register_source,
    require_dir,
    require_file,
    sorted_entries,
)
from vidfast.errors import DataError


class _CaseInsensitiveResolver:
    """Finds ``root/relative`` even where the letter case differs from the listing (UCF-101's list files say
    ``HandstandPushups/v_HandStandPushups_…`` where some copies differ in case)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listings: dict[Path, dict[str, str]] = {}

    def _lower_map(self, folder: Path) -> dict[str, str]:
        if folder not in self._listings:
            try:
                self._listings[folder] = {name.lower(): name for name in os.listdir(folder)}
            except OSError:
                self._listings[folder] = {}
        return self._listings[folder]

    def resolve(self, relative: str) -> Path:
        """The existing path matching ``relative`` (exact, then case-insensitively), else the exact one."""
        exact = self.root / relative
        if exact.exists():
            return exact
        current = self.root
        for part in Path(relative).parts:
            name = self._lower_map(current).get(part.lower())
            if name is None:
                return exact
            current = current / name
        return current


def _ucf101_annotation_dir(root: Path, annotations: Path | None) -> Path:
    if annotations is not None:
        if annotations.is_file():
            raise DataError(f"ucf101 --annotations must be the folder holding classInd.txt, not a file: "
                            f"{annotations}")
        folder = require_dir(annotations, "ucf101 annotation folder")
        if not (folder / "classInd.txt").is_file():
            raise DataError(f"classInd.txt not found in {folder} (expected the ucfTrainTestlist folder)")
        return folder
    for candidate in (root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist", root):
        if (candidate / "classInd.txt").is_file():
            return candidate
    raise DataError(f"ucf101 needs --annotations: the folder holding classInd.txt and trainlist0K.txt "
                    f"(not found in or beside {root})")


@register_source("ucf101")
def list_ucf101(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """UCF-101: ``ROOT/<Class>/v_<Class>_gXX_cYY.avi`` with the official ``classInd.txt``,
    ``trainlist0K.txt`` (``Class/v_….avi 1``) and ``testlist0K.txt`` (``Class/v_….avi``)."""
    root = require_dir(root, "dataset root")
    folder = _ucf101_annotation_dir(root, annotations)
    split = check_split(split)
    index_file = folder / "classInd.txt"
    class_ids: dict[int, str] = {}
    for line_no, line in read_lines(index_file):
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise DataError(f"{index_file}:{line_no}: expected '<index> <ClassName>', got {line!r}")
        class_ids[int(fields[0])] = fields[1]
    if sorted(class_ids) != list(range(1, len(class_ids) + 1)):
        raise DataError(f"{index_file}: class indices must run 1..N")
    class_names = [class_ids[i] for i in range(1, len(class_ids) + 1)]
    label_of = {name.lower(): i for i, name in enumerate(class_names)}
    resolver = _CaseInsensitiveResolver(root)
    entries: list[SourceEntry] = []
    for split_name, list_name in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        list_file = require_file(folder / list_name, "ucf101 split file")
        for line_no, line in read_lines(list_file):
            relative = line.split()[0].replace("\\", "/")
            class_dir = relative.split("/")[0]
            if "/" not in relative or class_dir.lower() not in label_of:
                raise DataError(f"{list_file}:{line_no}: {relative!r} is not '<Class>/<video>' of a class "
                                f"in classInd.txt")
            label = label_of[class_dir.lower()]
            path = resolver.resolve(relative)
            entries.append(SourceEntry(str(path), label, class_names[label], split_name,
                                       reason="" if path.exists() else "missing: listed video not on disk"))
    return Listing(sorted_entries(entries), class_names)

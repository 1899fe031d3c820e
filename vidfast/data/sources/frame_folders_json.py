"""The ``frame_folders_json`` layout: the CVPR 2018 code's (3D-ResNets) frame folders with its JSON annotation
file."""

from __future__ import annotations

from pathlib import Path

from vidfast.data.sources.base import (
    Listing,
    SourceEntry,
    read_json,
    register_source,
    require_dir,
    sorted_entries,
    subset,
)
from vidfast.errors import DataError


@register_source("frame_folders_json")
def list_frame_folders_json(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """JPEG frame folders ``ROOT/<label>/<id>/image_00001.jpg`` with the CVPR 2018 code's JSON (``labels``,
    ``database{id: {subset, annotations{label}}}``); unlabelled (test) videos live in ``ROOT/test/<id>``."""
    root = require_dir(root, "dataset root")
    if annotations is None:
        raise DataError("frame_folders_json needs --annotations: the 3D-ResNets code's JSON file "
                        "(e.g. ucf101_01.json)")
    data = read_json(annotations, "3D-ResNets annotation file")
    class_names = data.get("labels")
    if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
        raise DataError(f"{annotations} is not a 3D-ResNets annotation file: 'labels' must list names")
    label_of = {name: i for i, name in enumerate(class_names)}
    entries = []
    for video_id, info in data["database"].items():
        split_name = subset(annotations, video_id, info)
        label_name = str((info.get("annotations") or {}).get("label", ""))
        if label_name and label_name not in label_of:
            raise DataError(f"{annotations}: video {video_id!r} has label {label_name!r} not in 'labels'")
        candidates = [root / label_name / video_id] if label_name else [root / "test" / video_id,
                                                                         root / video_id]
        path = next((c for c in candidates if c.is_dir()), candidates[0])
        entries.append(SourceEntry(str(path), label_of.get(label_name, -1), label_name, split_name,
                                   reason="" if path.is_dir() else "missing: frame folder not on disk"))
    return Listing(sorted_entries(entries), list(class_names))

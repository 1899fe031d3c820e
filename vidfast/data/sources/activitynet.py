"""The ``activitynet`` layout: ActivityNet videos with the official JSON (trimmed segments)."""

from __future__ import annotations

from pathlib import Path

from vidfast.data.sources.base import (
    Listing,
    SourceEntry,
    index_files,
    is_video_file,
    read_json,
    register_source,
    require_dir,
    sorted_entries,
    subset,
)
from vidfast.errors import DataError


@register_source("activitynet")
def list_activitynet(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """ActivityNet: the official JSON (``database{id: {subset, duration, annotations[{segment: [s, e],
    label}]}}``) with videos ``ROOT/v_<id>.<ext>``: one row per annotated segment (``start``/``end`` seconds);
    an unannotated (test) video is one whole-video row with label -1."""
    root = require_dir(root, "dataset root")
    if annotations is None:
        raise DataError("activitynet needs --annotations: the official JSON file")
    database = read_json(annotations, "ActivityNet annotation file")["database"]
    labels: set[str] = set()
    for video_id, info in database.items():
        for ann in (info.get("annotations") or []) if isinstance(info, dict) else []:
            if not isinstance(ann, dict) or "label" not in ann or "segment" not in ann:
                raise DataError(f"{annotations}: video {video_id!r} has an annotation without label/segment")
            labels.add(str(ann["label"]))
    class_names = sorted(labels)
    label_of = {name: i for i, name in enumerate(class_names)}
    index = index_files(root, is_video_file)
    entries: list[SourceEntry] = []
    for video_id, info in database.items():
        split_name = subset(annotations, video_id, info)
        found = index.get(f"v_{video_id}") or index.get(video_id)
        path = str(found[0]) if found else str(root / f"v_{video_id}.mp4")
        missing = "" if found else "missing: video not on disk"
        segments = info.get("annotations") or []
        if not segments:
            entries.append(SourceEntry(path, -1, "", split_name, reason=missing))
        for ann in segments:
            try:
                start, end = (float(t) for t in ann["segment"])
            except (TypeError, ValueError):
                raise DataError(f"{annotations}: video {video_id!r} has a segment that is not [start, end]") \
                    from None
            reason = missing or ("" if end > start >= 0 else f"bad segment: [{start}, {end}]")
            entries.append(SourceEntry(path, label_of[str(ann["label"])], str(ann["label"]), split_name,
                                       start=start, end=end, reason=reason))
    return Listing(sorted_entries(entries), class_names)

"""The ``kinetics`` layout: Kinetics clips with the official CSV files."""

from __future__ import annotations

import csv
from pathlib import Path

from vidfast.data.sources.base import (
    SUBSETS,
    Listing,
    SourceEntry,
    index_files,
    is_video_file,
    register_source,
    require_dir,
    require_file,
    sorted_entries,
    visible,
)
from vidfast.errors import DataError


def _csv_files(annotations: Path) -> list[Path]:
    if annotations.is_dir():
        files = sorted(p for p in annotations.iterdir() if p.suffix.lower() == ".csv" and visible(p))
        if not files:
            raise DataError(f"no .csv files in the kinetics annotation folder {annotations}")
        return files
    return [require_file(annotations, "kinetics annotation CSV")]


def _split_from_name(name: str) -> str | None:
    lowered = name.lower()
    for key in ("train", "val", "test"):
        if key in lowered:
            return SUBSETS[key]
    return None


@register_source("kinetics")
def list_kinetics(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """Kinetics: the official CSVs (``label,youtube_id,time_start,time_end,split``; a test CSV may lack
    ``label``), a file or a folder of them, with clips
    ``[ROOT/<split>]/<label>/<id>_<start:06d>_<end:06d>.mp4`` (labels with spaces or underscores; any video
    suffix). Clips not on disk are ``missing`` rows."""
    root = require_dir(root, "dataset root")
    if annotations is None:
        raise DataError("kinetics needs --annotations: the official CSV file (or a folder of them)")
    records: list[tuple[str, str, str, str]] = []  # (label, key, youtube_id, split)
    for csv_file in _csv_files(annotations):
        records.extend(_read_kinetics_csv(csv_file))
    class_names = sorted({label for label, *_ in records if label})
    label_of = {name: i for i, name in enumerate(class_names)}
    index = index_files(root, is_video_file)
    entries = []
    for label_name, key, youtube_id, split_name in records:
        path = _pick_clip(index.get(key) or index.get(youtube_id) or [], label_name, split_name)
        label = label_of.get(label_name, -1)
        if path is None:
            expected = root / split_name / (label_name or "test") / f"{key}.mp4"
            entries.append(SourceEntry(str(expected), label, label_name, split_name,
                                       reason="missing: clip not on disk"))
        else:
            entries.append(SourceEntry(str(path), label, label_name, split_name))
    return Listing(sorted_entries(entries), class_names)


def _read_kinetics_csv(csv_file: Path) -> list[tuple[str, str, str, str]]:
    try:
        with open(csv_file, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = {c.strip() for c in reader.fieldnames or []}
            needed = {"youtube_id", "time_start", "time_end"}
            if not needed <= columns:
                raise DataError(f"{csv_file} is not a Kinetics CSV: it needs the columns label,youtube_id,"
                                f"time_start,time_end,split (has {','.join(sorted(columns))})")
            default_split = _split_from_name(csv_file.name)
            out = []
            for line_no, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                try:
                    start, end = int(float(row["time_start"])), int(float(row["time_end"]))
                except ValueError:
                    raise DataError(f"{csv_file}:{line_no}: time_start/time_end must be numbers") from None
                split_name = SUBSETS.get(row.get("split", "").lower()) or default_split
                if split_name is None:
                    raise DataError(f"{csv_file}:{line_no}: unknown split {row.get('split')!r} "
                                    f"(expected train, val or test)")
                youtube_id = row["youtube_id"]
                key = f"{youtube_id}_{start:06d}_{end:06d}"
                out.append((row.get("label", ""), key, youtube_id, split_name))
            return out
    except UnicodeDecodeError:
        raise DataError(f"{csv_file} is not a text CSV file") from None
    except csv.Error as exc:
        raise DataError(f"{csv_file}: malformed CSV ({exc})") from None


def _pick_clip(candidates: list[Path], label_name: str, split_name: str) -> Path | None:
    """Among files with the clip's name, prefer the one in its label's folder, then in its split's folder."""
    if not candidates:
        return None
    label_dirs = {label_name, label_name.replace(" ", "_")}

    def score(path: Path) -> tuple[int, int, str]:
        in_label = path.parent.name in label_dirs
        in_split = any(SUBSETS.get(part.lower()) == split_name for part in path.parts[-4:-1])
        return (-int(in_label), -int(in_split), str(path))

    return min(candidates, key=score)

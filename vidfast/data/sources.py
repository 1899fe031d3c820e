"""Dataset sources: turn a dataset on disk (+ its official annotation files) into manifest candidates.

Each source returns a :class:`Listing`: entries (absolute path, label, split, optional segment) and the
class names. Nothing is probed here; an entry the source already knows to be unusable (a listed clip missing
on disk, an empty segment) carries a ``reason`` and becomes a ``bad`` manifest row.

Splits: ``train``, ``val``, ``test``, ``unused``. The held-out part of the official UCF-101 / HMDB-51 splits
is ``test``; the ``validation`` subset of Kinetics / ActivityNet / the CVPR 2018 JSON files is ``val``.
"""

from __future__ import annotations

import csv
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


def _require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if not path.is_dir():
        raise DataError(f"{what} must be a folder: {path}")
    return path


def _require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if not path.is_file():
        raise DataError(f"{what} must be a file: {path}")
    return path


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based numbers (CRLF or LF line ends)."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text annotation file") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _check_split(split: int) -> int:
    if split not in (1, 2, 3):
        raise ValueError(f"--split must be 1, 2 or 3, got {split}")
    return split


def _sorted_entries(entries: list[SourceEntry]) -> list[SourceEntry]:
    return sorted(entries, key=lambda e: (e.path, e.start if e.start is not None else -1.0))


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


def list_folder(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """``ROOT/<class>/<video>``: every visible file (or frame folder) of a class folder; all ``train``."""
    if annotations is not None:
        raise ValueError("--annotations is not used by the folder source (classes are the folder names)")
    root = _require_dir(root, "dataset root")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))
    if not classes:
        raise DataError(f"no class folders in {root} (the folder source expects ROOT/<class>/<video>)")
    entries = [
        SourceEntry(str(item), label, name, "train")
        for label, name in enumerate(classes)
        for item in sorted((root / name).iterdir())
        if _visible(item)
    ]
    return Listing(_sorted_entries(entries), classes)


def _ucf101_annotation_dir(root: Path, annotations: Path | None) -> Path:
    if annotations is not None:
        if annotations.is_file():
            raise DataError(f"ucf101 --annotations must be the folder holding classInd.txt, not a file: "
                            f"{annotations}")
        folder = _require_dir(annotations, "ucf101 annotation folder")
        if not (folder / "classInd.txt").is_file():
            raise DataError(f"classInd.txt not found in {folder} (expected the ucfTrainTestlist folder)")
        return folder
    for candidate in (root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist", root):
        if (candidate / "classInd.txt").is_file():
            return candidate
    raise DataError(f"ucf101 needs --annotations: the folder holding classInd.txt and trainlist0K.txt "
                    f"(not found in or beside {root})")


def list_ucf101(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """UCF-101: ``ROOT/<Class>/v_<Class>_gXX_cYY.avi`` with the official ``classInd.txt``,
    ``trainlist0K.txt`` (``Class/v_….avi 1``) and ``testlist0K.txt`` (``Class/v_….avi``)."""
    root = _require_dir(root, "dataset root")
    folder = _ucf101_annotation_dir(root, annotations)
    split = _check_split(split)
    index_file = folder / "classInd.txt"
    class_ids: dict[int, str] = {}
    for line_no, line in _read_lines(index_file):
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
        list_file = _require_file(folder / list_name, "ucf101 split file")
        for line_no, line in _read_lines(list_file):
            relative = line.split()[0].replace("\\", "/")
            class_dir = relative.split("/")[0]
            if "/" not in relative or class_dir.lower() not in label_of:
                raise DataError(f"{list_file}:{line_no}: {relative!r} is not '<Class>/<video>' of a class "
                                f"in classInd.txt")
            label = label_of[class_dir.lower()]
            path = resolver.resolve(relative)
            entries.append(SourceEntry(str(path), label, class_names[label], split_name,
                                       reason="" if path.exists() else "missing: listed video not on disk"))
    return Listing(_sorted_entries(entries), class_names)


_HMDB_FLAGS = {"0": "unused", "1": "train", "2": "test"}


def _hmdb51_annotation_dir(root: Path, annotations: Path | None) -> Path:
    if annotations is not None:
        if annotations.is_file():
            raise DataError(f"hmdb51 --annotations must be the testTrainMulti_7030_splits folder, "
                            f"not a file: {annotations}")
        return _require_dir(annotations, "hmdb51 annotation folder")
    for candidate in (root / "testTrainMulti_7030_splits", root.parent / "testTrainMulti_7030_splits"):
        if candidate.is_dir():
            return candidate
    raise DataError(f"hmdb51 needs --annotations: the testTrainMulti_7030_splits folder (not found in or "
                    f"beside {root})")


def list_hmdb51(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """HMDB-51: ``ROOT/<class>/<video>.avi`` with the official ``<class>_test_split<K>.txt`` files (lines
    ``<video>.avi <0|1|2>``: 1 train, 2 test, 0 unused)."""
    root = _require_dir(root, "dataset root")
    folder = _hmdb51_annotation_dir(root, annotations)
    split = _check_split(split)
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
        for line_no, line in _read_lines(split_file):
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or parts[1] not in _HMDB_FLAGS:
                raise DataError(f"{split_file}:{line_no}: expected '<video>.avi <0|1|2>', got {line!r}")
            path = root / name / parts[0]
            entries.append(SourceEntry(str(path), label, name, _HMDB_FLAGS[parts[1]],
                                       reason="" if path.exists() else "missing: listed video not on disk"))
    return Listing(_sorted_entries(entries), class_names)


def _index_files(root: Path, keep: Callable[[Path], bool]) -> dict[str, list[Path]]:
    """Every file under ``root`` that ``keep`` accepts, by stem (one walk for the whole dataset)."""
    index: dict[str, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if not filename.startswith(".") and keep(path):
                index.setdefault(path.stem, []).append(path)
    return index


def _is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _csv_files(annotations: Path) -> list[Path]:
    if annotations.is_dir():
        files = sorted(p for p in annotations.iterdir() if p.suffix.lower() == ".csv" and _visible(p))
        if not files:
            raise DataError(f"no .csv files in the kinetics annotation folder {annotations}")
        return files
    return [_require_file(annotations, "kinetics annotation CSV")]


def _split_from_name(name: str) -> str | None:
    lowered = name.lower()
    for key in ("train", "val", "test"):
        if key in lowered:
            return SUBSETS[key]
    return None


def list_kinetics(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """Kinetics: the official CSVs (``label,youtube_id,time_start,time_end,split``; a test CSV may lack
    ``label``), a file or a folder of them, with clips
    ``[ROOT/<split>]/<label>/<id>_<start:06d>_<end:06d>.mp4`` (labels with spaces or underscores; any video
    suffix). Clips not on disk are ``missing`` rows."""
    root = _require_dir(root, "dataset root")
    if annotations is None:
        raise DataError("kinetics needs --annotations: the official CSV file (or a folder of them)")
    records: list[tuple[str, str, str, str]] = []  # (label, key, youtube_id, split)
    for csv_file in _csv_files(annotations):
        records.extend(_read_kinetics_csv(csv_file))
    class_names = sorted({label for label, *_ in records if label})
    label_of = {name: i for i, name in enumerate(class_names)}
    index = _index_files(root, _is_video_file)
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
    return Listing(_sorted_entries(entries), class_names)


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


def _read_json(path: Path, what: str) -> dict:
    _require_file(path, what)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not a JSON {what} ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise DataError(f"{path} is not a {what}: it has no 'database' object")
    return data


def _subset(path: Path, video_id: str, info: object) -> str:
    subset = info.get("subset") if isinstance(info, dict) else None
    if not isinstance(subset, str) or subset.lower() not in SUBSETS:
        raise DataError(f"{path}: video {video_id!r} has no valid subset (training/validation/testing)")
    return SUBSETS[subset.lower()]


def list_activitynet(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """ActivityNet: the official JSON (``database{id: {subset, duration, annotations[{segment: [s, e],
    label}]}}``) with videos ``ROOT/v_<id>.<ext>``: one row per annotated segment (``start``/``end`` seconds);
    an unannotated (test) video is one whole-video row with label -1."""
    root = _require_dir(root, "dataset root")
    if annotations is None:
        raise DataError("activitynet needs --annotations: the official JSON file")
    database = _read_json(annotations, "ActivityNet annotation file")["database"]
    labels: set[str] = set()
    for video_id, info in database.items():
        for ann in (info.get("annotations") or []) if isinstance(info, dict) else []:
            if not isinstance(ann, dict) or "label" not in ann or "segment" not in ann:
                raise DataError(f"{annotations}: video {video_id!r} has an annotation without label/segment")
            labels.add(str(ann["label"]))
    class_names = sorted(labels)
    label_of = {name: i for i, name in enumerate(class_names)}
    index = _index_files(root, _is_video_file)
    entries: list[SourceEntry] = []
    for video_id, info in database.items():
        split_name = _subset(annotations, video_id, info)
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
    return Listing(_sorted_entries(entries), class_names)


def list_frames(root: Path, annotations: Path | None = None, split: int = 1) -> Listing:
    """JPEG frame folders ``ROOT/<label>/<id>/image_00001.jpg`` with the CVPR 2018 code's JSON (``labels``,
    ``database{id: {subset, annotations{label}}}``); unlabelled (test) videos live in ``ROOT/test/<id>``."""
    root = _require_dir(root, "dataset root")
    if annotations is None:
        raise DataError("frames needs --annotations: the 3D-ResNets code's JSON file (e.g. ucf101_01.json)")
    data = _read_json(annotations, "3D-ResNets annotation file")
    class_names = data.get("labels")
    if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
        raise DataError(f"{annotations} is not a 3D-ResNets annotation file: 'labels' must list names")
    label_of = {name: i for i, name in enumerate(class_names)}
    entries = []
    for video_id, info in data["database"].items():
        split_name = _subset(annotations, video_id, info)
        label_name = str((info.get("annotations") or {}).get("label", ""))
        if label_name and label_name not in label_of:
            raise DataError(f"{annotations}: video {video_id!r} has label {label_name!r} not in 'labels'")
        candidates = [root / label_name / video_id] if label_name else [root / "test" / video_id,
                                                                         root / video_id]
        path = next((c for c in candidates if c.is_dir()), candidates[0])
        entries.append(SourceEntry(str(path), label_of.get(label_name, -1), label_name, split_name,
                                   reason="" if path.is_dir() else "missing: frame folder not on disk"))
    return Listing(_sorted_entries(entries), list(class_names))


#: source name -> function(root, annotations, split) -> Listing
SOURCES: dict[str, Callable[[Path, Path | None, int], Listing]] = {
    "folder": list_folder,
    "ucf101": list_ucf101,
    "hmdb51": list_hmdb51,
    "kinetics": list_kinetics,
    "activitynet": list_activitynet,
    "frames": list_frames,
}


def list_source(
    source: str, root: str | Path, annotations: str | Path | None = None, split: int = 1
) -> Listing:
    """Run the named source (one of :data:`SOURCES`)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    return SOURCES[source](Path(root).expanduser().absolute(),
                           None if annotations is None else Path(annotations).expanduser().absolute(), split)

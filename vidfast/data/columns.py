"""A manifest's rows in columns, and the binary sidecar that keeps them beside the CSV.

:class:`ManifestColumns` holds one numpy array per numeric field (``split`` and ``status`` as small codes,
``start``/``end`` NaN where empty) and each text field as one UTF-8 buffer plus ``offsets`` ``[n + 1]``. It
is a ``Sequence[ManifestRow]``: ``columns[i]`` builds that one row on access, so a dataset of 300k videos
holds a handful of arrays instead of 300k Python objects, and DataLoader workers forked from it read the
arrays without copying them (no reference counts are touched per row).

The sidecar ``<manifest>.columns`` is written with the CSV (:func:`write_sidecar`) and memory-mapped on read
(:func:`load_sidecar`). The CSV stays the human-readable source: the sidecar records the CSV's size,
modification time and a hash of its first and last 64 KiB, and a CRC-32 of its own data; one that does not
match (stale, truncated, corrupt, or from another format version) is ignored with one log line, and the
caller re-reads the CSV. Row paths are kept as the CSV writes them (relative to the manifest's folder where
inside it) and resolved against the folder the manifest is read from, so a manifest moved with its folder
still resolves.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import os
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

logger = logging.getLogger("vidfast.data.manifest")

HEADER: tuple[str, ...] = (
    "path", "label", "label_name", "split", "start", "end",
    "num_frames", "fps", "width", "height", "status", "reason",
)
SPLITS: tuple[str, ...] = ("train", "val", "test", "unused")
STATUSES: tuple[str, ...] = ("ok", "bad")

#: numeric columns and their dtypes (``split``/``status``: index into SPLITS/STATUSES)
NUMERIC: dict[str, np.dtype] = {
    "label": np.dtype(np.int64), "split": np.dtype(np.uint8), "start": np.dtype(np.float64),
    "end": np.dtype(np.float64), "num_frames": np.dtype(np.int64), "fps": np.dtype(np.float64),
    "width": np.dtype(np.int32), "height": np.dtype(np.int32), "status": np.dtype(np.uint8),
}
#: text columns, each stored as ``<name>`` (uint8 UTF-8 buffer) and ``<name>_offsets`` (int64 ``[n + 1]``)
TEXT: tuple[str, ...] = ("path", "label_name", "reason")

SIDECAR_SUFFIX = ".columns"
_MAGIC = b"VFMCOLS1"
_VERSION = 1
_ALIGN = 64
_HASHED = 1 << 16


@dataclass
class ManifestRow:
    """One video, trimmed segment or frame folder of a dataset (fields: see :mod:`vidfast.data.manifest`)."""

    path: str
    label: int
    label_name: str
    split: str
    start: float | None
    end: float | None
    num_frames: int
    fps: float
    width: int
    height: int
    status: str
    reason: str

    @property
    def ok(self) -> bool:
        """True when the row can be used for training or evaluation."""
        return self.status == "ok"


def _text(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(buffer, offsets)`` of ``values``: uint8 UTF-8 bytes and int64 ``[n + 1]`` boundaries."""
    encoded = [v.encode("utf-8") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


class ManifestColumns(Sequence[ManifestRow]):
    """Rows in columns (see the module docstring), optionally a selection ``index`` of them.

    ``arrays``: the numeric columns ``[N]`` and the text buffers/offsets; ``root``: the folder relative row
    paths resolve against; ``class_names``: index = label.
    """

    def __init__(self, arrays: dict[str, np.ndarray], root: Path, class_names: list[str],
                 index: np.ndarray | None = None) -> None:
        self.arrays = arrays
        self.root = Path(root)
        self.class_names = class_names
        self.index = index
        self._root = str(self.root)

    @classmethod
    def from_rows(cls, rows: Sequence[ManifestRow], root: Path, class_names: list[str],
                  stored_paths: Sequence[str] | None = None) -> ManifestColumns:
        """Columns of ``rows``; ``stored_paths``: the paths as the CSV holds them (default: the rows')."""
        arrays: dict[str, np.ndarray] = {
            "label": np.fromiter((r.label for r in rows), np.int64, len(rows)),
            "split": np.fromiter((SPLITS.index(r.split) for r in rows), np.uint8, len(rows)),
            "start": np.fromiter((math.nan if r.start is None else r.start for r in rows), np.float64,
                                 len(rows)),
            "end": np.fromiter((math.nan if r.end is None else r.end for r in rows), np.float64, len(rows)),
            "num_frames": np.fromiter((r.num_frames for r in rows), np.int64, len(rows)),
            "fps": np.fromiter((r.fps for r in rows), np.float64, len(rows)),
            "width": np.fromiter((r.width for r in rows), np.int32, len(rows)),
            "height": np.fromiter((r.height for r in rows), np.int32, len(rows)),
            "status": np.fromiter((STATUSES.index(r.status) for r in rows), np.uint8, len(rows)),
        }
        texts = {"path": stored_paths if stored_paths is not None else [r.path for r in rows],
                 "label_name": [r.label_name for r in rows], "reason": [r.reason for r in rows]}
        for name, values in texts.items():
            arrays[name], arrays[f"{name}_offsets"] = _text(values)
        return cls(arrays, root, class_names)

    # -------------------------------------------------------------------------------------- access

    @property
    def total(self) -> int:
        """Rows of the whole manifest (ignoring the selection)."""
        return len(self.arrays["label"])

    def __len__(self) -> int:
        return self.total if self.index is None else len(self.index)

    def positions(self) -> np.ndarray:
        """The manifest rows (0-based CSV data lines) of this selection, int64 ``[n]``."""
        return np.arange(self.total, dtype=np.int64) if self.index is None else self.index

    def column(self, name: str) -> np.ndarray:
        """Numeric column ``name`` of this selection ``[n]`` (read-only view when not a selection)."""
        values = self.arrays[name]
        return values if self.index is None else values[self.index]

    def text(self, name: str, i: int) -> str:
        """Text field ``name`` of row ``i`` of this selection (a path as the CSV holds it)."""
        k = int(self.index[i]) if self.index is not None else i
        offsets = self.arrays[f"{name}_offsets"]
        return self.arrays[name][offsets[k]:offsets[k + 1]].tobytes().decode("utf-8")

    def path(self, i: int) -> str:
        """Absolute path of row ``i`` (a relative CSV path resolved against ``root``)."""
        return os.path.normpath(os.path.join(self._root, self.text("path", i)))

    def _row(self, i: int) -> ManifestRow:
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} out of range for {len(self)} rows")
        i %= len(self)
        k = int(self.index[i]) if self.index is not None else i
        a = self.arrays
        start, end = float(a["start"][k]), float(a["end"][k])
        return ManifestRow(
            path=self.path(i), label=int(a["label"][k]), label_name=self.text("label_name", i),
            split=SPLITS[a["split"][k]], start=None if math.isnan(start) else start,
            end=None if math.isnan(end) else end, num_frames=int(a["num_frames"][k]), fps=float(a["fps"][k]),
            width=int(a["width"][k]), height=int(a["height"][k]), status=STATUSES[a["status"][k]],
            reason=self.text("reason", i),
        )

    @overload
    def __getitem__(self, i: int) -> ManifestRow: ...

    @overload
    def __getitem__(self, i: slice) -> list[ManifestRow]: ...

    def __getitem__(self, i: int | slice) -> ManifestRow | list[ManifestRow]:
        if isinstance(i, slice):
            return [self._row(k) for k in range(*i.indices(len(self)))]
        return self._row(int(i))

    def __iter__(self) -> Iterator[ManifestRow]:
        return (self._row(i) for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def select(self, split: str | None = None, only_ok: bool = True) -> ManifestColumns:
        """The rows of ``split`` (all when None), only the ``ok`` ones unless ``only_ok`` is False, as a
        selection sharing these arrays."""
        keep = np.ones(self.total, dtype=bool)
        if split is not None:
            keep &= self.arrays["split"] == SPLITS.index(split)
        if only_ok:
            keep &= self.arrays["status"] == STATUSES.index("ok")
        index = np.flatnonzero(keep)
        if self.index is not None:
            index = self.index[np.isin(self.index, index)]
        return ManifestColumns(self.arrays, self.root, self.class_names, index.astype(np.int64))

    def counts(self) -> dict[str, Counter[str]]:
        """Per split (in order of first appearance), the number of rows per status."""
        splits, statuses = self.column("split"), self.column("status")
        codes, first = np.unique(splits, return_index=True)
        out: dict[str, Counter[str]] = {}
        for code in codes[np.argsort(first)].tolist():
            found, number = np.unique(statuses[splits == code], return_counts=True)
            out[SPLITS[code]] = Counter({STATUSES[s]: n for s, n in zip(found.tolist(), number.tolist(),
                                                                         strict=True)})
        return out


# ------------------------------------------------------------------------------------------ sidecar


def sidecar_path(csv_path: str | Path) -> Path:
    """The sidecar of a manifest CSV: ``<manifest>.columns`` beside it."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + SIDECAR_SUFFIX)


def csv_identity(csv_path: Path) -> dict[str, Any]:
    """What ties a sidecar to one version of its CSV: size, modification time and a hash of the first and last
    64 KiB (an edit that keeps the size and the time stamp is still caught where it touches either end)."""
    st = os.stat(csv_path)
    digest = hashlib.sha1()
    with open(csv_path, "rb") as f:
        digest.update(f.read(_HASHED))
        if st.st_size > _HASHED:
            f.seek(max(st.st_size - _HASHED, _HASHED))
            digest.update(f.read(_HASHED))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha1_ends": digest.hexdigest()}


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def write_sidecar(csv_path: str | Path, columns: ManifestColumns) -> Path | None:
    """Write the sidecar of ``csv_path`` (just written) holding ``columns``; None (and one log line) when the
    folder is not writable. Written to a temporary name and renamed: readers never see half a file."""
    csv_path = Path(csv_path)
    out = sidecar_path(csv_path)
    layout: dict[str, list[Any]] = {}
    offset = 0
    names = [*NUMERIC, *(n for t in TEXT for n in (t, f"{t}_offsets"))]
    for name in names:
        array = np.ascontiguousarray(columns.arrays[name])
        layout[name] = [array.dtype.str, offset, int(array.size)]
        offset = _aligned(offset + array.nbytes)
    data_size = offset
    crc = 0
    for name in names:
        crc = zlib.crc32(np.ascontiguousarray(columns.arrays[name]).tobytes(), crc)
    header = {
        "version": _VERSION, "rows": columns.total, "csv": csv_identity(csv_path),
        "class_names": columns.class_names, "layout": layout, "data_size": data_size, "crc32": crc,
    }
    encoded = json.dumps(header).encode("utf-8")
    data_start = _aligned(len(_MAGIC) + 8 + len(encoded))
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + len(encoded).to_bytes(8, "little") + encoded)
            for name in names:
                array = np.ascontiguousarray(columns.arrays[name])
                f.seek(data_start + layout[name][1])
                f.write(array.tobytes())
            f.truncate(data_start + data_size)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        logger.info("manifest %s: cannot write its columns sidecar (%s); reading the CSV each time",
                    csv_path, exc.strerror or exc)
        return None
    return out


class SidecarMismatch(Exception):
    """Why a sidecar cannot be used (stale, truncated, corrupt, foreign)."""


def load_sidecar(csv_path: str | Path, root: Path) -> ManifestColumns | None:
    """The columns of ``csv_path``'s sidecar, memory-mapped; None when there is none, and None with one log
    line when it does not match the CSV or is damaged (the caller then reads the CSV)."""
    csv_path = Path(csv_path)
    path = sidecar_path(csv_path)
    if not path.is_file():
        return None
    try:
        return _map(path, csv_path, root)
    except (SidecarMismatch, OSError, ValueError) as exc:
        logger.info("manifest %s: ignoring its columns sidecar (%s); reading the CSV", csv_path, exc)
        return None
    except (KeyError, TypeError) as exc:
        logger.info("manifest %s: ignoring its columns sidecar (malformed header: %s); reading the CSV",
                    csv_path, exc)
        return None


def _map(path: Path, csv_path: Path, root: Path) -> ManifestColumns:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < len(_MAGIC) + 8:
            raise SidecarMismatch(f"truncated: {size} bytes")
        view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if view[:len(_MAGIC)] != _MAGIC:
        raise SidecarMismatch("not a vidfast columns sidecar")
    length = int.from_bytes(view[len(_MAGIC):len(_MAGIC) + 8], "little")
    if len(_MAGIC) + 8 + length > size:
        raise SidecarMismatch(f"truncated: {size} bytes, the header alone needs {len(_MAGIC) + 8 + length}")
    try:
        header = json.loads(view[len(_MAGIC) + 8:len(_MAGIC) + 8 + length])
    except ValueError as exc:
        raise SidecarMismatch(f"unreadable header ({exc})") from None
    if header.get("version") != _VERSION:
        raise SidecarMismatch(f"format version {header.get('version')}, this vidfast reads {_VERSION}")
    if header["csv"] != csv_identity(csv_path):
        raise SidecarMismatch("stale: the CSV changed since the sidecar was written")
    data_start = _aligned(len(_MAGIC) + 8 + length)
    if data_start + header["data_size"] != size:
        raise SidecarMismatch(f"truncated: {size} of {data_start + header['data_size']} bytes")
    arrays: dict[str, np.ndarray] = {}
    crc = 0
    for name, (dtype, offset, count) in header["layout"].items():
        arrays[name] = np.frombuffer(view, dtype=np.dtype(dtype), count=count, offset=data_start + offset)
        crc = zlib.crc32(arrays[name], crc)  # also pulls every page into the cache before workers fork
    if crc != header["crc32"]:
        raise SidecarMismatch("corrupt: its data does not match its checksum")
    rows = header["rows"]
    if sorted(arrays) != sorted([*NUMERIC, *TEXT, *(f"{t}_offsets" for t in TEXT)]) or any(
        len(arrays[n]) != rows for n in NUMERIC
    ) or any(len(arrays[f"{t}_offsets"]) != rows + 1 or arrays[f"{t}_offsets"][-1] != len(arrays[t])
             for t in TEXT):
        raise SidecarMismatch("inconsistent column lengths")
    return ManifestColumns(arrays, root, list(header["class_names"]))

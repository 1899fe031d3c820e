"""Dataset manifests: one CSV row per video (or trimmed segment, or JPEG frame folder).

Header: ``path,label,label_name,split,start,end,num_frames,fps,width,height,status,reason``.

- ``path``: relative to the manifest's own folder, or absolute; :func:`read_manifest` resolves it to absolute.
- ``label``: class index, ``-1`` where unknown (a test set without labels); ``label_name`` the class name.
- ``split``: one of ``train``, ``val``, ``test``, ``unused``.
- ``start``, ``end``: seconds of a trimmed segment (empty for a whole video).
- ``num_frames``, ``fps``, ``width``, ``height``: probed properties of the file at ``path`` (the whole video,
  even for a trimmed row; ``fps`` is 0 where unknown, e.g. for a JPEG frame folder).
- ``status``: ``ok`` or ``bad``; ``reason``: why a row is bad, ``"<category>: <detail>"``.

:func:`write_manifest` also writes the binary sidecar ``<manifest>.columns`` (:mod:`vidfast.data.columns`);
:func:`read_manifest` memory-maps it when it matches the CSV (300k rows in milliseconds instead of seconds)
and otherwise parses the CSV and rewrites it. The manifest then holds :class:`ManifestColumns`; ``rows``
(a list of :class:`ManifestRow`) is built only when asked for, and :meth:`Manifest.table` selects rows
without building them.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from vidfast.data import probe
from vidfast.data.columns import (
    HEADER,
    SPLITS,
    STATUSES,
    ManifestColumns,
    ManifestRow,
    load_sidecar,
    sidecar_path,
    write_sidecar,
)
from vidfast.data.sources import SourceEntry, list_source
from vidfast.errors import DataError

logger = logging.getLogger(__name__)


class Manifest:
    """The rows of a manifest, its class names (index = label) and the folder it was read from.

    ``columns`` (as :func:`read_manifest` gives them): the rows in columns; ``rows`` is then built from
    them on first access, as a list callers may change. :meth:`table` selects from the columns as long as
    ``rows`` has not been built (the loader never builds it: no Python object per row)."""

    def __init__(self, rows: Sequence[ManifestRow] | None = None, class_names: list[str] | None = None,
                 root: str | Path = ".", columns: ManifestColumns | None = None) -> None:
        if rows is None and columns is None:
            raise ValueError("a Manifest needs rows or columns")
        self._rows = None if rows is None else list(rows)
        self.columns = columns
        self.class_names = list(class_names or [])
        self.root = Path(root)

    @property
    def rows(self) -> list[ManifestRow]:
        """The rows as :class:`ManifestRow` objects (built from the columns on first access)."""
        if self._rows is None:
            assert self.columns is not None
            self._rows = list(self.columns)
        return self._rows

    @rows.setter
    def rows(self, rows: Sequence[ManifestRow]) -> None:
        self._rows = list(rows)

    def __repr__(self) -> str:
        rows = len(self.table(only_ok=False))
        return f"Manifest({rows} rows, {self.num_classes} classes, root={self.root})"

    def table(self, split: str | None = None, only_ok: bool = True) -> Sequence[ManifestRow]:
        """Rows of ``split`` (all splits when None), only the ``ok`` ones unless ``only_ok`` is False; a
        selection of the columns (no row objects built) while ``rows`` has not been built."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if self._rows is None and self.columns is not None:
            return self.columns.select(split, only_ok)
        return [r for r in self.rows if (split is None or r.split == split) and (r.ok or not only_ok)]

    def select(self, split: str | None = None, only_ok: bool = True) -> list[ManifestRow]:
        """:meth:`table` as a list of rows."""
        return list(self.table(split, only_ok))

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    def counts(self) -> dict[str, Counter[str]]:
        """Per split, the number of ``ok`` and ``bad`` rows (``{"train": Counter(ok=.., bad=..)}``)."""
        if self._rows is None and self.columns is not None:
            return self.columns.counts()
        out: dict[str, Counter[str]] = {}
        for row in self.rows:
            out.setdefault(row.split, Counter())[row.status] += 1
        return out


def class_names_of(rows: Sequence[ManifestRow]) -> list[str]:
    """Class names indexed by label, from the rows' ``label``/``label_name`` (rows with label -1 ignored).

    A label no row uses gets the name ``class_<index>``; one label with two names is a :class:`DataError`.
    """
    names: dict[int, str] = {}
    for row in rows:
        if row.label < 0:
            continue
        seen = names.setdefault(row.label, row.label_name)
        if seen != row.label_name:
            raise DataError(f"label {row.label} has two names: {seen!r} and {row.label_name!r}")
    if not names:
        return []
    return [names.get(i, f"class_{i}") for i in range(max(names) + 1)]


def _format_float(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def write_manifest(path: str | Path, rows: Sequence[ManifestRow]) -> Path:
    """Write ``rows`` to the CSV ``path`` (folders created) and its columns sidecar; return the CSV's path.

    Row paths inside the manifest's folder are written relative to it, others absolute; a relative row path is
    taken relative to the current directory. The file is written to a temporary name and then renamed, so an
    interrupted write never leaves a truncated manifest behind. Rows that :func:`read_manifest` would refuse
    get no sidecar (reading the CSV then names the bad line).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    tmp = path.with_name(path.name + ".tmp")
    stored = [_relative_to(Path(row.path), base) for row in rows]
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for row, row_path in zip(rows, stored, strict=True):
            writer.writerow([
                row_path, row.label, row.label_name, row.split,
                _format_float(row.start), _format_float(row.end), row.num_frames, _format_float(row.fps),
                row.width, row.height, row.status, row.reason,
            ])
    os.replace(tmp, path)
    try:
        for line_no, row in enumerate(rows, start=2):
            _check_row(row, f"{path}:{line_no}")
        columns = ManifestColumns.from_rows(rows, base, class_names_of(rows), stored)
    except (DataError, ValueError, TypeError):
        sidecar_path(path).unlink(missing_ok=True)
    else:
        write_sidecar(path, columns)
    return path


def _relative_to(path: Path, base: Path) -> str:
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(base).as_posix()
    except ValueError:
        return str(absolute)


def _parse_optional_float(text: str, column: str) -> float | None:
    if text.strip() == "":
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{column} must be finite")
    return value


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest CSV; row paths are resolved to absolute paths.

    Raises :class:`DataError` when the file is missing or malformed (wrong header, non-numeric fields, unknown
    split or status), naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    base = path.parent.resolve()
    columns = load_sidecar(path, base)
    if columns is not None:
        return Manifest(columns=columns, class_names=columns.class_names, root=base)
    rows: list[ManifestRow] = []
    stored: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(h.strip() for h in header) != HEADER:
                raise DataError(f"{path} is not a vidfast manifest: its header must be {','.join(HEADER)}")
            for line_no, record in enumerate(reader, start=2):
                if not record:
                    continue
                rows.append(_parse_row(record, base, f"{path}:{line_no}"))
                stored.append(record[0])
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a text CSV manifest ({exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    columns = ManifestColumns.from_rows(rows, base, class_names_of(rows), stored)
    if not sidecar_path(path).exists():
        logger.info("manifest %s: no columns sidecar; writing %s", path, sidecar_path(path).name)
    write_sidecar(path, columns)
    return Manifest(columns=columns, class_names=columns.class_names, root=base)


def _parse_row(record: list[str], base: Path, where: str) -> ManifestRow:
    if len(record) != len(HEADER):
        raise DataError(f"{where}: expected {len(HEADER)} fields, got {len(record)}")
    values = dict(zip(HEADER, record, strict=True))
    try:
        if not values["path"]:
            raise ValueError("path is empty")
        row = ManifestRow(
            path=os.path.normpath(base / values["path"]),
            label=int(values["label"]),
            label_name=values["label_name"],
            split=values["split"],
            start=_parse_optional_float(values["start"], "start"),
            end=_parse_optional_float(values["end"], "end"),
            num_frames=int(values["num_frames"] or 0),
            fps=float(values["fps"] or 0.0),
            width=int(values["width"] or 0),
            height=int(values["height"] or 0),
            status=values["status"],
            reason=values["reason"],
        )
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None
    _check_row(row, where)
    return row


def _check_row(row: ManifestRow, where: str) -> None:
    """DataError naming ``where`` unless ``row`` has a path, a known split and status, and a label >= -1."""
    if not row.path:
        raise DataError(f"{where}: path is empty")
    if row.split not in SPLITS:
        raise DataError(f"{where}: split must be one of {', '.join(SPLITS)}, got {row.split!r}")
    if row.status not in STATUSES:
        raise DataError(f"{where}: status must be ok or bad, got {row.status!r}")
    if row.label < -1:
        raise DataError(f"{where}: label must be >= -1, got {row.label}")
    for name in ("start", "end"):
        value = getattr(row, name)
        if value is not None and not math.isfinite(value):
            raise DataError(f"{where}: {name} must be finite")


def skipped_by_reason(rows: Sequence[ManifestRow]) -> Counter[str]:
    """How many ``bad`` rows there are per reason category (``missing``, ``truncated``, ...)."""
    if isinstance(rows, ManifestColumns):
        bad = np.flatnonzero(rows.column("status") != STATUSES.index("ok"))
        return Counter(probe.reason_category(rows.text("reason", int(i))) for i in bad)
    return Counter(probe.reason_category(r.reason) for r in rows if not r.ok)


def summarize(manifest: Manifest) -> list[str]:
    """Human-readable lines: rows per split and status, and the skipped rows counted by reason."""
    counts = manifest.counts()
    ok = sum(c["ok"] for c in counts.values())
    bad = sum(c["bad"] for c in counts.values())
    per_split = ", ".join(f"{s} {counts[s]['ok']}" for s in SPLITS if s in counts)
    everything = manifest.table(only_ok=False)
    lines = [f"{len(everything)} rows, {manifest.num_classes} classes: {ok} ok ({per_split}), {bad} bad"]
    reasons = skipped_by_reason(everything)
    if reasons:
        lines.append(f"skipped {bad}: " + ", ".join(f"{n} {why}" for why, n in reasons.most_common()))
    return lines


def _stratified_choice(
    labels: list[int], fraction: float, rng: np.random.Generator, keep_one: bool
) -> set[int]:
    """Positions drawn per label: ``n * fraction`` (rounded half up) of each label's ``n`` items; at least
    one per label when ``keep_one``, else at least one but never all of a label holding two or more."""
    by_label: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        by_label.setdefault(label, []).append(position)
    chosen: set[int] = set()
    for label in sorted(by_label):
        group = by_label[label]
        k = math.floor(len(group) * fraction + 0.5)
        k = max(k, 1) if keep_one else min(max(k, 1), len(group) - 1)
        chosen.update(int(i) for i in rng.permutation(group)[:k])
    return chosen


def keep_fraction(entries: list[SourceEntry], fraction: float | None, seed: int = 0) -> list[SourceEntry]:
    """Keep a stratified, seeded ``fraction`` of the ``train`` entries (at least one per class) and drop the
    other train entries; entries of other splits are kept."""
    if fraction is None:
        return list(entries)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    train = [i for i, e in enumerate(entries) if e.split == "train"]
    rng = np.random.default_rng([seed, 2])
    picked = _stratified_choice([entries[i].label for i in train], fraction, rng, keep_one=True)
    keep = {train[p] for p in picked}
    return [e for i, e in enumerate(entries) if e.split != "train" or i in keep]


def hold_out_val(rows: list[ManifestRow], val_fraction: float, seed: int = 0) -> list[ManifestRow]:
    """Move a stratified, seeded ``val_fraction`` of the usable (``ok``) ``train`` rows to ``val``: at
    least one per class holding two or more, never a whole class."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    rows = list(rows)
    if val_fraction == 0:
        return rows
    train = [i for i, r in enumerate(rows) if r.split == "train" and r.status == "ok"]
    rng = np.random.default_rng([seed, 1])
    picked = _stratified_choice([rows[i].label for i in train], val_fraction, rng, keep_one=False)
    for p in picked:
        rows[train[p]] = replace(rows[train[p]], split="val")
    return rows


class ProbeCache:
    """Probe results in a JSON-lines file, keyed by path + size + modification time, appended as they come in
    (so an interrupted indexing run resumes where it stopped)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict] = {}
        if path.is_file():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                        self.entries[record["path"]] = record
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # a line cut by an interruption
        self._file = None

    @staticmethod
    def key(path: str) -> tuple[int, int] | None:
        """(size, mtime_ns) of ``path``; None when it cannot be stat'ed (never cached)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def get(self, path: str) -> probe.ProbeResult | None:
        """The cached result for ``path`` if the file is unchanged since it was probed."""
        record = self.entries.get(path)
        key = self.key(path)
        if record is None or key is None or (record.get("size"), record.get("mtime_ns")) != key:
            return None
        try:
            return probe.ProbeResult(**record["result"])
        except TypeError:
            return None

    def put(self, path: str, result: probe.ProbeResult) -> None:
        """Record (and immediately append) a result."""
        key = self.key(path)
        if key is None:
            return
        record = {"path": path, "size": key[0], "mtime_ns": key[1], "result": result.to_dict()}
        self.entries[path] = record
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self, compact: bool = False) -> None:
        """Close the file; with ``compact``, rewrite it with one record per path (the latest)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if compact and self.entries:
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for path in sorted(self.entries):
                    f.write(json.dumps(self.entries[path]) + "\n")
            os.replace(tmp, self.path)


def cache_path_for(out: Path) -> Path:
    """The probe cache kept beside a manifest: ``<manifest>.probe-cache.jsonl``."""
    return out.with_name(out.name + ".probe-cache.jsonl")


def _segment_problem(entry: SourceEntry, result: probe.ProbeResult) -> str:
    if entry.start is None or result.fps <= 0:
        return ""
    duration = result.num_frames / result.fps
    if entry.start >= duration:
        return f"segment outside video: starts at {entry.start:.2f} s, the video lasts {duration:.2f} s"
    return ""


def build_manifest(
    source: str,
    root: str | Path,
    out: str | Path,
    annotations: str | Path | None = None,
    split: int = 1,
    fraction: float | None = None,
    seed: int = 0,
    val_fraction: float = 0.0,
    workers: int | None = None,
    progress: bool = True,
) -> Manifest:
    """Index a dataset on disk into the manifest CSV ``out``; return it (as :func:`read_manifest` reads it).

    ``source``: one of ``folder``, ``ucf101``, ``hmdb51``, ``kinetics``, ``activitynet``,
    ``frame_folders_json`` (see :mod:`vidfast.data.sources`); ``split``: the official split 1-3 (UCF-101,
    HMDB-51); ``val_fraction`` / ``fraction``: see :func:`hold_out_val` / :func:`keep_fraction` (the fraction
    is taken before probing, the validation rows are drawn from the usable training rows after it). Files are
    probed in ``workers`` processes with a progress display; results are cached beside ``out`` so a second or
    interrupted run re-probes only new or changed files. Bad files never stop indexing: they become
    ``status=bad`` rows with a reason.
    """
    out = Path(out)
    listing = list_source(source, root, annotations, split)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    entries = keep_fraction(listing.entries, fraction, seed)
    paths = sorted({e.path for e in entries if not e.reason})
    cache = ProbeCache(cache_path_for(out))
    results: dict[str, probe.ProbeResult] = {}
    todo: list[str] = []
    for path in paths:
        cached = cache.get(path)
        if cached is None:
            todo.append(path)
        else:
            results[path] = cached
    if results:
        logger.info("%d of %d files already probed (cache %s)", len(results), len(paths), cache.path)
    try:
        for index, result in probe.run_parallel(probe.probe_path, todo, workers, "probing", progress):
            results[todo[index]] = result
            cache.put(todo[index], result)
    finally:
        cache.close(compact=len(results) == len(paths))

    rows = []
    for entry in entries:
        result = results.get(entry.path, probe.ProbeResult(status="bad", reason=entry.reason))
        status, reason = result.status, result.reason
        if status == "ok" and _segment_problem(entry, result):
            status, reason = "bad", _segment_problem(entry, result)
        rows.append(ManifestRow(
            path=entry.path, label=entry.label, label_name=entry.label_name, split=entry.split,
            start=entry.start, end=entry.end, num_frames=result.num_frames, fps=result.fps,
            width=result.width, height=result.height, status=status, reason=reason,
        ))
        if status != "ok":
            logger.debug("bad %s: %s", entry.path, reason)
    write_manifest(out, hold_out_val(rows, val_fraction, seed))
    return read_manifest(out)

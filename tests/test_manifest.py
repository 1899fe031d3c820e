"""Manifest CSV read/write, the columns sidecar (sync, staleness, damage), stratified splits, probing of bad
files, and the probe cache (resume)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vidfast.data import probe
from vidfast.data.columns import sidecar_path
from vidfast.data.manifest import (
    HEADER,
    Manifest,
    ManifestColumns,
    ManifestRow,
    build_manifest,
    cache_path_for,
    class_names_of,
    hold_out_val,
    keep_fraction,
    read_manifest,
    skipped_by_reason,
    summarize,
    write_manifest,
)
from vidfast.data.sources import SourceEntry
from vidfast.data.video_io import write_video
from vidfast.errors import DataError


def _frames(n: int = 12, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _row(path: str, label: int = 0, name: str = "a", split: str = "train", status: str = "ok",
         **kw) -> ManifestRow:
    fields = dict(start=None, end=None, num_frames=10, fps=25.0, width=32, height=32, reason="")
    fields.update(kw)
    return ManifestRow(path=path, label=label, label_name=name, split=split, status=status, **fields)


def test_write_read_roundtrip_relative_and_absolute_paths(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "x.mp4"
    rows = [
        _row(str(tmp_path / "m" / "cls a" / "v,1.mp4"), label=0, name="cls a"),
        _row(str(outside), label=2, name="c", split="val", start=1.5, end=3.25),
        _row(str(tmp_path / "m" / "t.mp4"), label=-1, name="", split="test", status="bad",
             reason="missing: gone", num_frames=0, fps=0.0, width=0, height=0),
    ]
    out = write_manifest(tmp_path / "m" / "manifest.csv", rows)
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(HEADER)
    assert lines[1].startswith('"cls a/v,1.mp4",0,cls a,train,,,10,25.0,32,32,ok,')
    assert lines[2].startswith(str(outside))  # outside the manifest's folder: absolute
    manifest = read_manifest(out)
    assert manifest.root == (tmp_path / "m").resolve()
    assert [r.path for r in manifest.rows] == [r.path for r in rows]
    assert manifest.rows == rows
    assert manifest.class_names == ["cls a", "class_1", "c"]
    assert [r.path for r in manifest.select("val")] == [str(outside)]
    assert manifest.select("test") == []
    assert len(manifest.select("test", only_ok=False)) == 1
    assert len(manifest.select()) == 2
    with pytest.raises(ValueError, match="split"):
        manifest.select("training")


def test_manifest_moves_with_its_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    write_manifest(tmp_path / "a" / "m.csv", [_row(str(tmp_path / "a" / "v.mp4"))])
    os.rename(tmp_path / "a", tmp_path / "b")
    assert read_manifest(tmp_path / "b" / "m.csv").rows[0].path == str((tmp_path / "b" / "v.mp4").resolve())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,c\n1,2,3\n", "header"),
        (",".join(HEADER) + "\nv.mp4,x,a,train,,,1,25,2,2,ok,\n", ":2:"),
        (",".join(HEADER) + "\nv.mp4,0,a,training,,,1,25,2,2,ok,\n", "split"),
        (",".join(HEADER) + "\nv.mp4,0,a,train,,,1,25,2,2,fine,\n", "status"),
        (",".join(HEADER) + "\nv.mp4,0,a,train\n", "fields"),
        (",".join(HEADER) + "\nv.mp4,-3,a,train,,,1,25,2,2,ok,\n", "label"),
    ],
)
def test_read_manifest_rejects_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_manifest(path)


def test_read_manifest_missing_or_binary(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataError):
        read_manifest(tmp_path / "b.csv")


def test_class_names_conflict() -> None:
    with pytest.raises(DataError, match="two names"):
        class_names_of([_row("/a", 0, "x"), _row("/b", 0, "y")])


def _entries(counts: dict[int, int], split: str = "train") -> list[SourceEntry]:
    return [SourceEntry(f"/d/{label}/{i:03d}.mp4", label, f"c{label}", split)
            for label, n in counts.items() for i in range(n)]


def _rows(entries: list[SourceEntry], bad: int = 0) -> list[ManifestRow]:
    """Manifest rows of ``entries``; every ``bad``-th one (1-based) unusable."""
    return [_row(e.path, e.label, e.label_name, e.split, status="bad" if bad and i % bad == bad - 1 else "ok")
            for i, e in enumerate(entries)]


def test_val_hold_out_is_stratified_seeded_and_uses_only_ok_rows() -> None:
    rows = _rows(_entries({0: 10, 1: 20, 2: 1, 3: 2}) + _entries({0: 3}, split="test"), bad=10)
    out = hold_out_val(rows, 0.3, seed=5)
    assert [r.path for r in out] == [r.path for r in rows]  # nothing dropped or reordered
    val = Counter(r.label for r in out if r.split == "val")
    ok_train = Counter(r.label for r in rows if r.split == "train" and r.ok)
    assert ok_train == {0: 9, 1: 18, 2: 1, 3: 2}
    assert val == {0: 3, 1: 5, 3: 1}  # round(n_ok * 0.3), >= 1 per class, never a whole class (label 2: one)
    assert all(r.ok for r in out if r.split == "val")
    assert [r.split for r in out[-3:]] == ["test"] * 3  # only train rows are held out
    assert [r.split for r in hold_out_val(rows, 0.3, seed=5)] == [r.split for r in out]
    assert [r.split for r in hold_out_val(rows, 0.3, seed=6)] != [r.split for r in out]
    assert hold_out_val(rows, 0.0) == rows
    with pytest.raises(ValueError, match="--val-fraction"):
        hold_out_val(rows, 1.0)


def test_fraction_keeps_stratified_train_subset() -> None:
    entries = _entries({0: 16, 1: 8, 2: 3}) + _entries({0: 4}, split="val")
    out = keep_fraction(entries, 0.25, seed=1)
    assert Counter(e.label for e in out if e.split == "train") == {0: 4, 1: 2, 2: 1}
    assert sum(e.split == "val" for e in out) == 4  # other splits untouched
    assert {e.path for e in out} <= {e.path for e in entries}
    assert [e.path for e in keep_fraction(entries, 0.25, seed=1)] == [e.path for e in out]
    assert [e.path for e in keep_fraction(entries, 0.25, seed=2)] != [e.path for e in out]
    assert keep_fraction(entries, None) == entries and keep_fraction(entries, 1.0) == entries
    with pytest.raises(ValueError, match="--fraction"):
        keep_fraction(entries, 0.0)


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """A folder dataset with good videos in four codecs and every kind of bad file."""
    root = tmp_path / "data"
    write_video(root / "good" / "h264.mp4", _frames(12), codec="h264")
    write_video(root / "good" / "mpeg4.avi", _frames(10), codec="mpeg4")
    write_video(root / "good" / "vp9.webm", _frames(9), codec="vp9")
    write_video(root / "good" / "mjpeg.avi", _frames(8, 32, 48), codec="mjpeg")
    bad = root / "bad"
    bad.mkdir(parents=True)
    (bad / "zero.mp4").write_bytes(b"")
    data = write_video(tmp_path / "full.mp4", _frames(30), codec="h264").read_bytes()
    (bad / "truncated.mp4").write_bytes(data[: len(data) // 2])
    avi = write_video(tmp_path / "full.avi", _frames(30), codec="mjpeg").read_bytes()
    (bad / "truncated.avi").write_bytes(avi[: int(len(avi) * 0.6)])
    garbage = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (bad / "garbage.avi").write_bytes(garbage)
    (bad / "notes.txt").write_text("not a video\n" * 20)
    corrupt = bytearray(data)
    mdat = corrupt.find(b"mdat")
    corrupt[mdat + 4: mdat + 4 + len(data) // 3] = bytes(len(data) // 3)
    (bad / "undecodable.mp4").write_bytes(bytes(corrupt))
    (bad / ".hidden.mp4").write_bytes(b"ignored")
    return root


def test_probe_reports_every_bad_kind(messy_folder: Path) -> None:
    good = {p.name: probe.probe_path(p) for p in (messy_folder / "good").iterdir()}
    assert {n: (r.status, r.num_frames) for n, r in good.items()} == {
        "h264.mp4": ("ok", 12), "mpeg4.avi": ("ok", 10), "vp9.webm": ("ok", 9), "mjpeg.avi": ("ok", 8)}
    assert (good["mjpeg.avi"].width, good["mjpeg.avi"].height, good["mjpeg.avi"].fps) == (48, 32, 25.0)
    bad = {p.name: probe.probe_path(p).reason for p in (messy_folder / "bad").iterdir()}
    categories = {n: probe.reason_category(r) for n, r in bad.items()}
    assert categories == {
        "zero.mp4": "empty", "truncated.mp4": "truncated", "truncated.avi": "truncated",
        "garbage.avi": "not a video", "notes.txt": "not a video", "undecodable.mp4": "undecodable",
        ".hidden.mp4": "not a video",
    }
    assert probe.probe_path(messy_folder / "missing.mp4").reason.startswith("missing")


def test_build_manifest_keeps_going_and_counts_bad_files(messy_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "manifest.csv"
    manifest = build_manifest("folder", messy_folder, out, workers=2, progress=False)
    assert isinstance(manifest, Manifest)
    assert manifest.class_names == ["bad", "good"]
    assert len(manifest.rows) == 10  # hidden files are skipped
    ok = {Path(r.path).name for r in manifest.select()}
    assert ok == {"h264.mp4", "mpeg4.avi", "vp9.webm", "mjpeg.avi"}
    assert skipped_by_reason(manifest.rows) == {
        "empty": 1, "truncated": 2, "not a video": 2, "undecodable": 1}
    lines = summarize(manifest)
    assert lines[0] == "10 rows, 2 classes: 4 ok (train 4), 6 bad"
    assert lines[1].startswith("skipped 6: 2 ") and "1 undecodable" in lines[1]
    assert read_manifest(out).rows == manifest.rows
    serial = build_manifest("folder", messy_folder, tmp_path / "serial.csv", workers=1, progress=False)
    assert [(r.path, r.status, r.num_frames) for r in serial.rows] == \
        [(r.path, r.status, r.num_frames) for r in manifest.rows]


def test_cache_makes_second_run_probe_nothing_and_resumes(messy_folder: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real_probe = probe.probe_path
    calls: list[str] = []
    stop_after: list[int] = [3]

    def counting_probe(path):
        if len(calls) == stop_after[0]:
            raise KeyboardInterrupt
        calls.append(str(path))
        return real_probe(path)

    monkeypatch.setattr(probe, "probe_path", counting_probe)
    out = tmp_path / "m.csv"
    with pytest.raises(KeyboardInterrupt):  # an interrupted first run
        build_manifest("folder", messy_folder, out, workers=1, progress=False)
    assert not out.exists()
    assert len(cache_path_for(out).read_text().splitlines()) == 3

    calls.clear()
    stop_after[0] = 10_000
    first = build_manifest("folder", messy_folder, out, workers=1, progress=False)
    assert len(calls) == 10 - 3  # resumed: only the files not probed before the interruption

    calls.clear()
    second = build_manifest("folder", messy_folder, out, workers=1, progress=False)
    assert calls == []
    assert second.rows == first.rows

    changed = messy_folder / "good" / "h264.mp4"
    write_video(changed, _frames(20), codec="h264")
    os.utime(changed, ns=(1, 1))
    calls.clear()
    third = build_manifest("folder", messy_folder, out, workers=1, progress=False)
    assert calls == [str(changed)]
    assert next(r for r in third.rows if r.path == str(changed)).num_frames == 20
    assert len(cache_path_for(out).read_text().splitlines()) == 10  # compacted: one record per file


def test_plain_progress_when_not_a_tty(messy_folder: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    build_manifest("folder", messy_folder / "good" / "..", tmp_path / "m.csv", workers=1, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("probing: 10/10")
    assert all(line.startswith("probing: ") for line in err)


# ------------------------------------------------------------------------------- columns and their sidecar


def _columnar(tmp_path: Path, n: int = 40) -> tuple[Path, list[ManifestRow]]:
    rows = [_row(str(tmp_path / f"c{i % 3}" / f"v{i}.mp4"), label=i % 3, name=f"class {i % 3}",
                 split=("train", "val", "test")[i % 3], status="bad" if i % 7 == 6 else "ok",
                 reason="missing: gone" if i % 7 == 6 else "", start=1.5 if i % 5 == 0 else None,
                 end=2.25 if i % 5 == 0 else None, num_frames=10 + i, fps=29.97)
            for i in range(n)]
    rows.append(_row("/elsewhere/ünïcode, \"quoted\".mp4", label=-1, name="", split="unused"))
    return write_manifest(tmp_path / "m.csv", rows), rows


def _manifest_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "vidfast.data.manifest"]


def test_sidecar_is_written_with_the_csv_and_read_instead_of_it(tmp_path: Path, monkeypatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    path, rows = _columnar(tmp_path)
    assert sidecar_path(path).is_file()
    from_csv = Manifest(rows, class_names_of(rows), tmp_path)

    def no_csv(*args):
        raise AssertionError("the CSV was parsed although the sidecar matches it")

    monkeypatch.setattr("vidfast.data.manifest._parse_row", no_csv)
    with caplog.at_level("INFO"):
        manifest = read_manifest(path)
    assert _manifest_log(caplog) == []
    assert isinstance(manifest.columns, ManifestColumns) and isinstance(manifest.table(), ManifestColumns)
    assert manifest.columns == rows and list(manifest.columns) == rows and manifest.columns[-1] == rows[-1]
    assert manifest.columns[3:6] == rows[3:6]
    assert manifest.class_names == from_csv.class_names == ["class 0", "class 1", "class 2"]
    for split in (None, "train", "val", "test", "unused"):
        for only_ok in (True, False):
            assert manifest.select(split, only_ok) == from_csv.select(split, only_ok)
            assert list(manifest.table(split, only_ok)) == from_csv.select(split, only_ok)
    assert manifest.counts() == from_csv.counts()
    assert summarize(manifest) == summarize(from_csv)
    assert skipped_by_reason(manifest.columns) == skipped_by_reason(rows)
    with pytest.raises(ValueError, match="split"):
        manifest.table("training")
    # the rows as a list callers may change (built on first access; selections follow it from then on)
    manifest.rows.append(_row(str(tmp_path / "extra.mp4"), 0, "class 0", split="val"))
    assert manifest.rows == [*rows, manifest.rows[-1]] and isinstance(manifest.table(), list)
    assert len(manifest.select("val")) == len(from_csv.select("val")) + 1


def _log_once(caplog: pytest.LogCaptureFixture, path: Path, expected: str, rows: list[ManifestRow]) -> None:
    """Reading ``path`` logs one line containing ``expected``, returns ``rows`` (from the CSV), and rewrites
    the sidecar so that the next read logs nothing."""
    caplog.clear()
    with caplog.at_level("INFO"):
        assert read_manifest(path).rows == rows
    lines = _manifest_log(caplog)
    assert len(lines) == 1 and expected in lines[0], lines
    caplog.clear()
    with caplog.at_level("INFO"):
        assert read_manifest(path).rows == rows
    assert _manifest_log(caplog) == []


def test_a_changed_csv_is_never_read_from_a_stale_sidecar(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    path, rows = _columnar(tmp_path)
    st = os.stat(path)
    # same size, same modification time, one label name changed: caught by the hash of the file's ends
    path.write_bytes(path.read_bytes().replace(b"class 1", b"class Z"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size
    edited = [replace(r, label_name="class Z") if r.label_name == "class 1" else r for r in rows]
    _log_once(caplog, path, "stale", edited)
    # a longer CSV written by hand (other size and time)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{tmp_path / 'new.mp4'},0,class 0,train,,,5,25.0,32,32,ok,\n")
    _log_once(caplog, path, "stale", [*edited, _row(str(tmp_path / "new.mp4"), 0, "class 0", num_frames=5)])


@pytest.mark.parametrize(("damage", "expected"), [
    ("truncate", "truncated"), ("flip", "corrupt"), ("garbage", "not a vidfast columns sidecar"),
    ("missing", "no columns sidecar"), ("header", "truncated"), ("version", "format version 0"),
    ("keys", "malformed header"),
])
def test_a_damaged_or_missing_sidecar_costs_one_line_and_a_csv_read(
    tmp_path: Path, damage: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    path, rows = _columnar(tmp_path)
    side = sidecar_path(path)
    data = side.read_bytes()
    if damage == "truncate":
        side.write_bytes(data[: len(data) - 100])
    elif damage == "flip":
        at = data.index(b"c1/v1.mp4")  # in the paths' buffer
        side.write_bytes(data[:at] + b"X" + data[at + 1:])
    elif damage == "garbage":
        side.write_bytes(b"\x00" * len(data))
    elif damage == "header":
        side.write_bytes(data[:40])
    elif damage in ("version", "keys"):
        header = b'{"version": 0}' if damage == "version" else b'{"version": 1}'
        side.write_bytes(data[:8] + len(header).to_bytes(8, "little") + header)
    else:
        side.unlink()
    _log_once(caplog, path, expected, rows)


def test_rows_the_reader_refuses_get_no_sidecar(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.csv", [_row(str(tmp_path / "v.mp4"), split="training")])
    assert not sidecar_path(path).exists()
    with pytest.raises(DataError, match=r"m\.csv:2: split"):
        read_manifest(path)
    path = write_manifest(tmp_path / "m.csv", [_row(str(tmp_path / "a.mp4"), 0, "x"),
                                               _row(str(tmp_path / "b.mp4"), 0, "y")])
    assert not sidecar_path(path).exists()
    with pytest.raises(DataError, match="two names"):
        read_manifest(path)


def test_columnar_dataset_locates_samples_without_per_row_objects(tmp_path: Path) -> None:
    """Sample ``i`` -> (video, clip) by binary search over the cumulative sample counts, the same order as the
    per-row listing it replaces; rows of the dataset stay columns."""
    from vidfast.data.dataset import ClipDataset
    from vidfast.data.policies import sliding_windows
    from vidfast.data.reader import segment_len

    path, _ = _columnar(tmp_path)
    rows = read_manifest(path).table(None)
    policy = sliding_windows(clip_len=4, stride=3)
    dataset = ClipDataset(rows, policy)
    assert dataset.rows is rows
    expected = [(v, c) for v, r in enumerate(rows) for c in range(policy.num_samples(max(segment_len(r), 1)))]
    assert len(dataset) == len(expected) > len(rows)
    assert [dataset.locate(i) for i in range(len(dataset))] == expected
    with pytest.raises(IndexError):
        dataset.locate(len(dataset))

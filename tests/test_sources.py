"""Every dataset source on tiny trees in its official on-disk layout, indexed into manifests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidfast.data.manifest import build_manifest, read_manifest, skipped_by_reason
from vidfast.data.sources import list_source
from vidfast.data.video_io import write_video
from vidfast.errors import DataError


def _video(path: Path, codec: str = "mpeg4", frames: int = 6, fps: int = 25) -> Path:
    data = np.random.default_rng(len(str(path))).integers(0, 256, (frames, 16, 16, 3), dtype=np.uint8)
    return write_video(path, data, fps=fps, codec=codec)


def _index(source: str, root: Path, out: Path, **kw):
    return build_manifest(source, root, out, workers=1, progress=False, **kw)


def _by_name(manifest) -> dict[str, object]:
    return {Path(r.path).name: r for r in manifest.rows}


# ---------------------------------------------------------------- UCF-101

UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]


@pytest.fixture
def ucf(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "UCF-101"
    file_class = {"HandstandPushups": "HandStandPushups"}  # as in the real dataset
    names = {c: [f"v_{file_class.get(c, c)}_g{g:02d}_c01.avi" for g in (1, 2, 8)] for c in UCF_CLASSES}
    for cls, files in names.items():
        for name in files:
            _video(root / cls / name)
    ann = tmp_path / "ucfTrainTestlist"
    ann.mkdir()
    crlf = "\r\n"
    class_ind = crlf.join(f"{i} {c}" for i, c in enumerate(UCF_CLASSES, 1)) + crlf
    (ann / "classInd.txt").write_bytes(class_ind.encode())
    for split, test_group in ((1, 1), (2, 2)):
        train = [f"{c}/{n} {i}" for i, c in enumerate(UCF_CLASSES, 1) for n in names[c]
                 if f"_g0{test_group}_" not in n]
        test = [f"{c}/{n}" for c in UCF_CLASSES for n in names[c] if f"_g0{test_group}_" in n]
        (ann / f"trainlist0{split}.txt").write_bytes((crlf.join(train) + crlf).encode())
        (ann / f"testlist0{split}.txt").write_bytes((crlf.join(test) + crlf).encode())
    # a list entry whose letter case differs from the file on disk still resolves
    text = (ann / "testlist01.txt").read_bytes().replace(b"Archery/v_Archery_g01", b"Archery/v_archery_g01")
    (ann / "testlist01.txt").write_bytes(text)
    return root, ann


def test_ucf101_official_splits(ucf: tuple[Path, Path], tmp_path: Path) -> None:
    root, ann = ucf
    m = _index("ucf101", root, tmp_path / "ucf1.csv", annotations=ann, split=1)
    assert m.class_names == UCF_CLASSES
    assert len(m.rows) == 9 and all(r.ok for r in m.rows)
    rows = _by_name(m)
    assert rows["v_Archery_g01_c01.avi"].split == "test"
    assert rows["v_Archery_g01_c01.avi"].label == 1
    assert rows["v_HandStandPushups_g08_c01.avi"].split == "train"
    assert rows["v_HandStandPushups_g08_c01.avi"].label == 2
    assert {r.split for r in m.rows if "_g01_" in r.path} == {"test"}
    assert rows["v_ApplyEyeMakeup_g02_c01.avi"].num_frames == 6
    m2 = _index("ucf101", root, tmp_path / "ucf2.csv", annotations=ann, split=2)
    assert {Path(r.path).name for r in m2.select("test")} == {n for n in rows if "_g02_" in n}
    assert {r.split for r in m2.rows if "_g01_" in r.path} == {"train"}


def test_ucf101_bad_annotations(ucf: tuple[Path, Path], tmp_path: Path) -> None:
    root, ann = ucf
    with pytest.raises(DataError, match="classInd.txt"):
        list_source("ucf101", root, ann / "classInd.txt")
    assert len(list_source("ucf101", root).entries) == 9  # found beside the root
    ann.rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="needs --annotations"):
        list_source("ucf101", root)
    ann = tmp_path / "elsewhere"
    with pytest.raises(ValueError, match="--split"):
        list_source("ucf101", root, ann, split=4)
    with pytest.raises(DataError, match="split file not found"):
        list_source("ucf101", root, ann, split=3)
    (ann / "trainlist01.txt").write_text("Juggling/v_Juggling_g01_c01.avi 9\n")
    with pytest.raises(DataError, match="trainlist01.txt:1"):
        list_source("ucf101", root, ann)


# ---------------------------------------------------------------- HMDB-51

HMDB = {
    "brush_hair": [("#20_Rhythm_clap_brush_hair_u_nm_np1_fr_goo_0.avi", 1),
                   ("(Ride_the_rapids)_brush_hair_f_cm_np1_ba_med_0.avi", 2),
                   ("Bugs_&_Daffy!_;'quoted'_brush_hair_h_nm_np1_le_goo_0.avi", 0)],
    "kiss": [("Amelie,_the_kiss_kiss_h_nm_np1_fr_goo_0.avi", 1), ("Prelinger_kiss_u_cm_np2_ri_bad_3.avi", 2)],
}


def test_hmdb51_special_characters_and_flags(tmp_path: Path) -> None:
    root = tmp_path / "hmdb51"
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for cls, videos in HMDB.items():
        for name, _ in videos:
            _video(root / cls / name)
        for k in (1, 2, 3):
            lines = "".join(f"{name} {flag if k == 1 else 1} \n" for name, flag in videos)
            (splits / f"{cls}_test_split{k}.txt").write_text(lines)
    out = tmp_path / "hmdb.csv"
    m = _index("hmdb51", root, out, annotations=splits, split=1)
    assert m.class_names == ["brush_hair", "kiss"]
    rows = _by_name(read_manifest(out))  # paths with , # ( ) & ! ; ' survive the CSV round trip
    assert {n: (r.split, r.label, r.status) for n, r in rows.items()} == {
        name: ({0: "unused", 1: "train", 2: "test"}[flag], label, "ok")
        for label, videos in enumerate(HMDB.values()) for name, flag in videos
    }
    assert all(Path(r.path).is_file() for r in rows.values())
    m2 = _index("hmdb51", root, tmp_path / "h2.csv", annotations=splits, split=2)
    assert {r.split for r in m2.rows} == {"train"}
    # annotations found automatically beside the root
    assert len(list_source("hmdb51", root).entries) == 5
    with pytest.raises(DataError, match="_test_split1.txt"):
        list_source("hmdb51", root, tmp_path)


# ---------------------------------------------------------------- Kinetics

def test_kinetics_layouts_missing_clips_and_test_csv(tmp_path: Path) -> None:
    root = tmp_path / "kinetics"
    _video(root / "train" / "playing guitar" / "-abc_DEF12_000010_000020.mp4", codec="h264")
    _video(root / "train" / "abseiling" / "xyz0123456A_000000_000010.mp4", codec="h264")
    _video(root / "val" / "playing_guitar" / "vvvvvvvvvvv_000030_000040.mp4", codec="h264")
    _video(root / "test" / "ttttttttttt_000005_000015.webm", codec="vp9")
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "kinetics_train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        '"playing guitar",-abc_DEF12,10,20,train\n'
        "abseiling,xyz0123456A,0,10,train\n"
        "abseiling,missing0000,3,13,train\n")
    (ann / "kinetics_val.csv").write_text(
        'label,youtube_id,time_start,time_end,split\n"playing guitar",vvvvvvvvvvv,30,40,val\n')
    (ann / "kinetics_test.csv").write_text("youtube_id,time_start,time_end,split\nttttttttttt,5,15,test\n")
    m = _index("kinetics", root, tmp_path / "k.csv", annotations=ann)
    assert m.class_names == ["abseiling", "playing guitar"]
    rows = {Path(r.path).stem: r for r in m.rows}
    guitar_train, guitar_val = rows["-abc_DEF12_000010_000020"], rows["vvvvvvvvvvv_000030_000040"]
    assert (guitar_train.label, guitar_train.split) == (1, "train")
    assert (guitar_val.label, guitar_val.split) == (1, "val")
    test_row = rows["ttttttttttt_000005_000015"]
    assert (test_row.label, test_row.label_name, test_row.split, test_row.status) == (-1, "", "test", "ok")
    assert rows["missing0000_000003_000013"].status == "bad"
    assert skipped_by_reason(m.rows) == {"missing": 1}
    assert sum(r.ok for r in m.rows) == 4

    flat = tmp_path / "flat"  # no split folders, labels with underscores
    _video(flat / "playing_guitar" / "-abc_DEF12_000010_000020.mp4", codec="h264")
    _video(flat / "abseiling" / "xyz0123456A_000000_000010.mp4", codec="h264")
    listing = list_source("kinetics", flat, ann / "kinetics_train.csv")
    assert sorted((Path(e.path).parent.name, e.reason) for e in listing.entries) == [
        ("abseiling", ""), ("abseiling", "missing: clip not on disk"), ("playing_guitar", "")]


def test_kinetics_bad_csv(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "bad.csv").write_text("name,start\na,1\n")
    with pytest.raises(DataError, match="not a Kinetics CSV"):
        list_source("kinetics", tmp_path / "root", tmp_path / "bad.csv")
    with pytest.raises(DataError, match="needs --annotations"):
        list_source("kinetics", tmp_path / "root")


# ---------------------------------------------------------------- ActivityNet

def test_activitynet_segments(tmp_path: Path) -> None:
    root = tmp_path / "anet"
    _video(root / "v_aaa.mp4", codec="h264", frames=50, fps=10)  # 5 s
    _video(root / "v_bbb.mkv", codec="vp9", frames=30, fps=10)
    _video(root / "v_ccc.mp4", codec="h264", frames=20, fps=10)
    database = {
        "aaa": {"subset": "training", "duration": 5.0, "annotations": [
            {"segment": [0.5, 2.0], "label": "Dancing"}, {"segment": [2.5, 4.9], "label": "Washing dishes"}]},
        "bbb": {"subset": "validation", "duration": 3.0, "annotations": [
            {"segment": [1.0, 2.5], "label": "Dancing"}, {"segment": [7.0, 9.0], "label": "Dancing"}]},
        "ccc": {"subset": "testing", "duration": 2.0, "annotations": []},
        "ddd": {"subset": "training", "duration": 9.0,
                "annotations": [{"segment": [1, 2], "label": "Dancing"}]},
    }
    ann = tmp_path / "activity_net.v1-3.min.json"
    ann.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": database}))
    m = _index("activitynet", root, tmp_path / "a.csv", annotations=ann)
    assert m.class_names == ["Dancing", "Washing dishes"]
    got = [(Path(r.path).name, r.label, r.split, r.start, r.end, r.status, r.reason.split(":")[0])
           for r in m.rows]
    assert got == [
        ("v_aaa.mp4", 0, "train", 0.5, 2.0, "ok", ""),
        ("v_aaa.mp4", 1, "train", 2.5, 4.9, "ok", ""),
        ("v_bbb.mkv", 0, "val", 1.0, 2.5, "ok", ""),
        ("v_bbb.mkv", 0, "val", 7.0, 9.0, "bad", "segment outside video"),
        ("v_ccc.mp4", -1, "test", None, None, "ok", ""),
        ("v_ddd.mp4", 0, "train", 1.0, 2.0, "bad", "missing"),
    ]
    assert m.rows[0].num_frames == 50 and m.rows[0].fps == 10.0  # the whole file's properties
    ann.write_text("{not json")
    with pytest.raises(DataError, match="not a JSON"):
        list_source("activitynet", root, ann)


# ---------------------------------------------------------------- JPEG frame folders

def _frame_folder(folder: Path, n: int, size: tuple[int, int] = (20, 16)) -> None:
    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        Image.new("RGB", size, (i * 10, 0, 0)).save(folder / f"image_{i:05d}.jpg")


def test_frame_folders_json_source(tmp_path: Path) -> None:
    root = tmp_path / "jpg"
    _frame_folder(root / "Archery" / "v_Archery_g01_c01", 5)
    _frame_folder(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01", 7)
    _frame_folder(root / "test" / "abc_000001_000011", 3)
    (root / "Archery" / "v_Archery_g02_c01").mkdir()  # no frames
    _frame_folder(root / "Archery" / "v_Archery_g03_c01", 4)
    (root / "Archery" / "v_Archery_g03_c01" / "image_00004.jpg").write_bytes(b"\xff\xd8 broken")
    data = {
        "labels": ["ApplyEyeMakeup", "Archery"],
        "database": {
            "v_Archery_g01_c01": {"subset": "training",
                                  "annotations": {"label": "Archery", "segment": [1, 6]}},
            "v_ApplyEyeMakeup_g01_c01": {"subset": "validation", "annotations": {"label": "ApplyEyeMakeup"}},
            "abc_000001_000011": {"subset": "testing", "annotations": {}},
            "v_Archery_g02_c01": {"subset": "training", "annotations": {"label": "Archery"}},
            "v_Archery_g03_c01": {"subset": "training", "annotations": {"label": "Archery"}},
            "v_Archery_g04_c01": {"subset": "training", "annotations": {"label": "Archery"}},
        },
    }
    ann = tmp_path / "ucf101_01.json"
    ann.write_text(json.dumps(data))
    m = _index("frame_folders_json", root, tmp_path / "f.csv", annotations=ann)
    assert m.class_names == ["ApplyEyeMakeup", "Archery"]
    rows = _by_name(m)
    assert (rows["v_Archery_g01_c01"].num_frames, rows["v_Archery_g01_c01"].fps) == (5, 0.0)
    assert (rows["v_Archery_g01_c01"].width, rows["v_Archery_g01_c01"].height) == (20, 16)
    assert Path(rows["v_Archery_g01_c01"].path).is_dir()
    assert (rows["v_ApplyEyeMakeup_g01_c01"].split, rows["v_ApplyEyeMakeup_g01_c01"].label) == ("val", 0)
    assert (rows["abc_000001_000011"].split, rows["abc_000001_000011"].label) == ("test", -1)
    assert rows["abc_000001_000011"].num_frames == 3
    assert {n: r.reason.split(":")[0] for n, r in rows.items() if not r.ok} == {
        "v_Archery_g02_c01": "no frames", "v_Archery_g03_c01": "undecodable",
        "v_Archery_g04_c01": "missing"}
    ann.write_text(json.dumps({"database": {}}))
    with pytest.raises(DataError, match="'labels'"):
        list_source("frame_folders_json", root, ann)


def test_folder_source_and_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset root not found"):
        list_source("folder", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        list_source("folder", tmp_path / "empty")
    with pytest.raises(ValueError, match="source must be one of"):
        list_source("youtube", tmp_path)
    with pytest.raises(ValueError, match="not used by the folder source"):
        list_source("folder", tmp_path, tmp_path)
    _video(tmp_path / "ds" / "b" / "x.webm", codec="vp9")
    _frame_folder(tmp_path / "ds" / "a" / "clip", 3)  # frame folders work in the folder layout too
    m = _index("folder", tmp_path / "ds", tmp_path / "ds.csv")
    assert [(Path(r.path).name, r.label, r.num_frames, r.status) for r in m.rows] == [
        ("clip", 0, 3, "ok"), ("x.webm", 1, 6, "ok")]

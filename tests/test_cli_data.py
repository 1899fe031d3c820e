"""``vidfast data synth|index|transcode`` through the real CLI application."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner
from vidfast_cli.app import app

from vidfast.data.manifest import read_manifest

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, ["data", *map(str, args)])


def _assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_synth_index_transcode_pipeline(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    result = _run("synth", root, "--classes", 2, "--per-class", 3, "--frames", 8, "--size", "32x48",
                  "--seed", 1)
    assert result.exit_code == 0, result.output
    assert "wrote 6 videos of 2 classes (move_right, move_left)" in result.stdout
    (root / "move_left" / "broken.mp4").write_bytes(b"")
    (root / "move_left" / "readme.txt").write_text("not a video")

    out = tmp_path / "m.csv"
    result = _run("index", "folder", root, "--out", out, "--val-fraction", 0.34, "--workers", 2)
    assert result.exit_code == 0, result.output
    assert "8 rows, 2 classes: 6 ok (train 4, val 2), 2 bad" in result.stdout
    assert "skipped 2: 1 empty, 1 not a video" in result.stdout
    manifest = read_manifest(out)
    assert manifest.class_names == ["move_left", "move_right"]
    assert {(r.width, r.height) for r in manifest.select()} == {(48, 32)}

    again = _run("index", "folder", root, "--out", tmp_path / "m2.csv", "--fraction", 0.5, "--seed", 3)
    assert again.exit_code == 0 and "rows" in again.stdout
    # half of each class's train rows, rounded half up: 3 of move_left's 5 files, 2 of move_right's 3
    assert sum(r.split == "train" for r in read_manifest(tmp_path / "m2.csv").rows) == 5

    result = _run("transcode", out, tmp_path / "tc", "--short-side", 16, "--gop", 4, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "6 rows, 2 classes: 6 ok (train 4, val 2), 0 bad" in result.stdout
    new = read_manifest(tmp_path / "tc" / "manifest.csv")
    assert {(r.width, r.height, r.num_frames) for r in new.rows} == {(24, 16, 8)}
    resumed = _run("transcode", out, tmp_path / "tc", "--short-side", 16, "--gop", 4, "--workers", 1)
    assert "6 outputs were already done and kept" in resumed.stdout


def test_bad_inputs_give_one_error_line(tmp_path: Path) -> None:
    _assert_one_line_error(_run("index", "folder", tmp_path / "nope", "--out", tmp_path / "m.csv"),
                           "dataset root not found")
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "classInd.txt").write_text("1 A\n")
    _assert_one_line_error(
        _run("index", "ucf101", tmp_path / "root", "--annotations", tmp_path / "classInd.txt", "--out",
             tmp_path / "m.csv"), "must be the folder holding classInd.txt")
    (tmp_path / "k.csv").write_text("foo,bar\n1,2\n")
    _assert_one_line_error(
        _run("index", "kinetics", tmp_path / "root", "--annotations", tmp_path / "k.csv", "--out",
             tmp_path / "m.csv"), "not a Kinetics CSV")
    (tmp_path / "a.json").write_text("[1, 2")
    _assert_one_line_error(
        _run("index", "activitynet", tmp_path / "root", "--annotations", tmp_path / "a.json", "--out",
             tmp_path / "m.csv"), "not a JSON")
    _assert_one_line_error(_run("index", "youtube8m", tmp_path / "root", "--out", tmp_path / "m.csv"),
                           "source must be one of")
    _assert_one_line_error(_run("index", "folder", tmp_path / "root", "--fraction", 2, "--out",
                                tmp_path / "m.csv"), "--fraction")
    _assert_one_line_error(_run("synth", tmp_path / "s", "--size", "64by64"), "--size must be HxW")
    _assert_one_line_error(_run("synth", tmp_path / "s", "--classes", 99), "classes must be between")
    _assert_one_line_error(_run("synth", tmp_path / "s", "--catalogue", "tilted"), "catalogue must be one of")
    _assert_one_line_error(_run("synth", tmp_path / "s", "--catalogue", "control", "--classes", 7),
                           "between 1 and 6 (control)")
    _assert_one_line_error(_run("transcode", tmp_path / "none.csv", tmp_path / "o"), "manifest not found")
    _assert_one_line_error(_run("transcode", tmp_path / "k.csv", tmp_path / "o"), "not a vidfast manifest")

"""Transcoding a manifest: sizes, keyframe interval, frame counts, segments cut, frame folders, resume."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from vidfast.data.manifest import ManifestRow, read_manifest, write_manifest
from vidfast.data.probe import probe_path
from vidfast.data.transcode import output_size, transcode_manifest
from vidfast.data.video_io import write_video


def _ramp(n: int, h: int, w: int) -> np.ndarray:
    """Frame i is uniformly grey at level 8 * i (so a decoded frame tells its source index)."""
    return np.broadcast_to((8 * np.arange(n, dtype=np.uint8))[:, None, None, None], (n, h, w, 3)).copy()


def _row(path: Path, label: int, split: str = "train", start: float | None = None,
         end: float | None = None, status: str = "ok") -> ManifestRow:
    p = probe_path(path)
    return ManifestRow(str(path), label, f"c{label}", split, start, end, p.num_frames, p.fps, p.width,
                       p.height, status, "" if status == "ok" else "truncated: test")


def _keyframes(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = sorted((p for p in container.demux(stream) if p.size), key=lambda p: p.pts)
    return [i for i, p in enumerate(packets) if p.is_keyframe]


def _grey_levels(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(f.to_ndarray(format="rgb24").mean()) for f in container.decode(video=0)]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    a = write_video(src / "walk" / "a.avi", _ramp(20, 48, 64), fps=10, codec="mpeg4")
    b = write_video(src / "walk" / "b.webm", _ramp(12, 32, 32), fps=10, codec="vp9")
    c = write_video(src / "run" / "c.mp4", _ramp(30, 32, 32), fps=10, codec="h264", gop=30)
    folder = src / "run" / "d"
    folder.mkdir(parents=True)
    for i in range(6):
        Image.fromarray(_ramp(6, 16, 20)[i]).save(folder / f"image_{i + 1:05d}.jpg")
    rows = [_row(a, 0, "train"), _row(b, 0, "val"), _row(c, 1, "train", start=1.0, end=2.5),
            _row(folder, 1, "test"), _row(a, 0, "train", status="bad")]
    return write_manifest(tmp_path / "src" / "manifest.csv", rows)


def test_transcode_sizes_gop_frames_and_segments(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest, kept = transcode_manifest(source, out, short_side=16, gop=4, codec="h264", crf=12, workers=2,
                                        progress=False)
    assert kept == 0
    assert read_manifest(out / "manifest.csv").rows == manifest.rows
    rows = {Path(r.path).relative_to(out).as_posix(): r for r in manifest.rows}
    assert set(rows) == {"walk/a.mp4", "walk/b.mp4", "run/c_000001000_000002500.mp4", "run/d.mp4"}
    assert all(r.ok and r.start is None and r.end is None for r in rows.values())
    assert [(r.label, r.split) for r in rows.values()] == [
        (0, "train"), (0, "val"), (1, "train"), (1, "test")]
    a, b, c, d = rows.values()
    assert (a.num_frames, a.width, a.height, a.fps) == (20, 22, 16, 10.0)  # short side 16, even sizes
    assert (b.num_frames, b.width, b.height) == (12, 16, 16)
    assert (d.num_frames, d.width, d.height, d.fps) == (6, 20, 16, 25.0)  # frame folder at the default fps
    assert _keyframes(Path(a.path)) == [0, 4, 8, 12, 16]
    # the segment [1.0 s, 2.5 s) of a 10 fps video is source frames 10..24
    assert c.num_frames == 15
    levels = _grey_levels(Path(c.path))
    assert abs(levels[0] - 80) < 4 and abs(levels[-1] - 192) < 4
    source_levels = _grey_levels(Path(read_manifest(source).rows[0].path))
    assert np.allclose(_grey_levels(Path(a.path)), source_levels, atol=2)  # every frame, in order


def _x264_settings(path: Path) -> str:
    """The settings x264 writes into its stream (an SEI message: ``... options: cabac=1 ref=1 ...``)."""
    data = path.read_bytes()
    start = data.index(b"x264 - core")
    return data[start: data.index(b"\x00", start)].decode("ascii", "replace")


def test_h264_output_is_encoded_for_fast_decoding_unless_disabled(source: Path, tmp_path: Path) -> None:
    """``tune=fastdecode``: CAVLC instead of CABAC and no deblocking filter (the settings that cost decode
    time)."""
    for fast, expected in ((True, ("cabac=0", "deblock=0")), (False, ("cabac=1", "deblock=1"))):
        manifest, _ = transcode_manifest(source, tmp_path / str(fast), short_side=16, gop=4, codec="h264",
                                         workers=1, progress=False, fast_decode=fast)
        for row in manifest.rows:
            settings = _x264_settings(Path(row.path))
            assert all(flag in settings for flag in expected), settings


def test_h264_output_has_no_b_frames_unless_asked(source: Path, tmp_path: Path) -> None:
    """The random-access preset: no B-frames by default (x264 ``bframes=0``); ``b_frames`` allows them."""
    for b_frames, expected in ((False, "bframes=0 "), (True, "bframes=3 ")):
        manifest, _ = transcode_manifest(source, tmp_path / str(b_frames), short_side=16, gop=4, workers=1,
                                         progress=False, b_frames=b_frames)
        for row in manifest.rows:
            assert expected in _x264_settings(Path(row.path))


def test_resume_keeps_done_outputs_and_redoes_broken_ones(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first, _ = transcode_manifest(source, out, short_side=16, gop=4, workers=1, progress=False)
    stamps = {r.path: os.stat(r.path).st_mtime_ns for r in first.rows}
    again, kept = transcode_manifest(source, out, short_side=16, gop=4, workers=1, progress=False)
    assert kept == 4
    assert {r.path: os.stat(r.path).st_mtime_ns for r in again.rows} == stamps
    broken = Path(first.rows[0].path)
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    third, kept = transcode_manifest(source, out, short_side=16, gop=4, workers=1, progress=False)
    assert kept == 3
    assert third.rows == first.rows
    assert not list(out.rglob(".*part*"))  # no temporary files left behind


def test_other_codecs_and_name_clashes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    x_avi = write_video(src / "k" / "x.avi", _ramp(8, 32, 32), codec="mjpeg")
    x_webm = write_video(src / "k" / "x.webm", _ramp(8, 32, 32), codec="vp9")
    manifest = write_manifest(tmp_path / "m.csv", [_row(x_avi, 0), _row(x_webm, 0)])
    mj, _ = transcode_manifest(manifest, tmp_path / "mj", short_side=16, codec="mjpeg", workers=1,
                               progress=False)
    assert sorted(Path(r.path).name for r in mj.rows) == ["x.avi.avi", "x.webm.avi"]
    assert all(r.ok and r.num_frames == 8 for r in mj.rows)
    assert _keyframes(Path(mj.rows[0].path)) == list(range(8))
    vp, _ = transcode_manifest(manifest, tmp_path / "vp", short_side=16, gop=2, codec="vp9", workers=1,
                               progress=False)
    assert all(r.ok and r.path.endswith(".webm") and (r.width, r.height) == (16, 16) for r in vp.rows)


def test_bad_arguments(source: Path, tmp_path: Path) -> None:
    bad = [({"codec": "mpeg4"}, "--codec"), ({"gop": 0}, "--gop"), ({"short_side": 1}, "short")]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            transcode_manifest(source, tmp_path / "o", **kwargs)
    assert output_size(64, 48, 16) == (22, 16) and output_size(30, 50, 15) == (16, 26)

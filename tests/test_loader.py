"""make_loader and load_clips: batches, skipping bad files, determinism, rank sharding, multi-clip samples,
the per-video (evaluation) mode, frame-count mismatches, and the train / evaluation / prediction paths
agreeing on the clips they take."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import descendants

from vidfast.data.batch import Batch
from vidfast.data.loader import EpochSampler, LoaderConfig, make_loader
from vidfast.data.manifest import ManifestRow, read_manifest, write_manifest
from vidfast.data.policies import ClipOutput, ClipPolicy, CubicPuzzle, clip_policy
from vidfast.data.reader import OpenSegment, load_clips, plan_read, read_clips
from vidfast.data.video_io import write_video
from vidfast.errors import DataError
from vidfast.puzzle import PuzzleConfig
from vidfast.ranks import Rank, current_rank

T, H, W = 20, 32, 40
GOOD = 6


def _row(
    path: Path, label: int, split: str = "train", start: float | None = None, end: float | None = None
) -> ManifestRow:
    return ManifestRow(str(path), label, f"class{label}", split, start, end, T, 25.0, W, H, "ok", "")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 decodable H.264 videos (2 classes), a corrupt file and a truncated one, all marked ok (as if
    they broke
    after indexing), plus one val video with a trimmed segment."""
    root = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(GOOD):
        frames = np.cumsum(rng.integers(0, 6, (T, H, W, 3)), axis=0).astype(np.uint8)
        rows.append(_row(write_video(root / f"v{i}.mp4", frames, gop=4), i % 2))
    (root / "corrupt.mp4").write_bytes(b"\x00\x01junk" * 100)
    truncated = root / "truncated.mp4"
    truncated.write_bytes((root / "v0.mp4").read_bytes()[:1500])
    rows += [_row(root / "corrupt.mp4", 0), _row(truncated, 1)]
    rows.append(_row(root / "v1.mp4", 1, split="val", start=0.2, end=0.6))
    return write_manifest(root / "manifest.csv", rows)


def _loader(manifest: Path, policy: ClipPolicy | None = None, split: str = "train", clip_len: int = 8,
            channels_last: bool = False, **options) -> object:
    """``make_loader`` with 16-px clips of ``clip_len`` frames (``options``: LoaderConfig fields, else clip
    options of ``clip_policy``)."""
    config = LoaderConfig(**LoaderConfig.take(options))
    if policy is None:
        output = ClipOutput(channels_last=channels_last)
        policy = clip_policy(clip_len=clip_len, size=16, output=output, **options)
    return make_loader(manifest, policy, config, split=split)


def _epoch(loader, epoch: int) -> list[Batch]:
    loader.set_epoch(epoch)
    return list(loader)


def _cat(batches: list[Batch], key: str) -> torch.Tensor:
    return torch.cat([getattr(b, key) for b in batches])


def test_classify_batches_and_skips(manifest: Path, caplog: pytest.LogCaptureFixture) -> None:
    loader = _loader(manifest, batch_size=4, workers=0)
    assert loader.num_videos == GOOD + 2 and loader.class_names == ["class0", "class1"] and len(loader) == 2
    with caplog.at_level(logging.WARNING, logger="vidfast.data"):
        batches = _epoch(loader, 0) + _epoch(loader, 1)
    for b in batches:
        assert b.video.shape[1:] == (3, 8, 16, 16) and b.video.dtype == torch.float32
        assert b.label.dtype == torch.long and b.video_index.shape == b.clip_index.shape == b.label.shape
    assert sum(len(b.skipped) for b in batches) == loader.num_skipped == 4  # 2 bad files x 2 epochs
    assert {s.path.rsplit("/", 1)[-1] for b in batches for s in b.skipped} == {"corrupt.mp4", "truncated.mp4"}
    assert sorted(_cat(batches[:2], "video_index").tolist()) == list(range(GOOD))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and any("corrupt.mp4" in w for w in warnings)  # logged once per file


def test_batch_of_only_bad_videos_is_dropped_or_kept_empty(manifest: Path) -> None:
    """Batch size 1 without shuffling: each bad file is a batch of its own; ``empty_batches`` keeps it (for
    DDP ranks, which must all take every step) as a batch without videos and one skip."""
    dropped = _epoch(_loader(manifest, batch_size=1, workers=0, shuffle=False), 0)
    assert len(dropped) == GOOD and all(b.video is not None and not b.skipped for b in dropped)
    keeping = _loader(
        manifest, batch_size=1, workers=0, shuffle=False, empty_batches=True
    )
    kept = _epoch(keeping, 0)
    assert len(kept) == GOOD + 2
    assert [(b.video, len(b), len(b.skipped)) for b in kept[GOOD:]] == [(None, 0, 1), (None, 0, 1)]


def test_deterministic_per_seed_and_epoch(manifest: Path) -> None:
    def run(workers: int, epoch: int, seed: int = 0) -> list[Batch]:
        return _epoch(
            _loader(manifest, batch_size=3, workers=workers, seed=seed), epoch
        )

    first, again, two_workers = run(0, 1), run(0, 1), run(2, 1)
    for a, b, c in zip(first, again, two_workers, strict=True):
        torch.testing.assert_close(a.video, b.video)
        torch.testing.assert_close(a.video, c.video)
        assert torch.equal(a.video_index, c.video_index)
    other_epoch, other_seed = run(0, 2), run(0, 1, seed=5)
    assert not torch.equal(_cat(first, "video_index"), _cat(other_epoch, "video_index"))
    assert not torch.allclose(_cat(first, "video")[:1], _cat(other_seed, "video")[:1])


def test_epoch_started_at_a_later_batch_gives_the_rest_of_the_same_epoch(manifest: Path) -> None:
    """What a mid-epoch resume relies on: the skipped batches are not loaded, the others come out the same."""
    loader = _loader(manifest, batch_size=2, workers=0, empty_batches=True)
    full = _epoch(loader, 3)
    assert len(full) == 4
    opened = loader.num_skipped
    loader.set_epoch(3, start_batch=2)
    rest = list(loader)
    assert len(rest) == 2
    for a, b in zip(full[2:], rest, strict=True):
        assert a.skipped == b.skipped and len(a.videos) == len(b.videos)
        for key in ("label", "video_index", "clip_index"):
            assert torch.equal(getattr(a, key), getattr(b, key)), key
        assert all(torch.equal(x, y) for x, y in zip(a.videos, b.videos, strict=True))
    skipped_before = sum(len(b.skipped) for b in full[:2])
    assert loader.num_skipped - opened == 2 - skipped_before  # the two bad files, minus those not reached
    assert _epoch(loader, 3)[0].video_index.tolist() == full[0].video_index.tolist()  # start resets


def test_crop_in_main_equals_crop_in_worker(manifest: Path) -> None:
    kwargs = dict(clip_len=8, batch_size=4, workers=0, channels_last=True)
    worker = _epoch(_loader(manifest, crop_in="worker", **kwargs), 3)
    main = _epoch(_loader(manifest, crop_in="main", **kwargs), 3)
    for a, b in zip(worker, main, strict=True):
        torch.testing.assert_close(a.video, b.video)
        assert a.video.is_contiguous(memory_format=torch.channels_last_3d)
        assert b.video.is_contiguous(memory_format=torch.channels_last_3d)


def test_rank_sharding() -> None:
    shards = [list(EpochSampler(10, shuffle=True, seed=3, shard=Rank(r, 3))) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    indices = [i for s in shards for _, i in s]
    assert set(indices) == set(range(10)) and len(indices) == 12  # padded by wrapping around, like torch's
    assert len({i for _, i in shards[0]} & {i for _, i in shards[1]}) <= 1
    sampler = EpochSampler(10, shuffle=True, seed=3, shard=Rank(0, 3))
    sampler.epoch = 4
    assert {e for e, _ in sampler} == {4}
    assert current_rank(None) == Rank(0, 1)  # torch.distributed is not initialised here
    with pytest.raises(ValueError, match="distributed"):
        current_rank(True)


def test_a_ranks_workers_start_from_the_fork_server_and_give_the_same_batches(
    manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under DDP, workers forked from the rank could inherit a lock that another of its threads held and hang
    (CPython gh-112275): they start from a fork server instead, and read the rank's shard as before."""
    import vidfast.data.loader as loader_module

    assert _loader(manifest, batch_size=3, workers=2).loader.multiprocessing_context is None  # one process
    monkeypatch.setattr(loader_module, "current_rank", lambda distributed=None: Rank(1, 2))
    rank_loader = _loader(manifest, batch_size=3, workers=2)
    assert rank_loader.loader.multiprocessing_context.get_start_method() == "forkserver"
    in_process = _epoch(_loader(manifest, batch_size=3, workers=0), 2)
    from_workers = _epoch(rank_loader, 2)
    assert len(in_process) == len(from_workers) > 0
    for a, b in zip(in_process, from_workers, strict=True):
        assert torch.equal(a.video_index, b.video_index) and torch.equal(a.video, b.video)


def test_multi_clip_evaluation(manifest: Path) -> None:
    uniform = _loader(manifest, sampling="uniform", clips=3, spatial="center", hflip=False, batch_size=5,
                      workers=0)
    assert uniform.num_samples == (GOOD + 2) * 3
    batches = _epoch(uniform, 0)
    pairs = list(
        zip(_cat(batches, "video_index").tolist(), _cat(batches, "clip_index").tolist(), strict=True)
    )
    assert sorted(pairs) == [(v, c) for v in range(GOOD) for c in range(3)]
    videos = _cat(batches, "video")
    assert not torch.allclose(videos[0], videos[1])  # different clips of one video
    sliding = _loader(manifest, sampling="sliding", spatial="center", batch_size=8, workers=0)
    assert sliding.num_samples == (GOOD + 2) * 3  # windows at 0, 8 and 12 cover 20 frames
    val = _epoch(
        _loader(
            manifest,
            split="val",
            clip_len=4,
            sampling="center",
            spatial="center",
            batch_size=2,
            workers=0,
        ),
        0,
    )
    assert val[0].video.shape == (1, 3, 4, 16, 16) and val[0].label.tolist() == [1]


def test_puzzle_batches(manifest: Path) -> None:
    cfg = PuzzleConfig(cube_len=4, out_size=8)
    loader = _loader(manifest, CubicPuzzle(cfg, ClipOutput(channels_last=True)), batch_size=4, workers=0)
    batches = _epoch(loader, 0)
    assert sum(len(x.video) for x in batches) == GOOD and sum(len(x.skipped) for x in batches) == 2
    b = batches[0]
    n = len(b.video)
    assert b.video.shape == (n, 4, 3, 4, 8, 8)
    assert b.video.permute(0, 1, 3, 4, 5, 2).is_contiguous()  # channels-last
    perm, rot, kind = b.targets["perm_label"], b.targets["rot_label"], b.targets["kind"]
    assert perm.shape == (n,) and perm.max() < 48 and rot.shape == (n, 4) and kind.shape == (n,)
    assert perm.dtype == rot.dtype == kind.dtype == torch.long


def test_load_clips(manifest: Path) -> None:
    path = read_manifest(manifest).rows[0].path
    clips = load_clips(path, clip_len=8, size=16, clips=3)
    raw = load_clips(path, clip_len=8, size=16, clips=3, normalize=False)
    assert clips.shape == (3, 3, 8, 16, 16) and clips.dtype == torch.float32
    assert raw.shape == (3, 8, 16, 16, 3) and raw.dtype == torch.uint8
    mean, std = torch.tensor([0.4345, 0.4051, 0.3775]), torch.tensor([0.2768, 0.2713, 0.2737])
    renormalised = (raw.float() / 255 - mean) / std
    torch.testing.assert_close(renormalised.permute(0, 4, 1, 2, 3), clips, atol=0.02, rtol=0)
    segment = load_clips(path, clip_len=4, size=16, clips=2, start=0.2, end=0.6)
    assert segment.shape == (2, 3, 4, 16, 16)
    with pytest.raises(DataError):
        load_clips(Path(path).with_name("corrupt.mp4"))


@pytest.mark.parametrize("sampling,clips,frame_step",
                         [("center", 1, 1), ("uniform", 3, 2), ("sliding", 1, 1)])
def test_train_eval_and_predict_take_the_same_clips(manifest: Path, sampling: str, clips: int,
                                                    frame_step: int) -> None:
    """For one trimmed row and the same settings, the loader (ClipDataset), the reader, evaluation
    (decode_clips) and prediction (load_clips: the ONNX path) take the same frames and boxes and give the
    same tensors."""
    from vidfast.scoring import ClipSpec, decode_clips

    rows = read_manifest(manifest)
    row = next(r for r in rows.rows if r.split == "val")  # v1.mp4, 0.2-0.6 s at 25 fps: frames 5..14
    spec = ClipSpec(clip_len=4, size=16, frame_step=frame_step, mean=(0.4, 0.4, 0.4), std=(0.25, 0.25, 0.25))
    if sampling == "center":
        policy = clip_policy("center", 4, frame_step, 16, output=ClipOutput(spec.mean, spec.std))
    else:
        policy = spec.policy("sliding") if sampling == "sliding" else spec.policy("uniform", clips=clips)
    with OpenSegment(row) as segment:
        assert (segment.lo, segment.num_frames) == (5, 10)
        planned = plan_read(segment, [policy])
    params = planned.params[0]
    taken = torch.from_numpy(planned.wanted)[params.frame_idx[:, 0]]  # source frame numbers [k, t]
    expected = {"center": [[8, 9, 10, 11]], "uniform": [[5, 7, 9, 11], [7, 9, 11, 13], [8, 10, 12, 14]],
                "sliding": [[5, 6, 7, 8], [9, 10, 11, 12], [11, 12, 13, 14]]}[sampling]
    assert taken.tolist() == expected
    assert params.boxes[:, 0].tolist() == [[0, 4, 32, 32]] * len(expected)  # central square of 40x32

    batch = _epoch(make_loader(rows, policy, LoaderConfig(batch_size=8, workers=0), split="val"), 0)[0]
    assert batch.clip_index.tolist() == list(range(len(expected)))
    (read,) = read_clips(row, policy)
    assert read.shape == (len(expected), 3, 4, 16, 16) and torch.equal(read, batch.video)
    per_video = LoaderConfig(batch_size=1, workers=0, per_video=True)
    (whole,) = _epoch(make_loader(rows, policy, per_video, split="val"), 0)  # the evaluation path
    assert torch.equal(whole.video, read) and whole.clip_index.tolist() == list(range(len(expected)))
    if sampling != "center":  # evaluation and prediction read uniform clips or sliding windows
        (evaluated,) = decode_clips(row, [spec], clips=clips, sliding=sampling == "sliding")
        assert torch.equal(evaluated, read)
    if sampling == "uniform":
        predicted = load_clips(row.path, clip_len=4, frame_step=frame_step, size=16, clips=clips,
                               start=row.start, end=row.end, mean=spec.mean, std=spec.std)
        assert torch.equal(predicted, read)


def test_keyframe_snapped_training_clips_start_on_keyframes(manifest: Path) -> None:
    """With ``keyframe_snap`` the loader's clips start on the decoder's keyframes (a GOP of 4 here) or at
    the segment's first or last start, also inside a trimmed segment; without it they start anywhere."""
    rows = read_manifest(manifest).select()
    starts: dict[int, set[int]] = {0: set(), 4: set()}
    for snap in starts:
        policy = clip_policy(clip_len=8, size=16, keyframe_snap=snap)
        for row in [r for r in rows if "corrupt" not in r.path and "truncated" not in r.path]:
            with OpenSegment(row) as segment:
                anchors = {*segment.key_frames.tolist(), 0, segment.num_frames - 8}
                for seed in range(20):
                    wanted = plan_read(segment, [policy], np.random.default_rng(seed)).wanted
                    starts[snap].add(int(wanted[0]) - segment.lo)
                    if snap:
                        assert int(wanted[0]) - segment.lo in anchors, (row.path, wanted)
    assert len(starts[4]) < len(starts[0])
    snapped = _loader(manifest, clip_len=8, keyframe_snap=4, workers=0, batch_size=3)
    assert sum(len(b) for b in _epoch(snapped, 0)) == GOOD


def test_per_video_mode_reads_each_video_once_with_all_its_clips(manifest: Path) -> None:
    """Evaluation's mode: an item is a whole video, every sample of each policy from one decode (as
    ``read_clips`` gives them); bad videos come as skips with their reason; under DDP every video goes to
    exactly one rank and no rank is padded."""
    rows = read_manifest(manifest)
    policies = [clip_policy("uniform", 4, 1, 16, clips=3), clip_policy("uniform", 8, 2, 8, clips=3)]
    loader = make_loader(rows, policies, LoaderConfig(batch_size=2, workers=0, per_video=True, shuffle=False,
                                                      empty_batches=True))
    assert loader.num_samples == GOOD + 2 and len(loader) == 4
    batches = _epoch(loader, 0)
    assert sum(len(b.skipped) for b in batches) == 2 and all(s.reason for b in batches for s in b.skipped)
    assert _cat(batches, "video_index").tolist() == [v for v in range(GOOD) for _ in range(3)]
    assert _cat(batches, "clip_index").tolist() == [0, 1, 2] * GOOD
    first = batches[0]
    assert [tuple(v.shape) for v in first.videos] == [(6, 3, 4, 16, 16), (6, 3, 8, 8, 8)]
    expected = read_clips(rows.table("train")[1], policies)
    assert all(torch.equal(v[3:], e) for v, e in zip(first.videos, expected, strict=True))
    shards = [list(EpochSampler(7, shuffle=False, shard=Rank(r, 3), pad=False)) for r in range(3)]
    assert sorted(i for s in shards for _, i in s) == list(range(7)) and [len(s) for s in shards] == [3, 2, 2]


def test_frame_count_mismatch_is_logged_counted_and_read_as_the_decoder_counts(
        tmp_path: Path, manifest: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A manifest that lists more frames than the video has (re-encoded after indexing): the loader reads the
    decoder's frames, warns once per video and counts it in ``mismatched`` (no silent clamping)."""
    row = read_manifest(manifest).rows[0]
    listed = ManifestRow(row.path, 0, "class0", "val", None, None, 2 * T, 25.0, W, H, "ok", "")
    path = write_manifest(tmp_path / "stale.csv", [listed])
    policy = clip_policy("sliding", 8, 1, 16)  # 40 listed frames: 5 windows; 20 decoded: 3
    loader = make_loader(path, policy, LoaderConfig(batch_size=8, workers=0), split="val")
    assert loader.num_samples == 5
    with caplog.at_level(logging.WARNING, logger="vidfast.data"):
        batches = _epoch(loader, 0) + _epoch(loader, 1)
    assert loader.mismatched == {row.path: (2 * T, T)} and len(batches) == 2
    assert sum("manifest counts 40 frames, the decoder 20" in r.getMessage() for r in caplog.records) == 1
    (read,) = read_clips(row, policy)
    assert torch.equal(batches[0].video[:3], read) and torch.equal(batches[0].video[3], read[-1])


def test_a_process_holding_a_loader_whose_workers_ignore_sigterm_exits(manifest: Path) -> None:
    """Training loaders' workers ignore SIGTERM (the main process saves first); a script that exits while
    still holding such a loader mid-epoch must not wait for them forever at exit."""
    import signal
    import subprocess
    import sys

    script = (
        "import signal, sys\n"
        "from vidfast.data.loader import LoaderConfig, make_loader\n"
        "from vidfast.data.policies import clip_policy\n"
        "loader = make_loader(sys.argv[1], clip_policy(clip_len=4, size=16), LoaderConfig(batch_size=2, "
        f"workers=2, ignore_signals=({int(signal.SIGTERM)},)))\n"
        "batches = iter(loader)\n"
        "next(batches)\n"
        "print('held', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(manifest)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "held" in done.stdout


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    """The processes of ``pids`` still running (not zombies) after up to ``seconds``."""
    import time

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + seconds
    while (left := {p for p in pids if running(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_a_killed_ranks_fork_server_and_workers_end_with_it(manifest: Path) -> None:
    """A rank killed outright (SIGKILL, the OOM killer) runs no cleanup: its fork server and workers must end
    by themselves. torch's watch looks at a worker's parent, the server, which its children keep alive."""
    import signal
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import vidfast.data.loader as loader_module\n"
        "from vidfast.data.policies import clip_policy\n"
        "from vidfast.ranks import Rank\n"
        "loader_module.current_rank = lambda distributed=None: Rank(0, 2)\n"
        "loader = loader_module.make_loader(sys.argv[1], clip_policy(clip_len=4, size=16), "
        "loader_module.LoaderConfig(batch_size=2, workers=2))\n"
        "batches = iter(loader)\n"
        "next(batches)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    rank = subprocess.Popen([sys.executable, "-c", script, str(manifest)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert rank.stdout.readline().strip() == "held"
        below = descendants(rank.pid)
        assert len(below) >= 3  # the fork server and the two workers
    finally:
        rank.send_signal(signal.SIGKILL)
        rank.wait(timeout=60)
    left = _wait_gone(below, 30)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after their rank was killed: {sorted(left)}"


@pytest.mark.parametrize("watch", ["pidfd", "polling"])
def test_exit_after_ends_the_process_when_the_watched_one_ends(watch: str) -> None:
    """``_exit_after`` with a pidfd, and by polling where there is none (kernels before 5.3)."""
    import subprocess
    import sys

    script = (
        "import os, subprocess, sys, threading, time\n"
        "import vidfast.data.loader as loader_module\n"
        "if sys.argv[1] == 'polling':\n"
        "    del os.pidfd_open\n"
        "watched = subprocess.Popen(['sleep', '0.5'])\n"
        "threading.Thread(target=loader_module._exit_after, args=(watched.pid,), daemon=True).start()\n"
        "watched.wait()\n"
        "time.sleep(30)\n"
        "print('outlived it', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, watch], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, ""), done.stderr[-2000:]

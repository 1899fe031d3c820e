"""Temporal and spatial clip samplers: index ranges, loop padding, coverage, box geometry."""

from __future__ import annotations

import numpy as np
import pytest

from vidfast.data.policies import ClipSampling
from vidfast.data.samplers import (
    SpatialConfig,
    TemporalConfig,
    center_box,
    clip_starts,
    loop_pad,
    num_clips,
    sample_box,
)


def sample_temporal(num_frames: int, cfg: TemporalConfig,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices ``[k, clip_len]`` of the clips a policy of ``cfg`` takes (central crop: no draws)."""
    policy = ClipSampling(cfg, SpatialConfig(mode="center", hflip=False))
    return policy.plan(num_frames, 8, 8, rng).frame_idx[:, 0].numpy()


def test_random_crop_stays_inside_and_steps() -> None:
    cfg = TemporalConfig(mode="random", clip_len=8, frame_step=2)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        (clip,) = sample_temporal(40, cfg, rng)
        assert clip.min() >= 0 and clip.max() < 40
        np.testing.assert_array_equal(np.diff(clip), 2)
        starts.add(int(clip[0]))
    assert starts == set(range(0, 40 - cfg.span + 1))  # every start position is reachable


def test_loop_padding_for_short_videos() -> None:
    np.testing.assert_array_equal(
        sample_temporal(5, TemporalConfig(mode="center", clip_len=8))[0], [0, 1, 2, 3, 4, 0, 1, 2]
    )
    np.testing.assert_array_equal(
        sample_temporal(5, TemporalConfig(mode="center", clip_len=4, frame_step=2))[0], [0, 2, 4, 0]
    )
    np.testing.assert_array_equal(loop_pad(np.array([3]), 3), [3, 3, 3])


def test_center_and_uniform() -> None:
    np.testing.assert_array_equal(
        sample_temporal(20, TemporalConfig(mode="center", clip_len=4))[0], [8, 9, 10, 11]
    )
    clips = sample_temporal(100, TemporalConfig(mode="uniform", clip_len=10, clips=5))
    assert clips.shape == (5, 10)
    np.testing.assert_array_equal(clips[:, 0], [0, 22, 45, 68, 90])  # first at 0, last ending at the end
    assert num_clips(100, TemporalConfig(mode="uniform", clips=5)) == 5
    assert num_clips(100, TemporalConfig(mode="random", clips=5)) == 1


@pytest.mark.parametrize(
    "num_frames,clip_len,stride", [(50, 16, None), (50, 16, 8), (16, 16, None), (7, 16, None)]
)
def test_sliding_windows_cover_the_video(num_frames: int, clip_len: int, stride: int | None) -> None:
    cfg = TemporalConfig(mode="sliding", clip_len=clip_len, stride=stride)
    clips = sample_temporal(num_frames, cfg)
    assert set(clips.ravel().tolist()) == set(range(num_frames))
    starts = clip_starts(num_frames, cfg)
    assert np.all(np.diff(starts) <= (stride or clip_len)) and np.all(np.diff(starts) > 0)
    assert clips.max() < num_frames


def test_multiscale_corner_crop_geometry() -> None:
    cfg = SpatialConfig(mode="multiscale", size=112)
    height, width = 240, 320
    sides = {int(240 * 2 ** (-i / 4)) for i in range(5)}
    rng = np.random.default_rng(0)
    seen_corners, seen_sides, flips = set(), set(), set()
    for _ in range(400):
        (y, x, h, w), flip = sample_box(height, width, cfg, rng)
        assert h == w and h in sides
        assert 0 <= y and y + h <= height and 0 <= x and x + w <= width
        corner = (
            {0: "top", height - h: "bottom"}.get(y, "mid"),
            {0: "left", width - w: "right"}.get(x, "mid"),
        )
        assert (
            corner
            in {("top", "left"), ("top", "right"), ("bottom", "left"), ("bottom", "right"), ("mid", "mid")}
            or h == height
        )  # a full-height box touches top and bottom
        seen_corners.add(corner)
        seen_sides.add(h)
        flips.add(flip)
    assert seen_sides == sides and len(seen_corners) >= 5 and flips == {True, False}


def test_random_resized_and_center_crop() -> None:
    cfg = SpatialConfig(mode="random_resized", area=(0.25, 1.0), ratio=(3 / 4, 4 / 3), hflip=False)
    rng = np.random.default_rng(1)
    for _ in range(300):
        (y, x, h, w), flip = sample_box(60, 80, cfg, rng)
        assert not flip
        assert 0 <= y and y + h <= 60 and 0 <= x and x + w <= 80
        assert 0.2 <= h * w / (60 * 80) <= 1.0
    assert sample_box(60, 80, SpatialConfig(mode="center"))[0] == (0, 10, 60, 60) == center_box(60, 80)
    assert center_box(80, 60, scale=0.5) == (25, 15, 30, 30)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="sampling"):
        TemporalConfig(mode="dense")
    with pytest.raises(ValueError, match="clip_len"):
        TemporalConfig(clip_len=0)
    with pytest.raises(ValueError, match="spatial"):
        SpatialConfig(mode="five_crop")
    with pytest.raises(ValueError, match="scales"):
        SpatialConfig(scales=(1.5,))
    with pytest.raises(ValueError, match="rng"):
        sample_temporal(10, TemporalConfig(mode="random"))


# ------------------------------------------------------------------------------------------ keyframe snapping

#: video layouts ("classes" of videos): (frames, keyframe positions)
LAYOUTS = {
    "gop16": (96, np.arange(0, 96, 16)),
    "gop16_long": (250, np.arange(0, 250, 16)),
    "irregular": (120, np.array([0, 10, 50, 53, 90, 118])),
}


def _draws(num_frames: int, keys: np.ndarray, snap: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(unsnapped start, snapped start) of ``n`` random clips of 16 frames, each pair from one seed."""
    plain, snapped = TemporalConfig("random", 16), TemporalConfig("random", 16, keyframe_snap=snap)
    pairs = [(clip_starts(num_frames, plain, np.random.default_rng(i), keys)[0],
              clip_starts(num_frames, snapped, np.random.default_rng(i), keys)[0]) for i in range(n)]
    return np.asarray(pairs).T


def _coverage(starts: np.ndarray, num_frames: int, span: int = 16) -> np.ndarray:
    """Fraction of clips that contain each frame ``[num_frames]``."""
    hits = np.zeros(num_frames)
    for s in starts:
        hits[s:s + span] += 1
    return hits / len(starts)


def test_keyframe_snap_off_changes_nothing() -> None:
    cfg = TemporalConfig("random", 16)
    keys = LAYOUTS["gop16"][1]
    for seed in range(50):
        assert clip_starts(96, cfg, np.random.default_rng(seed), keys) == \
            clip_starts(96, cfg, np.random.default_rng(seed))
    with pytest.raises(ValueError, match="keyframe_snap"):
        TemporalConfig(keyframe_snap=-1)


@pytest.mark.parametrize("snap", [4, 16])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_keyframe_snap_moves_starts_little_and_keeps_their_distribution(layout: str, snap: int) -> None:
    """Over many draws: every start moves at most ``keyframe_snap`` frames (to a keyframe or the last start,
    which stay reachable), the mean start is the unsnapped one, and the share of clips that see frame ``f``
    lies between the unsnapped shares of the clip windows narrowed and widened by ``keyframe_snap``: what a
    video (so a class) is seen at changes by no more than that shift. With a keyframe every 16 frames (the
    transcoded layout) each frame is moreover seen as often as some frame within 16 of it without snapping."""
    num_frames, keys = LAYOUTS[layout]
    last, n = num_frames - 16, 6000
    plain, snapped = _draws(num_frames, keys, snap, n)
    assert np.abs(snapped - plain).max() <= snap
    anchors = set(keys[keys <= last].tolist()) | {0, last}
    gaps = np.diff(sorted(anchors))
    if gaps.max() <= snap:  # every start lands on a keyframe (or the last start)
        assert set(snapped.tolist()) == anchors  # and all of them are reachable
    else:  # between keyframes further apart than 2 x snap, a start stays where it was drawn
        assert (snapped == plain).any()
        assert (snapped != plain).any() == (gaps.min() <= 2 * snap)
    assert abs(snapped.mean() - plain.mean()) < 5 * plain.std() / np.sqrt(n) + 0.5
    seen = _coverage(snapped, num_frames)
    assert (seen > 0).all()
    starts = np.bincount(plain, minlength=num_frames) / n
    tolerance = 5 * np.sqrt(0.25 / n)
    for f in range(num_frames):
        widest = starts[max(f - 15 - snap, 0): f + snap + 1].sum()
        narrowest = starts[max(f - 15 + snap, 0): max(f - snap + 1, 0)].sum()
        assert narrowest - tolerance <= seen[f] <= widest + tolerance, (f, seen[f], narrowest, widest)
    if layout.startswith("gop16") and snap == 16:
        seen_plain = _coverage(plain, num_frames)
        for f in range(num_frames):
            near = seen_plain[max(f - snap, 0): f + snap + 1]
            assert near.min() - tolerance <= seen[f] <= near.max() + tolerance, (f, seen[f])


def test_keyframe_snap_does_nothing_for_a_short_video_or_without_keyframes() -> None:
    cfg = TemporalConfig("random", 16, keyframe_snap=16)
    assert clip_starts(10, cfg, np.random.default_rng(0), np.array([0]))[0] == 0
    assert clip_starts(96, cfg, np.random.default_rng(3))[0] == \
        clip_starts(96, TemporalConfig("random", 16), np.random.default_rng(3))[0]

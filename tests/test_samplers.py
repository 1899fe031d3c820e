"""Temporal and spatial clip samplers: index ranges, loop padding, coverage, box geometry."""

from __future__ import annotations

import numpy as np
import pytest

from vidfast.data.samplers import (
    SpatialConfig,
    TemporalConfig,
    center_box,
    clip_starts,
    loop_pad,
    num_clips,
    sample_box,
    sample_temporal,
)


def test_random_crop_stays_inside_and_steps() -> None:
    cfg = TemporalConfig(mode="random", clip_len=8, step=2)
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
        sample_temporal(5, TemporalConfig(mode="center", clip_len=4, step=2))[0], [0, 2, 4, 0]
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

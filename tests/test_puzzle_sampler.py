"""Space-Time Cubic Puzzle sampler: geometry, labels, and reassembly through cube_crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidfast.ops import cube_crop
from vidfast.puzzle import (
    PERMUTATIONS,
    SPATIAL,
    TEMPORAL,
    PuzzleConfig,
    PuzzleOptions,
    sample_puzzle,
    temporal_fits,
)


def test_permutation_table() -> None:
    assert PERMUTATIONS.shape == (24, 4)
    assert len({tuple(p) for p in PERMUTATIONS}) == 24
    np.testing.assert_array_equal(PERMUTATIONS[0], [0, 1, 2, 3])


def test_paper_geometry_at_224() -> None:
    """At 224x224 the cubes are 80x80x16, offset in [0, 32) inside their 112x112 cells."""
    cfg = PuzzleConfig()
    rng = np.random.default_rng(0)
    for _ in range(100):
        p = sample_puzzle(128, 224, 224, cfg, rng)
        assert p.frame_idx.shape == (4, 16) and p.boxes.shape == (4, 4)
        assert np.all(p.boxes[:, 2:] == 80)
        inner_y, inner_x = p.boxes[:, 0] % 112, p.boxes[:, 1] % 112
        assert np.all((inner_y < 32) & (inner_x < 32))
        assert np.all(np.diff(p.frame_idx, axis=1) == 1)
        cells = p.boxes[:, 0] // 112 * 2 + p.boxes[:, 1] // 112
        times = p.frame_idx[:, 0] // 32  # four temporal cells of 128 / 4 frames
        if p.kind == SPATIAL:
            assert sorted(cells) == [0, 1, 2, 3] and len(set(times)) == 1
        else:
            assert len(set(cells)) == 1 and list(times) == [0, 1, 2, 3]
        assert np.all(p.frame_idx[:, -1] // 32 == times)  # a cube stays within its temporal cell


@pytest.mark.parametrize("shape", [(8, 32, 32), (40, 24, 40), (3, 16, 16)])
def test_scaled_geometry_stays_inside(shape: tuple[int, int, int]) -> None:
    t, h, w = shape
    rng = np.random.default_rng(1)
    cfg = PuzzleConfig(cube_len=4, out_size=8)
    kinds = set()
    for _ in range(100):
        p = sample_puzzle(t, h, w, cfg, rng)
        kinds.add(p.kind)
        y, x, bh, bw = p.boxes.T
        assert np.all(y >= 0) and np.all(x >= 0) and np.all(y + bh <= h) and np.all(x + bw <= w)
        assert p.frame_idx.min() >= 0 and p.frame_idx.max() < t
    assert kinds == ({SPATIAL, TEMPORAL} if t >= 16 else {SPATIAL})  # 4 disjoint 4-frame cubes need 16


@pytest.mark.parametrize("source_frames", [None, 24, 64])
def test_short_videos_get_spatial_puzzles_instead_of_wrapped_temporal_ones(source_frames: int | None) -> None:
    """A temporal puzzle needs four disjoint cubes; shorter videos (or source_frames) fall back to spatial
    ones."""
    cfg = PuzzleConfig(cube_len=8, frame_step=1, source_frames=source_frames, spatial_prob=0.0)
    assert temporal_fits(32, cfg) == (source_frames != 24) and not temporal_fits(31, cfg)
    rng = np.random.default_rng(3)
    for num_frames in (5, 20, 31, 32, 33, 48, 100):
        fits = num_frames >= 32 and (source_frames is None or source_frames >= 32)
        assert temporal_fits(num_frames, cfg) == fits, num_frames
        for _ in range(30):
            p = sample_puzzle(num_frames, 32, 32, cfg, rng)
            assert p.fallback == (not fits) and p.kind == (TEMPORAL if fits else SPATIAL)
            assert p.perm_label == p.perm_index + 24 * p.kind
            assert 0 <= p.frame_idx.min() and p.frame_idx.max() < num_frames
            if fits:  # in time order, disjoint, never wrapped
                assert np.all(np.diff(p.frame_idx, axis=1) == 1)
                assert np.all(p.frame_idx[1:, 0] > p.frame_idx[:-1, -1])
            else:  # the four spatial pieces share one run of frames
                assert np.all(p.frame_idx == p.frame_idx[0])
    stepped = PuzzleConfig(cube_len=8, frame_step=2)  # a cube spans 15 frames: 60 are needed
    assert stepped.cube_span == 15 and temporal_fits(60, stepped) and not temporal_fits(59, stepped)


def test_labels_and_options() -> None:
    rng = np.random.default_rng(2)
    for _ in range(50):
        p = sample_puzzle(64, 64, 64, PuzzleConfig(), rng)
        np.testing.assert_array_equal(PERMUTATIONS[p.perm_index], p.perm)
        assert p.perm_label == p.perm_index + 24 * p.kind
        assert np.all((p.rot >= 0) & (p.rot < 4)) and np.array_equal(p.rot_label, p.rot)
        assert set(p.channel.tolist()) <= {-1, 0, 1, 2}
    plain = PuzzleConfig(joint_label=False, rotation=False, channel_prob=0.0, jitter=False, spatial_prob=1.0)
    assert (plain.num_perm_classes, plain.rotation_classes) == (24, 0)
    assert (PuzzleConfig().num_perm_classes, PuzzleConfig().rotation_classes) == (48, 4)
    p = sample_puzzle(64, 224, 224, plain, rng)
    assert p.kind == SPATIAL and p.perm_label == p.perm_index
    assert np.all(p.rot == 0) and np.all(p.channel == -1)
    np.testing.assert_array_equal(p.boxes[:, 0] % 112, 16)  # no jitter: centred in the cell
    with pytest.raises(ValueError, match="cube_size"):
        PuzzleConfig(cube_size=120)
    with pytest.raises(ValueError, match="spatial_prob"):
        PuzzleConfig(spatial_prob=1.5)
    with pytest.raises(ValueError, match="source_frames"):
        PuzzleConfig(source_frames=3)
    with pytest.raises(ValueError, match="cube_len"):
        PuzzleConfig(cube_len=0)


def test_the_geometry_joins_the_options_once() -> None:
    """``PuzzleConfig.of`` puts the cubes' geometry on a config section's choices, and ``options`` gives
    those back: every field is one or the other."""
    options = PuzzleOptions(spatial_prob=0.0, source_frames=40, jitter=False, channel_prob=0.0)
    cfg = PuzzleConfig.of(options, cube_len=4, out_size=24, frame_step=2)
    assert (cfg.cube_len, cfg.out_size, cfg.frame_step) == (4, 24, 2)
    assert (cfg.source_frames, cfg.jitter, cfg.spatial_prob) == (40, False, 0.0)
    assert cfg.options == options and PuzzleConfig().options == PuzzleOptions()


def test_reassembly_with_inverse_permutation() -> None:
    """Pieces cut with perm/rot, un-rotated and put back with the inverse permutation, equal the cubes cut in
    grid order."""
    torch.manual_seed(0)
    video = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    rng = np.random.default_rng(3)
    cfg = PuzzleConfig(cube_len=4, out_size=8, channel_prob=0.0)
    for _ in range(20):
        p = sample_puzzle(16, 32, 32, cfg, rng)
        args = (video[None], torch.from_numpy(p.frame_idx)[None], torch.from_numpy(p.boxes)[None], (4, 8, 8))
        pieces = cube_crop(*args, perm=torch.from_numpy(p.perm)[None], rot=torch.from_numpy(p.rot)[None])[0]
        original = cube_crop(*args)[0]
        unrotated = torch.stack([torch.rot90(pieces[j], k=-int(p.rot[j]), dims=(-2, -1)) for j in range(4)])
        inverse = np.argsort(p.perm)
        torch.testing.assert_close(unrotated[torch.from_numpy(inverse)], original)
        if p.perm_index != 0:
            assert not torch.equal(unrotated, original)

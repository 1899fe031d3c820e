"""Space-Time Cubic Puzzle sampler (Kim, Cho, Kweon, AAAI 2019).

Per clip: draw the puzzle kind (spatial 2x2x1 or temporal 1x1x4), cut four cubes from a 2x2 (space) x 4 (time)
grid of cells with a random offset inside each cell (the "jittering" that leaves gaps between cubes), shuffle
them with one of the 4! = 24 permutations, optionally rotate each by a multiple of 90 degrees (a per-piece
rotation label) and replicate one colour channel into all three. The output is the argument set of
:func:`vidfast.ops.cube_crop` plus the labels. Defaults follow ``st-puzzle-notes.md``: every "likely"
item is an option here.

Geometry is stated in the paper's reference frame (frames resized to ``frame_size`` = 224, cells of 112, cubes
of 80 px) and mapped onto the real frame by ``H / frame_size`` and ``W / frame_size``, so a 32x32 test
clip is cut the same way as a 320x240 video; ``out_size`` is the size the cubes are resized to.

Short videos: a temporal puzzle needs four disjoint cubes, one per quarter of its ``source_frames``, so each
quarter must hold a whole cube (``source_frames // 4 >= (cube_len - 1) * frame_step + 1``, with
``source_frames`` at most the video's length). Where it does not, wrapped or overlapping cubes would either
give the order away (shared frames line up) or teach nothing, so such a sample is a *spatial* puzzle instead
(``PuzzleSample.fallback`` is True; :func:`temporal_fits` tells it ahead of time, e.g. to count the short
videos of a manifest). A spatial puzzle needs no length: its four cubes share their frames, looped when the
video is shorter than a cube.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

#: the 24 orders of 4 pieces, lexicographic; the permutation label is an index into this table
PERMUTATIONS: np.ndarray = np.asarray(list(itertools.permutations(range(4))), dtype=np.int64)
SPATIAL, TEMPORAL = 0, 1


@dataclass(frozen=True)
class PuzzleOptions:
    """The sampler's choices, apart from the cubes' geometry (the config section ``puzzle.sampler``;
    defaults: the notes' values).

    - ``spatial_prob``: probability of a spatial (2x2x1) puzzle, else temporal (1x1x4).
    - ``frame_size``, ``cell_size``, ``cube_size``: reference geometry in pixels (224 / 112 / 80); the random
      offset of a cube inside its cell lies in ``[0, cell_size - cube_size)`` when ``jitter``, else centred.
    - ``source_frames``: consecutive frames of the video a puzzle is cut from, split into its 4 temporal cells
      (None or more than the video: the whole video); a cube's temporal offset lies in
      ``[0, source_frames / 4 - cube_len * frame_step]``; a video too short for four disjoint cubes gets a
      spatial puzzle instead (see the module docstring).
    - ``joint_label``: one 48-way label ``perm + 24 * kind`` (True) or the 24-way permutation index.
    - ``rotation``: rotate every piece by ``k * 90`` degrees, ``k`` uniform in 0..3 (``rot_label`` = k).
    - ``channel_prob``: per-piece probability of copying one random channel into all three.
    """

    spatial_prob: float = 0.5
    frame_size: int = 224
    cell_size: int = 112
    cube_size: int = 80
    source_frames: int | None = None
    jitter: bool = True
    joint_label: bool = True
    rotation: bool = True
    channel_prob: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.spatial_prob <= 1.0 or not 0.0 <= self.channel_prob <= 1.0:
            raise ValueError(
                f"spatial_prob and channel_prob must be in [0, 1], "
                f"got {self.spatial_prob}, {self.channel_prob}"
            )
        if not 0 < self.cube_size <= self.cell_size <= self.frame_size // 2:
            raise ValueError(
                f"need 0 < cube_size <= cell_size <= frame_size / 2, got "
                f"{self.cube_size}, {self.cell_size}, {self.frame_size}"
            )
        if self.source_frames is not None and self.source_frames < 4:
            raise ValueError(f"source_frames must be >= 4 (four temporal cells), got {self.source_frames}")


@dataclass(frozen=True)
class PuzzleConfig(PuzzleOptions):
    """Every choice of the puzzle sampler: the :class:`PuzzleOptions` and the cubes' geometry, ``cube_len``
    frames ``frame_step`` apart, resized to ``out_size`` square (a run takes them from its data section:
    :func:`vidfast.engine.build.puzzle_config`)."""

    cube_len: int = 16
    out_size: int = 80
    frame_step: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.out_size, self.cube_len, self.frame_step) < 1:
            raise ValueError("out_size, cube_len and frame_step must be >= 1")

    @classmethod
    def of(cls, options: PuzzleOptions, cube_len: int, out_size: int, frame_step: int) -> PuzzleConfig:
        """``options`` with the geometry ``cube_len`` x ``out_size`` x ``out_size``, ``frame_step`` apart."""
        return cls(**dataclasses.asdict(options), cube_len=cube_len, out_size=out_size, frame_step=frame_step)

    @property
    def options(self) -> PuzzleOptions:
        """The choices without the geometry."""
        names = [f.name for f in dataclasses.fields(PuzzleOptions)]
        return PuzzleOptions(**{name: getattr(self, name) for name in names})

    @property
    def cube_span(self) -> int:
        """Source frames one cube spans: ``(cube_len - 1) * frame_step + 1``."""
        return (self.cube_len - 1) * self.frame_step + 1

    @property
    def num_perm_classes(self) -> int:
        """Classes of ``perm_label``: 48 with ``joint_label``, else 24."""
        return len(PERMUTATIONS) * (2 if self.joint_label else 1)

    @property
    def rotation_classes(self) -> int:
        """Classes of ``rot_label`` per piece: 4 with ``rotation``, else 0 (no rotation head)."""
        return 4 if self.rotation else 0


@dataclass
class PuzzleSample:
    """One puzzle: ``cube_crop`` arguments for its 4 pieces and the labels.

    ``frame_idx`` int64 ``[4, cube_len]`` and ``boxes`` ``[4, 4]`` (y0, x0, h, w) describe the cells in grid
    order (spatial: row-major 2x2; temporal: time order); output piece ``j`` is input piece ``perm[j]``;
    ``rot``/``channel`` ``[4]`` apply to output pieces; ``perm_label`` is the class, ``rot_label`` = ``rot``;
    ``fallback``: a temporal puzzle was drawn but the video is too short for one, so this is a spatial one.
    """

    frame_idx: np.ndarray
    boxes: np.ndarray
    perm: np.ndarray
    rot: np.ndarray
    channel: np.ndarray
    kind: int
    perm_index: int
    perm_label: int
    fallback: bool = False

    @property
    def rot_label(self) -> np.ndarray:
        return self.rot


def _cell_offsets(rng: np.random.Generator, cfg: PuzzleConfig, n: int) -> np.ndarray:
    """Offsets ``[n, 2]`` (y, x) of cubes inside their cells in reference pixels."""
    room = cfg.cell_size - cfg.cube_size
    if cfg.jitter and room > 0:
        return rng.integers(0, room, size=(n, 2))
    return np.full((n, 2), room // 2)


def _boxes(cells: np.ndarray, offsets: np.ndarray, height: int, width: int, cfg: PuzzleConfig) -> np.ndarray:
    """Boxes ``[n, 4]`` in frame pixels for grid cells ``cells`` ``[n]`` (row-major 2x2) at ``offsets``."""
    sy, sx = height / cfg.frame_size, width / cfg.frame_size
    h = max(1, int(round(cfg.cube_size * sy)))
    w = max(1, int(round(cfg.cube_size * sx)))
    y0 = np.minimum(
        np.floor(((cells // 2) * cfg.cell_size + offsets[:, 0]) * sy).astype(np.int64), height - h
    )
    x0 = np.minimum(np.floor(((cells % 2) * cfg.cell_size + offsets[:, 1]) * sx).astype(np.int64), width - w)
    return np.stack([y0, x0, np.full_like(y0, h), np.full_like(x0, w)], axis=1)


def _source_frames(num_frames: int, cfg: PuzzleConfig) -> int:
    """Frames the four temporal cells of a ``num_frames`` video split."""
    return num_frames if cfg.source_frames is None else min(cfg.source_frames, num_frames)


def temporal_fits(num_frames: int, cfg: PuzzleConfig) -> bool:
    """Whether a ``num_frames`` video holds four disjoint temporal cubes (else it gets spatial puzzles)."""
    return _source_frames(num_frames, cfg) // 4 >= cfg.cube_span


def _frames(cells: np.ndarray, rng: np.random.Generator, num_frames: int, cfg: PuzzleConfig) -> np.ndarray:
    """Frame indices ``[n, cube_len]`` for temporal cells ``cells`` ``[n]`` (0..3); indices past the end
    (only a spatial puzzle's single cell of a video shorter than a cube) loop to the start."""
    source = _source_frames(num_frames, cfg)
    start = int(rng.integers(0, num_frames - source + 1))
    cell_len = max(source // 4, 1)
    room = max(cell_len - cfg.cube_span, 0)
    offsets = rng.integers(0, room + 1, size=len(cells)) if cfg.jitter else np.full(len(cells), room // 2)
    firsts = start + cells * cell_len + offsets
    ramp = np.arange(cfg.cube_len) * cfg.frame_step
    return np.mod(firsts[:, None] + ramp[None, :], num_frames)


def sample_puzzle(
    num_frames: int, height: int, width: int, cfg: PuzzleConfig, rng: np.random.Generator
) -> PuzzleSample:
    """Draw one cubic puzzle for a ``num_frames x height x width`` video."""
    if min(num_frames, height, width) < 1:
        raise ValueError(f"video must be non-empty, got {num_frames}x{height}x{width}")
    kind = SPATIAL if rng.random() < cfg.spatial_prob else TEMPORAL
    fallback = kind == TEMPORAL and not temporal_fits(num_frames, cfg)
    if fallback:
        kind = SPATIAL
    order = np.arange(4)
    if kind == SPATIAL:  # four spatial cells, one temporal cell
        space, time = order, np.full(4, rng.integers(4))
    else:  # one spatial cell, four temporal cells
        space, time = np.full(4, rng.integers(4)), order
    boxes = _boxes(space, _cell_offsets(rng, cfg, 4), height, width, cfg)
    frame_idx = _frames(time, rng, num_frames, cfg)
    perm_index = int(rng.integers(len(PERMUTATIONS)))
    rot = rng.integers(0, 4, size=4) if cfg.rotation else np.zeros(4, dtype=np.int64)
    replicate = rng.random(4) < cfg.channel_prob
    channel = np.where(replicate, rng.integers(0, 3, size=4), -1)
    label = perm_index + len(PERMUTATIONS) * kind if cfg.joint_label else perm_index
    return PuzzleSample(
        frame_idx=frame_idx.astype(np.int64),
        boxes=boxes.astype(np.int64),
        perm=PERMUTATIONS[perm_index].copy(),
        rot=rot.astype(np.int64),
        channel=channel.astype(np.int64),
        kind=kind,
        perm_index=perm_index,
        perm_label=label,
        fallback=fallback,
    )

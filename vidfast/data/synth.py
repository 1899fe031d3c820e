"""A synthetic video dataset whose classes differ only in *motion*.

Every video shows a textured disc over a textured background. The textures, colours, disc size,
starting position and orientation are drawn at random per video from the same distribution for every
class, and the disc wraps around the frame borders (the frame is a torus), so any single frame looks
alike in every class: only the way the disc moves across frames (direction, speed, rotation,
oscillation) tells the class. A 3D CNN has to learn time to solve it.

Like natural video (sky above, ground below), every background carries one scene layout: light from above,
warm on the left and cool on the right. It is the same in every class, so it tells nothing about the class,
but it gives the self-supervised cubic puzzles something to solve: without it the cells of a frame would be
statistically alike and neither the arrangement nor the rotation of spatial cubes could be told (measured:
the 48-way puzzle stayed at chance; with it, the spatial-only puzzle reaches 97 % in 24 demo epochs). The
layout also lives in grey levels, which survive the puzzle's channel replication: brightness falls from top to
bottom and the background's grain is coarse on the left and fine on the right.

Like natural video, time has arrows: friction and gravity. Every motion of the disc (drift, spin, swing) slows
down by the factor ``decay`` from the first frame to the last, and small grey particles scattered over the
whole frame fall under gravity, ever faster, drawn as streaks as long as the distance they fell during the
frame (motion blur, like rain), so a clip played backwards is told from one played forwards, and the four
cubes of a temporal puzzle can be ordered by speed in whichever cell of the frame they are cut (the disc
covers only part of the frame). Every class slows down and has particles fall the same way, so the arrows
tell nothing about the class. How strong the arrow is decides whether a temporal puzzle is learnt. Measured
in memory on an AMD EPYC (2 cores) with the study's network (resnet18 x0.25) and cubes (8x32x32 from 48-pixel
videos), temporal-only puzzle with rotation and channel replication, 1800 AdamW steps of 8 puzzles: with 16
particles per 32x32 pixels drawn as round dots (the earlier default) it reached 27 %; with 48 drawn as streaks
(the default) 99 % (78 % after 600 steps); chance is 4 %. Through the study's pipeline (decoded H.264, 40
AdamW epochs of a 400-video pool) it reaches 100 % on held-out videos. The particles then cover about a fifth
of the frame, under the disc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vidfast.data.video_io import CODECS, write_video


@dataclass(frozen=True)
class Motion:
    """How the disc moves.

    ``direction``: (dy, dx) unit vector of a constant drift (zeros: none); ``speed_range``: its pixels
    per frame at a 32-pixel frame (scaled with the frame size); ``spin``: +1 clockwise, -1
    counter-clockwise, 0 none;
    ``swing``: axis of a periodic back-and-forth (0 vertical, 1 horizontal, None: none), ``swing_range`` its
    amplitude as a fraction of the frame; ``any_direction``: the drift's direction and the swing's axis are
    drawn per video, uniform over all angles (``direction`` and the ``swing`` axis are then ignored), so that
    no rotation of the frame changes the class.
    """

    name: str
    direction: tuple[float, float] = (0.0, 0.0)
    speed_range: tuple[float, float] = (1.0, 2.0)
    spin: int = 0
    swing: int | None = None
    swing_range: tuple[float, float] = (0.15, 0.25)
    any_direction: bool = False


def rotated(motion: Motion, quarter_turns: int) -> Motion:
    """The motion a video of ``motion`` shows after rotating its frames by ``quarter_turns`` x 90 degrees
    (``np.rot90`` on the frame axes): a drift ``(dy, dx)`` turns into ``(-dx, dy)`` per quarter turn, a
    swing axis swaps with each odd turn, the sense of a spin is kept (a rotation is no mirror), and a motion
    drawn in ``any_direction`` is unchanged (its distribution is rotation-invariant)."""
    turns = quarter_turns % 4
    if motion.any_direction or not turns:
        return motion
    dy, dx = motion.direction
    for _ in range(turns):
        dy, dx = -dx, dy
    swing = None if motion.swing is None else (motion.swing + turns) % 2
    return replace(motion, name=f"{motion.name}@rot{90 * turns}", direction=(dy + 0.0, dx + 0.0), swing=swing)


def same_motion(a: Motion, b: Motion) -> bool:
    """Whether ``a`` and ``b`` draw the same videos (every parameter but the name equal)."""
    return replace(a, name="") == replace(b, name="")


_D = 1.0 / math.sqrt(2.0)

#: The aligned class catalogue, in the order ``synthesize_dataset(classes=N)`` takes the first N. Its first
#: four
#: classes are the four 90-degree rotations of one drift: a network that knows which way is down in a frame
#: (the rotation pretext) has the classes half learnt.
MOTIONS: tuple[Motion, ...] = (
    Motion("move_right", (0.0, 1.0)),
    Motion("move_left", (0.0, -1.0)),
    Motion("move_down", (1.0, 0.0)),
    Motion("move_up", (-1.0, 0.0)),
    Motion("rotate_cw", spin=1),
    Motion("rotate_ccw", spin=-1),
    Motion("swing_horizontal", swing=1),
    Motion("swing_vertical", swing=0),
    Motion("move_down_right", (_D, _D)),
    Motion("move_up_left", (-_D, -_D)),
    Motion("move_down_left", (_D, -_D)),
    Motion("move_up_right", (-_D, _D)),
    Motion("move_right_fast", (0.0, 1.0), speed_range=(3.0, 4.0)),
    Motion("move_left_fast", (0.0, -1.0), speed_range=(3.0, 4.0)),
)


#: The control catalogue: no 90-degree rotation maps one of its classes onto another (every class is
#: rotation-invariant: spins keep their sense under rotation, drifts and swings take any direction), so
#: knowing which way is down tells nothing about the class.
CONTROL_MOTIONS: tuple[Motion, ...] = (
    Motion("spin_cw", spin=1),
    Motion("spin_ccw", spin=-1),
    Motion("slide", any_direction=True),
    Motion("swing", swing=0, any_direction=True),
    Motion("slide_fast", speed_range=(3.0, 4.0), any_direction=True),
    Motion("swing_wide", swing=0, swing_range=(0.3, 0.4), any_direction=True),
)
#: the catalogues ``synthesize_dataset(catalogue=...)`` chooses from
CATALOGUES: dict[str, tuple[Motion, ...]] = {"aligned": MOTIONS, "control": CONTROL_MOTIONS}
#: where the falling particles fall: down the frame in every video, or one of the four directions drawn per
#: video
GRAVITIES = ("down", "random")


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour field over the shared scene layout, plus fine grain: float ``[H, W, 3]`` in
    [0, 255]."""
    coarse = rng.uniform(40.0, 215.0, size=(max(2, height // 8), max(2, width // 8), 3))
    ys = np.linspace(0, coarse.shape[0] - 1, height)
    xs = np.linspace(0, coarse.shape[1] - 1, width)
    y0 = np.floor(ys).astype(int).clip(0, coarse.shape[0] - 2)
    x0 = np.floor(xs).astype(int).clip(0, coarse.shape[1] - 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    smooth = top * (1 - fy) + bottom * fy
    # the same scene layout in every video: light from above, warm on the left and cool on the right
    light = np.linspace(45.0, -45.0, height)[:, None, None]
    tint = np.linspace(1.0, -1.0, width)[None, :, None] * np.array([35.0, 0.0, -35.0])
    layout = 0.5 * smooth + 64.0 + light + tint
    return np.clip(layout + _grain(rng, height, width), 0.0, 255.0)


def _grain(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Grey texture ``[H, W, 1]`` whose grain is coarse on the left and fine on the right (a layout cue
    that channel replication keeps and that rotating a piece does not change)."""
    block = max(2, min(height, width) // 8)
    coarse = rng.normal(0.0, 22.0, size=(-(-height // block), -(-width // block)))
    coarse = np.repeat(np.repeat(coarse, block, 0), block, 1)[:height, :width]
    fine = rng.normal(0.0, 22.0, size=(height, width))
    right = np.linspace(0.0, 1.0, width)[None, :]
    return ((1.0 - right) * coarse + right * fine)[:, :, None]


def _disc_texture(rng: np.random.Generator, radius: int) -> np.ndarray:
    """A high-contrast checkerboard (a random dark and a random bright colour) with one quadrant in a third
    colour, so rotation shows: float ``[2R+1, 2R+1, 3]``."""
    colours = np.stack([rng.uniform(0.0, 70.0, 3), rng.uniform(185.0, 255.0, 3), rng.uniform(0.0, 255.0, 3)])
    size = 2 * radius + 1
    v, u = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float64)
    cell = max(2.0, radius / rng.uniform(1.5, 3.0))
    checker = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(int)
    texture = colours[checker]
    texture[(u > 0) & (v < 0)] = colours[2]
    return texture.reshape(size, size, 3)


def _travelled(frames: int, decay: float) -> np.ndarray:
    """Distance ``[T]`` covered by frame t at unit initial speed when the speed falls by ``decay`` from the
    first frame to the last (exponentially, as under friction); ``t`` itself when ``decay`` is 1."""
    t = np.arange(frames, dtype=np.float64)
    rate = math.log(decay) / max(frames - 1, 1)
    return t if rate == 0 else (1.0 - np.exp(-rate * t)) / rate


def _falling_particles(
    rng: np.random.Generator, frames: int, height: int, width: int, density: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Particles falling under gravity (wrapping around the frame): int ``y``, ``x`` ``[T, N]`` of the lowest
    pixel of each one's streak, the streak's length in pixels ``[T, N]`` (how many rows it fell into during
    the frame, as motion blur draws it; 0 while it falls less than one row) and its grey level ``[N]``. They
    start slow (0-0.4 px/frame at a 32-pixel frame) and end fast (2-3 px/frame), whatever the video length."""
    scale = min(height, width) / 32.0
    count = int(round(density * height * width / 1024.0))
    y0, x0 = rng.uniform(0, height, count), rng.uniform(0, width, count)
    v0 = rng.uniform(0.0, 0.4, count) * scale
    gravity = (rng.uniform(2.0, 3.0, count) * scale - v0) / max(frames - 1, 1)
    wind = rng.uniform(-0.3, 0.3, count) * scale
    t = np.arange(-1, frames, dtype=np.float64)[:, None]  # from the frame before the first one
    fall = np.floor(y0 + v0 * t + 0.5 * gravity * t * t).astype(np.int64)
    x = np.floor(x0 + wind * t[1:]).astype(np.int64) % width
    return fall[1:] % height, x, np.diff(fall, axis=0), rng.choice([20.0, 235.0], size=count)


def render_motion_video(
    motion: Motion, frames: int, size: tuple[int, int], rng: np.random.Generator, decay: float = 3.0,
    particles: float = 0.0, gravity: str = "down",
) -> np.ndarray:
    """Render one video of ``motion`` with random appearance from ``rng``, slowing down by ``decay`` over
    the video, with ``particles`` falling particles per 32x32 pixels, falling down the frame (``gravity``
    "down") or in one of the four directions drawn per video ("random"): uint8 ``[T, H, W, 3]``."""
    if gravity not in GRAVITIES:
        raise ValueError(f"gravity must be one of {', '.join(GRAVITIES)}, got {gravity!r}")
    height, width = size
    turns = int(rng.integers(4)) if gravity == "random" else 0  # quarter turns of the fall from "down"
    short = min(height, width)
    scale = short / 32.0
    background = _background(rng, height, width)
    radius = int(round(rng.uniform(0.18, 0.26) * short))
    texture = _disc_texture(rng, radius)
    centre = rng.uniform(0.0, 1.0, size=2) * (height, width)
    angle0 = rng.uniform(0.0, 2 * math.pi)
    speed = rng.uniform(*motion.speed_range) * scale
    angular_speed = math.radians(rng.uniform(8.0, 15.0))
    amplitude = rng.uniform(*motion.swing_range) * short
    period = rng.uniform(8.0, 14.0)
    phase = rng.uniform(0.0, 2 * math.pi)
    direction = np.asarray(motion.direction)
    swing_axis = np.array([1.0, 0.0] if motion.swing == 0 else [0.0, 1.0])
    if motion.any_direction:  # drawn last, so that the other catalogue's videos keep their random streams
        heading = rng.uniform(0.0, 2 * math.pi)
        direction = swing_axis = np.array([math.sin(heading), math.cos(heading)])

    travelled = _travelled(frames, decay)
    damping = decay ** (-np.arange(frames) / max(frames - 1, 1))
    canvas = (height, width) if turns % 2 == 0 else (width, height)
    fall_y, fall_x, streak, grey = _falling_particles(rng, frames, *canvas, particles)
    dot = max(1, int(round(scale)))
    streak = np.maximum(streak, dot)
    layer = np.full((frames, *canvas), -1.0)  # the particles' grey level, -1 where there is none
    for t in range(frames):
        for up in range(int(streak[t].max(initial=0))):
            falling = streak[t] > up
            for across in range(dot):
                rows, cols = (fall_y[t, falling] - up) % canvas[0], (fall_x[t, falling] + across) % canvas[1]
                layer[t, rows, cols] = grey[falling]
    layer = np.rot90(layer, turns, axes=(1, 2))

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        cy, cx = centre + speed * travelled[t] * direction
        if motion.swing is not None:
            offset = amplitude * damping[t] * math.sin(2 * math.pi * t / period + phase)
            cy, cx = cy + offset * swing_axis[0], cx + offset * swing_axis[1]
        angle = angle0 + motion.spin * angular_speed * travelled[t]
        dy = (yy - cy + height / 2) % height - height / 2
        dx = (xx - cx + width / 2) % width - width / 2
        u = math.cos(angle) * dx + math.sin(angle) * dy
        v = -math.sin(angle) * dx + math.cos(angle) * dy
        inside = u * u + v * v <= radius * radius
        frame = background.copy()
        falling = layer[t] >= 0
        frame[falling] = layer[t][falling][:, None]
        iu = np.clip(np.rint(u[inside]).astype(int) + radius, 0, 2 * radius)
        iv = np.clip(np.rint(v[inside]).astype(int) + radius, 0, 2 * radius)
        frame[inside] = texture[iv, iu]
        out[t] = np.rint(frame).astype(np.uint8)
    return out


def synthesize_dataset(
    root: str | Path,
    classes: int = 4,
    per_class: int = 8,
    frames: int = 32,
    size: tuple[int, int] = (64, 64),
    codec: str = "h264",
    seed: int = 0,
    fps: int = 25,
    decay: float = 3.0,
    particles: float = 48.0,
    first: int = 0,
    catalogue: str = "aligned",
    gravity: str = "down",
) -> list[Path]:
    """Write ``classes * per_class`` videos in the folder layout ``ROOT/<class>/<class>_<i:03d>.<ext>``;
    return their paths (class by class).

    Class k is ``CATALOGUES[catalogue][k]`` (``"aligned"``: :data:`MOTIONS`, whose first four classes are the
    four 90-degree rotations of one drift; ``"control"``: :data:`CONTROL_MOTIONS`, none of whose classes a
    90-degree rotation maps onto another); video i of class k is drawn from
    ``numpy.random.default_rng([seed, k, i])``, so the rendered frames are deterministic from ``seed`` and
    growing ``per_class`` keeps the earlier videos.
    ``first`` numbers the videos from ``first`` on (disjoint sets from one seed: ``first=0, per_class=10`` and
    ``first=10``); ``decay``: how much every motion slows down over a video (1: constant speed);
    ``particles``: falling particles per 32x32 pixels (0: none); ``gravity``: ``"down"`` (every video's
    particles fall down the frame) or ``"random"`` (one of the four directions drawn per video, so that "down"
    names no class).
    The encoded bytes almost always are too, but libx264 reads some uninitialised memory (glibc's
    ``MALLOC_PERTURB_`` changes its output), so now and then a file differs from run to run by codec noise.
    """
    if catalogue not in CATALOGUES:
        raise ValueError(f"catalogue must be one of {', '.join(CATALOGUES)}, got {catalogue!r}")
    if gravity not in GRAVITIES:
        raise ValueError(f"gravity must be one of {', '.join(GRAVITIES)}, got {gravity!r}")
    motions = CATALOGUES[catalogue]
    if not 1 <= classes <= len(motions):
        raise ValueError(f"classes must be between 1 and {len(motions)} ({catalogue}), got {classes}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    if decay < 1.0 or first < 0 or particles < 0:
        raise ValueError(f"decay must be >= 1, first and particles >= 0, got {decay}, {first}, {particles}")
    height, width = size
    if height < 16 or width < 16 or height % 2 or width % 2:
        raise ValueError(f"size must be even and at least 16x16, got {height}x{width}")
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(sorted(CODECS))}, got {codec!r}")
    suffix = CODECS[codec][2]
    root = Path(root)
    paths: list[Path] = []
    for k, motion in enumerate(motions[:classes]):
        for i in range(first, first + per_class):
            rng = np.random.default_rng([seed, k, i])
            video = render_motion_video(motion, frames, (height, width), rng, decay, particles, gravity)
            path = root / motion.name / f"{motion.name}_{i:03d}{suffix}"
            paths.append(write_video(path, video, fps=fps, codec=codec))
    return paths

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidfast.data.video_io import CODECS, write_video


@dataclass(frozen=True)
class Motion:
    """How the disc moves.

    ``direction``: (dy, dx) unit vector of a constant drift (zeros: none); ``speed_range``: its pixels
    per frame at a 32-pixel frame (scaled with the frame size); ``spin``: +1 clockwise, -1
    counter-clockwise, 0 none;
    ``swing``: axis of a periodic back-and-forth (0 vertical, 1 horizontal, None: none).
    """

    name: str
    direction: tuple[float, float] = (0.0, 0.0)
    speed_range: tuple[float, float] = (1.0, 2.0)
    spin: int = 0
    swing: int | None = None


_D = 1.0 / math.sqrt(2.0)

#: The class catalogue, in the order ``synthesize_dataset(classes=N)`` takes the first N.
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
    particles: float = 0.0,
) -> np.ndarray:
    """Render one video of ``motion`` with random appearance from ``rng``, slowing down by ``decay`` over
    the video, with ``particles`` falling particles per 32x32 pixels: uint8 ``[T, H, W, 3]``."""
    height, width = size
    short = min(height, width)
    scale = short / 32.0
    background = _background(rng, height, width)
    radius = int(round(rng.uniform(0.18, 0.26) * short))
    texture = _disc_texture(rng, radius)
    centre = rng.uniform(0.0, 1.0, size=2) * (height, width)
    angle0 = rng.uniform(0.0, 2 * math.pi)
    speed = rng.uniform(*motion.speed_range) * scale
    angular_speed = math.radians(rng.uniform(8.0, 15.0))
    amplitude = rng.uniform(0.15, 0.25) * short
    period = rng.uniform(8.0, 14.0)
    phase = rng.uniform(0.0, 2 * math.pi)

    travelled = _travelled(frames, decay)
    damping = decay ** (-np.arange(frames) / max(frames - 1, 1))
    fall_y, fall_x, streak, grey = _falling_particles(rng, frames, height, width, particles)
    dot = max(1, int(round(scale)))
    streak = np.maximum(streak, dot)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    for t in range(frames):
        cy, cx = centre + speed * travelled[t] * np.asarray(motion.direction)
        if motion.swing is not None:
            offset = amplitude * damping[t] * math.sin(2 * math.pi * t / period + phase)
            cy, cx = (cy + offset, cx) if motion.swing == 0 else (cy, cx + offset)
        angle = angle0 + motion.spin * angular_speed * travelled[t]
        dy = (yy - cy + height / 2) % height - height / 2
        dx = (xx - cx + width / 2) % width - width / 2
        u = math.cos(angle) * dx + math.sin(angle) * dy
        v = -math.sin(angle) * dx + math.cos(angle) * dy
        inside = u * u + v * v <= radius * radius
        frame = background.copy()
        for up in range(int(streak[t].max(initial=0))):
            falling = streak[t] > up
            for across in range(dot):
                rows, cols = (fall_y[t, falling] - up) % height, (fall_x[t, falling] + across) % width
                frame[rows, cols] = grey[falling, None]
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
) -> list[Path]:
    """Write ``classes * per_class`` videos in the folder layout ``ROOT/<class>/<class>_<i:03d>.<ext>``;
    return their paths (class by class).

    Class k is ``MOTIONS[k]``; video i of class k is drawn from ``numpy.random.default_rng([seed, k, i])``, so
    the rendered frames are deterministic from ``seed`` and growing ``per_class`` keeps the earlier videos.
    ``first`` numbers the videos from ``first`` on (disjoint sets from one seed: ``first=0, per_class=10`` and
    ``first=10``); ``decay``: how much every motion slows down over a video (1: constant speed);
    ``particles``: falling particles per 32x32 pixels (0: none).
    The encoded bytes almost always are too, but libx264 reads some uninitialised memory (glibc's
    ``MALLOC_PERTURB_`` changes its output), so now and then a file differs from run to run by codec noise.
    """
    if not 1 <= classes <= len(MOTIONS):
        raise ValueError(f"classes must be between 1 and {len(MOTIONS)}, got {classes}")
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
    for k, motion in enumerate(MOTIONS[:classes]):
        for i in range(first, first + per_class):
            rng = np.random.default_rng([seed, k, i])
            video = render_motion_video(motion, frames, (height, width), rng, decay, particles)
            path = root / motion.name / f"{motion.name}_{i:03d}{suffix}"
            paths.append(write_video(path, video, fps=fps, codec=codec))
    return paths

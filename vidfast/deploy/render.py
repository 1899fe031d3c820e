"""``--render``: the video re-encoded with each frame's timeline label, its score and a score bar drawn on it.

numpy drawing on the decoded frames (a 5x7 bitmap font defined here, scaled with the frame) and a PyAV
encode; no OpenCV or Pillow. A frame shows the window that covers it whose centre is nearest; a frame no
scored window covers (frames dropped in real-time mode) shows no label.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from vidfast.deploy.stream import StreamError
from vidfast.deploy.timeline import WindowResult, top_labels

# 5 columns x 7 rows per glyph, rows top to bottom; lower-case letters are drawn as capitals
_GLYPHS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#", "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.", "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####", "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####", "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.", "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#", "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#", "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.", "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#", "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.", "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.", "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.", "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..", "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.", "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####", "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.", "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.", "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.", "9": ".###. #...# #...# .#### ....# ...#. .##..",
    ".": "..... ..... ..... ..... ..... .##.. .##..", ":": "..... .##.. .##.. ..... .##.. .##.. .....",
    "-": "..... ..... ..... ##### ..... ..... .....", "_": "..... ..... ..... ..... ..... ..... #####",
    "/": "..... ....# ...#. ..#.. .#... #.... .....", "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.", ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    "?": ".###. #...# ....# ...#. ..#.. ..... ..#..", " ": "..... ..... ..... ..... ..... ..... .....",
}
_BITMAPS = {c: np.array([[ch == "#" for ch in row] for row in g.split()], bool) for c, g in _GLYPHS.items()}
GLYPH_W, GLYPH_H, ADVANCE = 5, 7, 6

TEXT_COLOR = np.array([255, 255, 255], np.uint8)
BAR_COLOR = np.array([40, 220, 60], np.uint8)
BAR_BACK = np.array([90, 90, 90], np.uint8)
PANEL_DIM = 0.35  # the panel behind the text keeps this fraction of the picture's brightness


def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """bool ``[7 * scale, 6 * scale * len(text)]``: ``text`` in the bitmap font (unknown characters: ?)."""
    glyphs = [_BITMAPS.get(c, _BITMAPS["?"]) for c in text.upper()]
    row = np.zeros((GLYPH_H, ADVANCE * max(len(glyphs), 1)), bool)
    for i, g in enumerate(glyphs):
        row[:, i * ADVANCE:i * ADVANCE + GLYPH_W] = g
    return np.kron(row, np.ones((scale, scale), bool))


def draw_label(rgb: np.ndarray, label: str, score: float) -> None:
    """Draw ``LABEL 0.87`` and a bar ``score`` long on a dimmed panel at the top left of ``rgb`` ``[H, W, 3]``
    (in place; clipped to the frame)."""
    h, w = rgb.shape[:2]
    scale = max(1, h // 180)
    mask = text_mask(f"{label} {score:.2f}", scale)
    pad = 2 * scale
    bar_w, bar_h = max(mask.shape[1], 40 * scale), 3 * scale
    panel_h, panel_w = min(h, mask.shape[0] + bar_h + 3 * pad), min(w, max(mask.shape[1], bar_w) + 2 * pad)
    panel = rgb[:panel_h, :panel_w]
    panel[:] = (panel * PANEL_DIM).astype(np.uint8)
    text = mask[:max(0, panel_h - pad), :max(0, panel_w - pad)]
    panel[pad:pad + text.shape[0], pad:pad + text.shape[1]][text] = TEXT_COLOR
    top = pad + mask.shape[0] + pad
    bar = panel[top:top + bar_h, pad:pad + bar_w]
    bar[:] = BAR_BACK
    bar[:, : round(min(max(score, 0.0), 1.0) * bar.shape[1])] = BAR_COLOR


def window_at(windows: Sequence[WindowResult], starts: Sequence[float], span: float,
              t: float) -> WindowResult | None:
    """The window covering time ``t`` whose centre is nearest (``windows`` sorted by start, ``starts`` their
    starts, ``span`` the longest window); None when no window covers ``t``."""
    best, best_gap = None, float("inf")
    i = bisect.bisect_right(starts, t) - 1
    while i >= 0 and starts[i] > t - span:
        w = windows[i]
        gap = abs((w.start + w.end) / 2 - t)
        if w.end > t and gap < best_gap:
            best, best_gap = w, gap
        i -= 1
    return best


def render_timeline(source: str | Path, out: str | Path, windows: Sequence[WindowResult],
                    class_names: Sequence[str], codec: str = "libx264") -> int:
    """Re-encode the video file ``source`` to ``out`` with each frame's label drawn on it; the number of
    frames written. The frames decoded before a failure are written; the failure raises StreamError."""
    import av

    ordered = sorted(windows, key=lambda w: w.start)
    starts = [w.start for w in ordered]
    span = max((w.end - w.start for w in ordered), default=0.0)
    try:
        src = av.open(str(source))
    except (av.error.FFmpegError, OSError) as exc:
        raise StreamError(f"cannot open {source} to render it: {' '.join(str(exc).split())}") from None
    written = 0
    with src:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate or 25
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(out), mode="w") as dst:
            enc = dst.add_stream(codec, rate=rate)
            w, h = stream.codec_context.width // 2 * 2, stream.codec_context.height // 2 * 2
            enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
            first = None
            try:
                for frame in src.decode(stream):
                    if frame.time is not None:
                        first = frame.time if first is None else first
                    t = frame.time - first if frame.time is not None else written / float(rate)
                    rgb = frame.to_ndarray(format="rgb24")[:h, :w]
                    window = window_at(ordered, starts, span, t)
                    if window is not None:
                        ((label, score),) = top_labels(window.probs, class_names, 1)
                        draw_label(rgb, label, score)
                    picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    picture.pts, picture.time_base = written, 1 / Fraction(rate)
                    for packet in enc.encode(picture):
                        dst.mux(packet)
                    written += 1
            except (av.error.FFmpegError, OSError) as exc:
                raise StreamError(f"rendering broke after {written} frames of {source}: "
                                  f"{' '.join(str(exc).split())}") from None
            finally:
                for packet in enc.encode(None):
                    dst.mux(packet)
    return written

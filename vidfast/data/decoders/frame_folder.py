"""The ``frame_folder`` backend: a folder of pre-extracted frames read with PIL, and the one frame-folder
rule.

A frame folder holds ``.jpg``/``.jpeg``/``.png`` images (any names, e.g. the CVPR 2018 ``image_00001.jpg``),
taken in natural order (digit runs compare as numbers: ``img_2`` before ``img_10``).
:func:`list_frame_images` is that rule; probing, transcoding and this decoder all use it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vidfast.data.decoders.base import ClosingVideo, DecoderBackend, check_indices, register
from vidfast.errors import DataError

#: image suffixes accepted in a frame folder
FRAME_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
_DIGITS = re.compile(r"(\d+)")


def _natural_key(name: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(name))


def list_frame_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The frames of a frame folder: its visible ``.jpg``/``.jpeg``/``.png`` files in natural name order."""
    files = [
        Path(entry.path) for entry in os.scandir(folder)
        if Path(entry.name).suffix.lower() in FRAME_SUFFIXES and not entry.name.startswith(".")
        and entry.is_file()
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


class FrameFolderVideo(ClosingVideo):
    """A frame folder (see :func:`list_frame_images`) read with PIL (fps unknown: 0.0)."""

    def __init__(self, path: str | Path) -> None:
        from PIL import Image

        self.path = str(path)
        self._files = [str(p) for p in list_frame_images(self.path)]
        if not self._files:
            raise DataError(f"no {'/'.join(FRAME_SUFFIXES)} frames in {self.path}")
        self.num_frames = len(self._files)
        self.fps = 0.0
        try:
            with Image.open(self._files[0]) as image:
                self.width, self.height = image.size
        except OSError as exc:
            raise DataError(f"cannot read {self._files[0]}: {exc}") from None

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 ``Tensor[t, H, W, 3]`` for ``indices``; see :class:`~vidfast.data.decoders.Video`."""
        from PIL import Image

        idx = check_indices(indices, self.num_frames, self.path)
        images: dict[int, np.ndarray] = {}
        for i in np.unique(idx).tolist():
            try:
                with Image.open(self._files[i]) as image:
                    images[i] = np.asarray(image.convert("RGB"))
            except OSError as exc:
                raise DataError(f"cannot read {self._files[i]}: {exc}") from None
            if images[i].shape[:2] != (self.height, self.width):
                raise DataError(
                    f"{self._files[i]} is {images[i].shape[1]}x{images[i].shape[0]}, "
                    f"expected {self.width}x{self.height}"
                )
        return torch.from_numpy(np.stack([images[i] for i in idx.tolist()]))

    def close(self) -> None:
        """Nothing to release (files are opened per frame)."""


def _refusal(path: Path, device: torch.device, deferred: bool) -> str | None:
    if not path.is_dir():
        return "the path is not a frame folder"
    if not list_frame_images(path):
        return f"the folder holds no {'/'.join(FRAME_SUFFIXES)} frames"
    return None


register(DecoderBackend("frame_folder", _refusal, lambda path, device, deferred: FrameFolderVideo(path),
                        priority=(1, 2)))

"""The fused cube-crop op: gather frames, crop, resize, flip, rotate, replicate a channel, normalise, cast.

One call turns decoded uint8 clips into network-ready float pieces, for the supervised pipeline (one crop
per clip) and for the Space-Time Cubic Puzzle (several permuted cubes per clip).  ``cube_crop`` runs the
native kernel (``torch.ops.vidfast.cube_crop``, C++/OpenMP or CUDA) when one is registered for the video's
device, otherwise ``cube_crop_reference``, which computes the same result in plain PyTorch; without
``vidfast._C`` at all it raises unless the reference was opted in (``vidfast._ext``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vidfast import _ext
from vidfast.conventions import KINETICS_MEAN, KINETICS_STD, normalising_affine

__all__ = [
    "OUT_DTYPES", "cube_crop", "cube_crop_reference", "native_available",
]

OUT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)

_OP_NAME = "vidfast::cube_crop"
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


# Decided once at import (a plain dict keeps the wrapper traceable by torch.compile).
_NATIVE: dict[str, bool] = {"cpu": _ext.has_native_kernel("cube_crop", "CPU"),
                             "cuda": _ext.has_native_kernel("cube_crop", "CUDA")}


def _fake_cube_crop(video, frame_idx, boxes, out_size, perm, flip, rot, channel, mean, std, dtype,
                    channels_last):
    """Shape/stride propagation of ``vidfast::cube_crop`` for torch.compile and meta tensors."""
    n = video[0].shape[0] if len(video) == 1 and video[0].dim() == 5 else len(video)
    p = frame_idx.shape[1]
    t, oh, ow = out_size
    piece = 3 * t * oh * ow
    strides = (p * piece, piece, 1, oh * ow * 3, ow * 3, 3) if channels_last else (
        p * piece, piece, t * oh * ow, oh * ow, ow, 1)
    return video[0].new_empty_strided((n, p, 3, t, oh, ow), strides, dtype=dtype)


if _ext.native_module() is not None:
    torch.library.register_fake(_OP_NAME)(_fake_cube_crop)


def native_available(device: torch.device | str = "cpu") -> bool:
    """True when ``cube_crop`` runs a native kernel for tensors on ``device`` (else it runs the reference)."""
    return _NATIVE.get(torch.device(device).type, False)


VideoArg = torch.Tensor | Sequence[torch.Tensor]


def _as_video_list(video: VideoArg) -> tuple[list[torch.Tensor], bool]:
    """Return (tensors, batched): ``[video]`` for a 5-D batch, the list itself for ragged 4-D clips."""
    if isinstance(video, torch.Tensor):
        if video.dim() != 5:
            raise ValueError(f"video: expected a uint8 tensor [N, T, H, W, 3], got {tuple(video.shape)}")
        videos, batched = [video], True
    elif isinstance(video, Sequence) and not isinstance(video, str):
        videos, batched = list(video), False
        if not videos:
            raise ValueError("video: the list of clips is empty")
        for i, v in enumerate(videos):
            if not isinstance(v, torch.Tensor) or v.dim() != 4:
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ValueError(f"video[{i}]: expected a uint8 tensor [T, H, W, 3], got {shape}")
    else:
        raise ValueError(f"video: expected a uint8 tensor or a list of tensors, got {type(video).__name__}")
    device = videos[0].device
    for i, v in enumerate(videos):
        if v.dtype != torch.uint8:
            where = "" if batched else f" at [{i}]"
            raise ValueError(f"video: expected dtype uint8, got {v.dtype}{where}")
        if v.shape[-1] != 3:
            raise ValueError(f"video: expected 3 channels in the last dimension, got {v.shape[-1]}")
        if v.device != device:
            raise ValueError(f"video: all clips must be on one device, got {device} and {v.device} at [{i}]")
    return videos, batched


def _check_index_tensor(name: str, x: torch.Tensor | None, shape: tuple[int, ...], device: torch.device,
                        allow_bool: bool = False) -> None:
    if x is None:
        return
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor, got {type(x).__name__}")
    if x.dtype not in _INT_DTYPES and not (allow_bool and x.dtype == torch.bool):
        kind = "a bool or integer" if allow_bool else "an integer"
        raise ValueError(f"{name}: expected {kind} tensor, got dtype {x.dtype}")
    if tuple(x.shape) != shape:
        raise ValueError(f"{name}: expected shape {list(shape)}, got {list(x.shape)}")
    if x.device.type != "cpu" and x.device != device:
        raise ValueError(f"{name}: is on {x.device} but video is on {device} (use the video's device or cpu)")


def _check_floats(name: str, values: Sequence[float]) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected 3 numbers, got {values!r}") from None
    if len(out) != 3:
        raise ValueError(f"{name}: expected 3 numbers (one per channel), got {len(out)}")
    return out


def _normalize_args(video, frame_idx, boxes, out_size, perm, flip, rot, channel, mean, std, dtype):
    """Structural checks shared by the native and reference paths (no data-dependent checks: traceable)."""
    videos, batched = _as_video_list(video)
    n = videos[0].shape[0] if batched else len(videos)
    device = videos[0].device
    try:
        size = tuple(int(s) for s in out_size)
    except (TypeError, ValueError):
        raise ValueError(f"out_size: expected (t, oh, ow), got {out_size!r}") from None
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"out_size: expected three positive ints (t, oh, ow), got {out_size!r}")
    if not isinstance(frame_idx, torch.Tensor) or frame_idx.dim() != 3:
        got = list(frame_idx.shape) if isinstance(frame_idx, torch.Tensor) else type(frame_idx).__name__
        raise ValueError(f"frame_idx: expected an integer tensor [N, P, t], got {got}")
    p = frame_idx.shape[1]
    _check_index_tensor("frame_idx", frame_idx, (n, p, size[0]), device)
    _check_index_tensor("boxes", boxes, (n, p, 4), device)
    _check_index_tensor("perm", perm, (n, p), device)
    _check_index_tensor("flip", flip, (n, p), device, allow_bool=True)
    _check_index_tensor("rot", rot, (n, p), device)
    _check_index_tensor("channel", channel, (n, p), device)
    mean_l, std_l = _check_floats("mean", mean), _check_floats("std", std)
    if any(s == 0.0 for s in std_l):
        raise ValueError(f"std: must be non-zero, got {std_l}")
    if dtype not in OUT_DTYPES:
        raise ValueError(f"dtype: expected one of {[str(d) for d in OUT_DTYPES]}, got {dtype}")
    return videos, batched, n, p, size, mean_l, std_l


def cube_crop(
    video: VideoArg,
    frame_idx: torch.Tensor,
    boxes: torch.Tensor,
    out_size: Sequence[int],
    perm: torch.Tensor | None = None,
    flip: torch.Tensor | None = None,
    rot: torch.Tensor | None = None,
    channel: torch.Tensor | None = None,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """Crop ``P`` pieces from each of ``N`` clips into a normalised float tensor ``[N, P, 3, t, oh, ow]``.

    ``video``: uint8 ``[N, T, H, W, 3]`` or a list of N uint8 ``[T_i, H_i, W_i, 3]`` (ragged batch).
    ``frame_idx``: int ``[N, P, t]`` source frames; ``boxes``: int ``[N, P, 4]`` = ``(y0, x0, h, w)``.
    Output piece ``j`` uses input piece ``perm[n, j]`` (default identity), resized bilinearly to
    ``(oh, ow)`` like ``F.interpolate(align_corners=False, antialias=False)`` (an exact copy when the box
    already has that size), then flipped horizontally where ``flip[n, j]``, rotated by
    ``torch.rot90(k=rot[n, j], dims=(-2, -1))`` (odd ``k`` needs ``oh == ow``), channel ``channel[n, j]``
    copied into all three when it is not -1, and normalised as ``(v / 255 - mean[c]) / std[c]`` in ``dtype``.
    ``channels_last=True`` lays the result out so that ``out.view(N * P, 3, t, oh, ow)`` is
    ``torch.channels_last_3d`` contiguous.
    Raises ValueError (bad shape, dtype, value) or IndexError (a frame or box outside its clip), naming the
    argument.
    """
    videos, _, _, _, size, mean_l, std_l = _normalize_args(
        video, frame_idx, boxes, out_size, perm, flip, rot, channel, mean, std, dtype
    )
    _ext.require_native()
    if _NATIVE.get(videos[0].device.type, False):
        return torch.ops.vidfast.cube_crop(
            videos, frame_idx, boxes, list(size), perm, flip, rot, channel, mean_l, std_l, dtype,
            bool(channels_last),
        )
    return cube_crop_reference(video, frame_idx, boxes, size, perm, flip, rot, channel, mean_l, std_l, dtype,
                               channels_last)


def _source_taps(start: torch.Tensor, in_len: torch.Tensor, out_len: int) -> tuple[torch.Tensor, ...]:
    """Bilinear taps along one axis for every piece: (idx0, idx1, w0, w1), each ``[NP, out_len]``.

    Follows PyTorch's ``align_corners=False`` rule in float32: ``src = max((d + 0.5) * in / out - 0.5, 0)``.
    """
    scale = in_len.to(torch.float32) / out_len
    dst = torch.arange(out_len, device=start.device, dtype=torch.float32)
    src = ((dst[None, :] + 0.5) * scale[:, None] - 0.5).clamp_min(0.0)
    i0 = src.to(torch.int64)
    i1 = i0 + (i0 < in_len[:, None] - 1).to(torch.int64)
    w1 = src - i0.to(torch.float32)
    w0 = 1.0 - w1
    return start[:, None] + i0, start[:, None] + i1, w0, w1


def _output_to_resized_coords(rot: torch.Tensor, flip: torch.Tensor, oh: int, ow: int, device: torch.device):
    """Map each output pixel of each piece to its pixel of the resized (unflipped, unrotated) crop.

    Returns (rows, cols) ``[NP, oh, ow]`` int64: output = rot90(flip(resized), k) gathered pointwise.
    """
    i = torch.arange(oh, device=device)[:, None].expand(oh, ow)
    j = torch.arange(ow, device=device)[None, :].expand(oh, ow)
    # rot90(B, k)[i, j] = B[bi, bj] for k = 0..3 (odd k only with oh == ow, checked before).
    bi = torch.stack([i, j, oh - 1 - i, ow - 1 - j])[rot]
    bj = torch.stack([j, ow - 1 - i, ow - 1 - j, i])[rot]
    cols = torch.where(flip[:, None, None], ow - 1 - bj, bj)
    return bi, cols


def _check_values(name: str, x: torch.Tensor, low: int, high: int, exc: type[Exception], what: str) -> None:
    if x.numel() == 0:
        return
    lo, hi = int(x.min()), int(x.max())
    if lo < low or hi > high:
        bad = lo if lo < low else hi
        raise exc(f"{name}: {what} {bad} is outside [{low}, {high}]")


def cube_crop_reference(
    video: VideoArg,
    frame_idx: torch.Tensor,
    boxes: torch.Tensor,
    out_size: Sequence[int],
    perm: torch.Tensor | None = None,
    flip: torch.Tensor | None = None,
    rot: torch.Tensor | None = None,
    channel: torch.Tensor | None = None,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> torch.Tensor:
    """Plain-PyTorch ``cube_crop`` (same signature, semantics and errors), vectorised as index gathers.

    Returns ``Tensor[N, P, 3, t, oh, ow]`` on the video's device.
    """
    videos, batched, n, p, (t, oh, ow), mean_l, std_l = _normalize_args(
        video, frame_idx, boxes, out_size, perm, flip, rot, channel, mean, std, dtype
    )
    device = videos[0].device
    np_ = n * p
    long = {"device": device, "dtype": torch.int64}
    frame_idx, boxes = frame_idx.to(**long), boxes.to(**long)
    perm = torch.arange(p, **long).expand(n, p) if perm is None else perm.to(**long)
    flip = torch.zeros(n, p, dtype=torch.bool, device=device) if flip is None else flip.to(device) != 0
    rot = torch.zeros(n, p, **long) if rot is None else rot.to(**long)
    channel = torch.full((n, p), -1, **long) if channel is None else channel.to(**long)

    # Per-clip geometry and the flat pixel buffer ([pixels, 3]) the gathers read from.
    if batched:
        v = videos[0]
        sizes = torch.tensor([list(v.shape[1:4])], **long).expand(n, 3)
        flat = v.contiguous().view(-1, 3)
        base = torch.arange(n, **long) * (v.shape[1] * v.shape[2] * v.shape[3])
    else:
        sizes = torch.tensor([list(v.shape[:3]) for v in videos], **long)
        counts = sizes.prod(dim=1)
        flat = torch.cat([v.reshape(-1, 3) for v in videos])
        base = torch.cumsum(counts, 0) - counts
    lens_t, lens_h, lens_w = sizes.unbind(1)

    _check_values("perm", perm, 0, p - 1, IndexError, "piece index")
    _check_values("rot", rot, 0, 3, ValueError, "rotation")
    _check_values("channel", channel, -1, 2, ValueError, "channel")
    if oh != ow and bool((rot % 2 == 1).any()):
        raise ValueError(f"rot: odd rotations need a square output, got out_size {(t, oh, ow)}")
    per_clip = lambda x: x[:, None].expand(n, p)  # noqa: E731
    bad_frame = (frame_idx < 0) | (frame_idx >= per_clip(lens_t)[:, :, None])
    if bool(bad_frame.any()):
        at = [int(i) for i in bad_frame.nonzero()[0]]
        raise IndexError(f"frame_idx: frame {int(frame_idx[tuple(at)])} at {at} is outside its clip of "
                         f"{int(lens_t[at[0]])} frames")
    y0, x0, h, w = boxes.unbind(-1)
    bad_size = (h < 1) | (w < 1)
    if bool(bad_size.any()):
        at = [int(i) for i in bad_size.nonzero()[0]]
        raise ValueError(f"boxes: box {boxes[tuple(at)].tolist()} at {at} has a height or width < 1")
    bad_box = (y0 < 0) | (x0 < 0) | (y0 + h > per_clip(lens_h)) | (x0 + w > per_clip(lens_w))
    if bool(bad_box.any()):
        at = [int(i) for i in bad_box.nonzero()[0]]
        raise IndexError(f"boxes: box (y0, x0, h, w) = {boxes[tuple(at)].tolist()} at {at} lies outside its "
                         f"{int(lens_h[at[0]])}x{int(lens_w[at[0]])} frame")

    # Input piece of every output piece, flattened over (n, p).
    src = perm + torch.arange(n, **long)[:, None] * p
    frames = frame_idx.view(np_, t)[src.view(-1)]
    y0, x0, h, w = (c.reshape(-1)[src.view(-1)] for c in (y0, x0, h, w))
    clip = torch.arange(n, **long).repeat_interleave(p)
    width = lens_w[clip]
    frame_base = base[clip][:, None] + frames * (lens_h[clip] * width)[:, None]  # [NP, t], in pixels

    rows, cols = _output_to_resized_coords(rot.view(-1), flip.view(-1), oh, ow, device)
    ys, xs = _source_taps(y0, h, oh), _source_taps(x0, w, ow)
    pick = lambda tab, where: tab.gather(1, where.view(np_, -1)).view(np_, 1, 1, oh, ow)  # noqa: E731
    y_a, y_b, wy_a, wy_b = (pick(tab, rows) for tab in ys)
    x_a, x_b, wx_a, wx_b = (pick(tab, cols) for tab in xs)
    frame_base = frame_base[:, :, None, None]  # [NP, t, 1, 1]
    stride_y = width[:, None, None, None, None]

    def gather(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:  # -> float [NP, 3, t, oh, ow]
        pixels = flat[frame_base + (yy * stride_y + xx)[:, 0]]  # [NP, t, oh, ow, 3] uint8
        # Channels first before any arithmetic: the weights then broadcast along contiguous rows.
        return pixels.permute(0, 4, 1, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)

    if bool(((h == oh) & (w == ow)).all()):  # every piece is a copy: one gather, no arithmetic
        value = gather(y_a, x_a)
    else:
        # (p00 wx0 + p01 wx1) wy0 + (p10 wx0 + p11 wx1) wy1, in place (fewer large temporaries).
        top = gather(y_a, x_a).mul_(wx_a).add_(gather(y_a, x_b).mul_(wx_b)).mul_(wy_a)
        value = top.add_(gather(y_b, x_a).mul_(wx_a).add_(gather(y_b, x_b).mul_(wx_b)).mul_(wy_b))
    if bool((channel >= 0).any()):
        rgb = torch.arange(3, **long)
        chan = torch.where(channel.view(-1, 1) >= 0, channel.view(-1, 1), rgb)  # [NP, 3]
        value = value.gather(1, chan[:, :, None, None, None].expand_as(value))
    # (v / 255 - mean) / std as one multiply-add with float32 constants rounded from double, like the kernels.
    f32 = {"dtype": torch.float32, "device": device}
    scale, bias = (torch.tensor(v, **f32).view(3, 1, 1, 1) for v in normalising_affine(mean_l, std_l))
    out = value.mul_(scale).add_(bias).to(dtype)  # [NP, 3, t, oh, ow]
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last_3d)
    return out.view(n, p, 3, t, oh, ow)

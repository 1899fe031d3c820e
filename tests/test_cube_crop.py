"""vidfast.ops.cube_crop: native kernels vs the PyTorch reference, hand-computed cases and F.interpolate."""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import DEVICES, cube_crop_case, cube_crop_draws, cube_crop_on
from hypothesis import given, settings

from vidfast import _ext
from vidfast.conventions import KINETICS_MEAN, KINETICS_STD
from vidfast.ops import cube_crop, cube_crop_reference

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
cc = importlib.import_module("vidfast.ops.cube_crop")  # the module (vidfast.ops.cube_crop is the function)


def _tol(dtype: torch.dtype) -> float:
    """A few units in the last place of values up to ~3 (the normalised range)."""
    return 4 * torch.finfo(dtype).eps


def _is_copy(args: dict) -> torch.Tensor:
    """[N, P] bool: output pieces whose source box already has the output size."""
    _, oh, ow = args["out_size"]
    src = args["boxes"].gather(1, args["perm"][..., None].expand(-1, -1, 4))
    return (src[..., 2] == oh) & (src[..., 3] == ow)


def _assert_matches(out: torch.Tensor, ref: torch.Tensor, args: dict) -> None:
    """Copy pieces equal bit for bit; resized pieces within a few ulps of the output dtype."""
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert [s for s, d in zip(out.stride(), out.shape, strict=True) if d > 1] == [
        s for s, d in zip(ref.stride(), ref.shape, strict=True) if d > 1]  # same layout (size-1 dims aside)
    out, ref = out.cpu(), ref.cpu()
    copy = _is_copy(args)
    assert torch.equal(out[copy], ref[copy])
    torch.testing.assert_close(out[~copy], ref[~copy], rtol=0, atol=_tol(out.dtype))


# ----------------------------------------------------------------------------- native vs reference


@settings(max_examples=40, deadline=None)
@given(**cube_crop_draws(max_size=9))
def test_native_matches_reference(seed, n, p, t, oh, ow, copy, ragged, dtype, channels_last):
    args = cube_crop_case(seed, n=n, p=p, t=t, size=(oh, ow), copy=copy, ragged=ragged)
    out = cube_crop(**args, dtype=dtype, channels_last=channels_last)
    ref = cube_crop_reference(**args, dtype=dtype, channels_last=channels_last)
    _assert_matches(out, ref, args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_dtype_and_layout(device, dtype, channels_last):
    args = cube_crop_case(1, n=3, p=4, t=4, size=(8, 8))
    out = cube_crop(**cube_crop_on(args, device), dtype=dtype, channels_last=channels_last)
    ref = cube_crop_reference(**args, dtype=dtype, channels_last=channels_last)
    assert out.device.type == device and out.dtype == dtype
    _assert_matches(out, ref, args)
    n, p, c, t, oh, ow = out.shape
    assert out.view(n * p, c, t, oh, ow).is_contiguous(
        memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)


@pytest.mark.parametrize("device", DEVICES)
def test_ragged_list_equals_per_clip_calls(device):
    args = cube_crop_on(cube_crop_case(2, n=3, p=2, size=(5, 7), ragged=True), device)
    out = cube_crop(**args)
    assert len({tuple(v.shape) for v in args["video"]}) > 1  # really ragged
    for i, clip in enumerate(args["video"]):
        one = {k: (v[i:i + 1] if isinstance(v, torch.Tensor) else v) for k, v in args.items() if k != "video"}
        assert torch.equal(out[i:i + 1], cube_crop(clip[None], **one))
    _assert_matches(out, cube_crop_reference(**cube_crop_on(args, "cpu")), args)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_video(device):
    args = cube_crop_on(cube_crop_case(3), device)
    video = args["video"]
    planar = video.permute(0, 1, 4, 2, 3).contiguous().permute(0, 1, 3, 4, 2)  # channel stride H * W
    spaced = torch.zeros_like(video).repeat(1, 1, 1, 2, 1)
    spaced[:, :, :, ::2] = video  # pixel stride 6
    expected = cube_crop(**args)
    for strided in (planar, spaced[:, :, :, ::2]):
        assert not strided.is_contiguous()
        assert torch.equal(cube_crop(**{**args, "video": strided}), expected)


@pytest.mark.parametrize("channels_last", [False, True])
def test_large_output(channels_last):
    """Outputs of 16 MB and more are staged per plane and written with streaming stores."""
    args = cube_crop_case(11, n=2, p=4, t=8, size=(160, 160), frames=9, hw=(200, 200))
    out = cube_crop(**args, channels_last=channels_last)
    assert out.numel() * out.element_size() >= 16 << 20
    _assert_matches(out, cube_crop_reference(**args, channels_last=channels_last), args)


# Cases long enough for the vector loops and their tails (rows of 20, 33 and 40 elements per channel):
# copies and resizes with every flip, rotation and channel choice, both layouts, every dtype, and one streamed
# (>= 16 MB) output.
_SMALL_CASES = [
    {"seed": 21, "n": 2, "p": 4, "t": 2, "size": (20, 20), "frames": 3, "hw": (40, 45)},
    {"seed": 22, "n": 2, "p": 4, "t": 2, "size": (33, 33), "frames": 3, "hw": (50, 60), "copy": True},
    {"seed": 23, "n": 3, "p": 2, "t": 2, "size": (24, 40), "frames": 3, "hw": (40, 70), "ragged": True},
]
_STREAMED_CASE = {"seed": 24, "n": 2, "p": 4, "t": 8, "size": (160, 160), "frames": 9, "hw": (200, 200)}
# (case, dtype, channels_last) of every run
ISA_RUNS = [(case, str(dtype).removeprefix("torch."), cl) for case in _SMALL_CASES for dtype in DTYPES
            for cl in (False, True)] + [(_STREAMED_CASE, "float32", cl) for cl in (False, True)]
_ISA_SCRIPT = """
import sys, torch
from helpers import cube_crop_case
from vidfast import _ext
from vidfast.ops import cube_crop
outs = [cube_crop(**cube_crop_case(**case), dtype=getattr(torch, dtype), channels_last=cl)
        for case, dtype, cl in eval(sys.argv[2])]
torch.save({"isa": _ext.native_module().build_info()["cpu_isa"], "outs": outs}, sys.argv[1])
"""


@pytest.mark.slow
@pytest.mark.parametrize(("level", "isa"), [("default", "portable C++"), ("avx2", "AVX2")])
def test_every_instruction_set_gives_the_same_bits(tmp_path, level, isa):
    """ATEN_CPU_CAPABILITY lowers the CPU kernel's row loops as it lowers ATen's: each level, run in a process
    of its own, writes exactly what this process's level writes."""
    if isa == "AVX2" and not torch.cpu._is_avx2_supported():
        pytest.skip("this CPU has no AVX2")
    tests = Path(__file__).parent
    env = {**os.environ, "ATEN_CPU_CAPABILITY": level,
           "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", _ISA_SCRIPT, str(tmp_path / "outs.pt"), repr(ISA_RUNS)], env=env,
                   check=True, timeout=300)
    lowered = torch.load(tmp_path / "outs.pt")
    assert lowered["isa"] == isa
    here = [cube_crop(**cube_crop_case(**case), dtype=getattr(torch, dtype), channels_last=cl)
            for case, dtype, cl in ISA_RUNS]
    assert len(here) == len(lowered["outs"])
    for out, other in zip(here, lowered["outs"], strict=True):
        assert out.stride() == other.stride() and torch.equal(out, other)
    first = cube_crop_case(**_SMALL_CASES[0])
    _assert_matches(here[0], cube_crop_reference(**first), first)
    assert _ext.native_module().build_info()["cpu_isa"] in ("portable C++", "AVX2", "AVX-512")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_index_tensors_on_device():
    args = cube_crop_case(12, ragged=True)
    on_device = {k: (v.cuda() if isinstance(v, torch.Tensor) else v)
                 for k, v in cube_crop_on(args, "cuda").items()}
    _assert_matches(cube_crop(**on_device), cube_crop_reference(**args), args)


def test_wrapper_falls_back_to_reference(monkeypatch):
    args = cube_crop_case(4)
    expected = cube_crop_reference(**args)
    monkeypatch.setattr(cc, "_NATIVE", {"cpu": False, "cuda": False})
    assert torch.equal(cube_crop(**args), expected)


def test_defaults_and_constants():
    assert KINETICS_MEAN == (0.4345, 0.4051, 0.3775) and KINETICS_STD == (0.2768, 0.2713, 0.2737)
    args = cube_crop_case(5, copy=True)
    plain = {k: args[k] for k in ("video", "frame_idx", "boxes", "out_size")}
    n, p = args["perm"].shape
    explicit = cube_crop(**plain, perm=torch.arange(p).expand(n, p), flip=torch.zeros(n, p, dtype=torch.bool),
                         rot=torch.zeros(n, p, dtype=torch.long), channel=torch.full((n, p), -1))
    assert torch.equal(cube_crop(**plain), explicit)


# ----------------------------------------------------------------------------- exact semantics, by hand


def _hand_video() -> torch.Tensor:
    """1 clip, 2 frames of 2x2: R = [[1, 2], [3, 4]] (+10 in frame 1), G = R + 100, B = R + 200."""
    r = torch.tensor([[[1, 2], [3, 4]], [[11, 12], [13, 14]]])
    return torch.stack([r, r + 100, r + 200], dim=-1)[None].to(torch.uint8)  # [1, 2, 2, 2, 3]


def _bytes(out: torch.Tensor) -> torch.Tensor:
    """Undo mean=0, std=1 normalisation: back to integer byte values."""
    return torch.round(out.double() * 255).long()


@pytest.mark.parametrize("impl", [cube_crop, cube_crop_reference])
@pytest.mark.parametrize(("flip", "rot", "expected"), [
    (False, 0, [[1, 2], [3, 4]]),
    (True, 0, [[2, 1], [4, 3]]),
    (False, 1, [[2, 4], [1, 3]]),
    (False, 2, [[4, 3], [2, 1]]),
    (False, 3, [[3, 1], [4, 2]]),
    (True, 1, [[1, 3], [2, 4]]),
    (True, 3, [[4, 2], [3, 1]]),
])
def test_flip_then_rotation_by_hand(impl, flip, rot, expected):
    def crop(**kwargs):
        return impl(_hand_video(), torch.tensor([[[0]]]), torch.tensor([[[0, 0, 2, 2]]]), (1, 2, 2),
                    mean=(0, 0, 0), std=(1, 1, 1), **kwargs)

    out = crop(flip=torch.tensor([[flip]]), rot=torch.tensor([[rot]]))
    exp = torch.tensor(expected)
    assert torch.equal(_bytes(out)[0, 0, :, 0], torch.stack([exp, exp + 100, exp + 200]))
    plain = crop()[0, 0]
    assert torch.equal(out[0, 0], torch.rot90(plain.flip(-1) if flip else plain, rot, dims=(-2, -1)))


@pytest.mark.parametrize("impl", [cube_crop, cube_crop_reference])
def test_perm_frames_and_channel_by_hand(impl):
    video = _hand_video()
    frame_idx = torch.tensor([[[1, 0], [0, 0]]])  # piece 0: frames (1, 0); piece 1: frames (0, 0)
    boxes = torch.tensor([[[0, 0, 1, 1], [1, 1, 1, 1]]])  # piece 0: top-left pixel; piece 1: bottom-right
    out = impl(video, frame_idx, boxes, (2, 1, 1), perm=torch.tensor([[1, 0]]),
               channel=torch.tensor([[-1, 1]]), mean=(0, 0, 0), std=(1, 1, 1))
    got = _bytes(out)[0, :, :, :, 0, 0]  # [P, C, t]
    # output piece 0 = input piece 1 (pixel (1, 1) of frames 0, 0), RGB kept
    assert got[0].tolist() == [[4, 4], [104, 104], [204, 204]]
    # output piece 1 = input piece 0 (pixel (0, 0) of frames 1, 0), green copied to all channels
    assert got[1].tolist() == [[111, 101]] * 3


@pytest.mark.parametrize("impl", [cube_crop, cube_crop_reference])
def test_normalisation_by_hand(impl):
    video = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 1, 1, 1, 3)
    out = impl(video, torch.zeros(1, 1, 1, dtype=torch.long), torch.tensor([[[0, 0, 1, 1]]]), (1, 1, 1))
    expected = [(v / 255 - m) / s for v, m, s in zip((0, 128, 255), KINETICS_MEAN, KINETICS_STD, strict=True)]
    assert out.flatten().tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("impl", [cube_crop, cube_crop_reference])
@pytest.mark.parametrize(("row", "ow", "expected"), [
    ([0, 100], 4, [0, 25, 75, 100]),  # upsampling: src = (d + 0.5) / 2 - 0.5, clamped at 0 and at the edge
    ([0, 10, 20, 40], 2, [5, 30]),  # downsampling by 2 averages pairs (no antialias)
    ([7, 9, 11], 3, [7, 9, 11]),  # same size: a copy
])
def test_bilinear_by_hand(impl, row, ow, expected):
    video = torch.tensor(row, dtype=torch.uint8).view(1, 1, 1, -1, 1).expand(-1, -1, -1, -1, 3)
    box = torch.tensor([[[0, 0, 1, len(row)]]])
    out = impl(video, torch.zeros(1, 1, 1, dtype=torch.long), box, (1, 1, ow), mean=(0, 0, 0), std=(1, 1, 1))
    assert _bytes(out)[0, 0, 0, 0, 0].tolist() == expected


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", [cube_crop, cube_crop_reference])
def test_matches_f_interpolate(device, impl):
    args = cube_crop_case(6, n=2, p=3, t=2, size=(7, 9), frames=5, hw=(23, 19), copy=False)
    args = cube_crop_on(args, device)
    args.update(perm=None, flip=None, rot=None, channel=None)
    out = impl(**args, mean=(0, 0, 0), std=(1, 1, 1))
    for i in range(2):
        for j in range(3):
            y0, x0, h, w = args["boxes"][i, j].tolist()
            crop = args["video"][i, args["frame_idx"][i, j].to(device), y0:y0 + h, x0:x0 + w]  # [t, h, w, 3]
            ref = F.interpolate(crop.permute(0, 3, 1, 2).float(), size=(7, 9), mode="bilinear",
                                align_corners=False, antialias=False)
            torch.testing.assert_close(out[i, j].permute(1, 0, 2, 3) * 255, ref, rtol=0, atol=1e-3)


def test_copy_is_exact_slice():
    args = cube_crop_case(7, copy=True)
    args.update(perm=None, flip=None, rot=None, channel=None)
    out = cube_crop(**args, mean=(0, 0, 0), std=(1, 1, 1))
    for i in range(2):
        for j in range(3):
            y0, x0, h, w = args["boxes"][i, j].tolist()
            crop = args["video"][i, args["frame_idx"][i, j], y0:y0 + h, x0:x0 + w].permute(3, 0, 1, 2)
            assert torch.equal(_bytes(out[i, j]), crop.long())


# ----------------------------------------------------------------------------- torch.library / torch.compile


@pytest.mark.parametrize("variant", ["batched", "ragged", "defaults"])
def test_opcheck(variant):
    args = cube_crop_case(8, n=2, p=2, t=2, size=(4, 4), ragged=variant == "ragged")
    if variant == "defaults":
        args.update(perm=None, flip=None, rot=None, channel=None)
    video = args["video"] if isinstance(args["video"], list) else [args["video"]]
    op_args = (video, args["frame_idx"], args["boxes"], list(args["out_size"]), args["perm"], args["flip"],
               args["rot"], args["channel"], list(KINETICS_MEAN), list(KINETICS_STD), torch.float16,
               variant == "batched")
    torch.library.opcheck(torch.ops.vidfast.cube_crop.default, op_args)


def test_torch_compile_fullgraph():
    args = cube_crop_case(9, n=2, p=4, t=2, size=(6, 6))

    def crop_and_scale(video, frame_idx, boxes, perm, flip, rot, channel):
        x = cube_crop(video, frame_idx, boxes, (2, 6, 6), perm, flip, rot, channel, channels_last=True)
        return x * 2

    compiled = torch.compile(crop_and_scale, fullgraph=True, backend="aot_eager")
    kwargs = {k: v for k, v in args.items() if k != "out_size"}
    assert torch.equal(compiled(**kwargs), crop_and_scale(**kwargs))


# ----------------------------------------------------------------------------- errors


def _base() -> dict:
    return cube_crop_case(10, n=2, p=2, t=2, size=(4, 4), frames=5, hw=(9, 9), copy=True)


def _set(path: str, value):
    def mutate(args: dict) -> dict:
        return {**args, path: value(args) if callable(value) else value}
    return mutate


def _odd_rotation(args: dict) -> dict:
    """A rot90 by 1 with a non-square (4, 5) output; every box is a valid copy of that size."""
    rot, boxes = args["rot"].clone(), args["boxes"].clone()
    rot[0, 0] = 1
    boxes[..., 1], boxes[..., 3] = 0, 5
    return {**args, "rot": rot, "boxes": boxes, "out_size": (2, 4, 5)}


def _poke(key: str, index: tuple, value: int):
    def mutate(args: dict) -> dict:
        x = args[key].clone()
        x[index] = value
        return {**args, key: x}
    return mutate


ERROR_CASES = {
    "video dtype": (_set("video", lambda a: a["video"].float()), ValueError, "video"),
    "video rank": (_set("video", lambda a: a["video"][0]), ValueError, "video"),
    "video channels": (_set("video", lambda a: a["video"][..., :2]), ValueError, "video"),
    "ragged rank": (_set("video", lambda a: [a["video"][0], a["video"][1, 0]]), ValueError, "video"),
    "ragged dtype": (_set("video", lambda a: [a["video"][0], a["video"][1].int()]), ValueError, "video"),
    "empty list": (_set("video", []), ValueError, "video"),
    "clip count": (_set("video", lambda a: a["video"][:1]), ValueError, "frame_idx"),
    "frame_idx dtype": (_set("frame_idx", lambda a: a["frame_idx"].float()), ValueError, "frame_idx"),
    "frame_idx rank": (_set("frame_idx", lambda a: a["frame_idx"][0]), ValueError, "frame_idx"),
    "frame_idx length": (_set("frame_idx", lambda a: a["frame_idx"][:, :, :1]), ValueError, "frame_idx"),
    "frame too large": (_poke("frame_idx", (1, 0, 1), 5), IndexError, "frame_idx"),
    "frame negative": (_poke("frame_idx", (0, 1, 0), -1), IndexError, "frame_idx"),
    "boxes shape": (_set("boxes", lambda a: a["boxes"][..., :3]), ValueError, "boxes"),
    "boxes dtype": (_set("boxes", lambda a: a["boxes"].float()), ValueError, "boxes"),
    "box empty": (_poke("boxes", (0, 0, 2), 0), ValueError, "boxes"),
    "box right": (_poke("boxes", (1, 1, 1), 6), IndexError, "boxes"),
    "box below": (_poke("boxes", (0, 1, 0), 6), IndexError, "boxes"),
    "box negative": (_poke("boxes", (1, 0, 1), -1), IndexError, "boxes"),
    "perm range": (_poke("perm", (0, 0), 2), IndexError, "perm"),
    "perm shape": (_set("perm", lambda a: a["perm"][:, :1]), ValueError, "perm"),
    "flip dtype": (_set("flip", lambda a: a["flip"].float()), ValueError, "flip"),
    "rot range": (_poke("rot", (1, 1), 4), ValueError, "rot"),
    "odd rot not square": (lambda a: _odd_rotation(a), ValueError, "rot"),
    "channel range": (_poke("channel", (0, 1), 3), ValueError, "channel"),
    "out_size length": (_set("out_size", (4, 4)), ValueError, "out_size"),
    "out_size zero": (_set("out_size", (2, 0, 4)), ValueError, "out_size"),
}


@pytest.mark.parametrize("impl", [cube_crop, cube_crop_reference])
@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors(impl, case):
    mutate, exc, name = ERROR_CASES[case]
    with pytest.raises(exc, match=name):
        impl(**mutate(_base()))


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"mean": (0.5, 0.5)}, "mean"),
    ({"std": (1.0, 0.0, 1.0)}, "std"),
    ({"dtype": torch.float64}, "dtype"),
    ({"dtype": torch.uint8}, "dtype"),
])
@pytest.mark.parametrize("impl", [cube_crop, cube_crop_reference])
def test_argument_errors(impl, kwargs, name):
    with pytest.raises(ValueError, match=name):
        impl(**_base(), **kwargs)


# Not errors of the op itself: it takes a list, and a list of one 4-D clip is a valid ragged batch of one.
WRAPPER_ONLY = ("empty list", "video rank")


@pytest.mark.parametrize("case", [c for c in ERROR_CASES if c not in WRAPPER_ONLY])
def test_native_op_errors_without_wrapper(case):
    """The registered op checks everything itself: ValueError / IndexError, never a crash."""
    mutate, exc, name = ERROR_CASES[case]
    args = mutate(_base())
    video = args["video"] if isinstance(args["video"], list) else [args["video"]]
    with pytest.raises(exc, match=name):
        torch.ops.vidfast.cube_crop(video, args["frame_idx"], args["boxes"], list(args["out_size"]),
                                    args["perm"], args["flip"], args["rot"], args["channel"], [0.0] * 3,
                                    [1.0] * 3, torch.float32, False)


def test_native_op_rejects_mismatched_devices_and_bad_lists():
    args = _base()
    op = torch.ops.vidfast.cube_crop
    rest = (args["frame_idx"], args["boxes"], [2, 4, 4], None, None, None, None, [0.0] * 3, [1.0] * 3)
    with pytest.raises(ValueError, match="video"):
        op([], *rest, torch.float32, False)
    with pytest.raises(ValueError, match="mean"):
        op([args["video"]], *rest[:-2], [0.0], [1.0] * 3, torch.float32, False)
    with pytest.raises(ValueError, match="dtype"):
        op([args["video"]], *rest, torch.float64, False)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            op([args["video"][0].cuda(), args["video"][1]], *rest, torch.float32, False)


def test_index_tensors_on_another_device_rejected():
    args = _base()
    meta = {**args, "boxes": args["boxes"].to("meta")}
    with pytest.raises(ValueError, match="boxes"):
        cube_crop(**meta)


def test_normalisation_formula_matches_contract():
    """The kernels fold (v / 255 - mean) / std into one multiply-add; it stays within float32 rounding."""
    video = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16, 1).expand(-1, -1, -1, -1, 3)
    box = torch.tensor([[[0, 0, 16, 16]]])
    out = cube_crop(video, torch.zeros(1, 1, 1, dtype=torch.long), box, (1, 16, 16))
    v = torch.arange(256, dtype=torch.float64).view(16, 16)
    for c in range(3):
        exact = (v / 255 - KINETICS_MEAN[c]) / KINETICS_STD[c]
        assert math.isclose(float((out[0, 0, c, 0].double() - exact).abs().max()), 0.0, abs_tol=1e-6)

"""The CUDA kernel of vidfast::cube_crop, executed on every machine.

``torch.ops.vidfast.cube_crop_cuda_check`` runs the kernel code: on CPU tensors its per-thread body on the
host, for every thread of every block of every launch the CUDA launcher makes (same grid, block size and
guards, and the split into several launches when a grid exceeds the per-launch limit, which ``max_grid``
lowers); on CUDA tensors the real kernel (marked ``cuda``, skipped without a GPU).  Either must equal the CPU
kernel and the PyTorch reference bit for bit; elements no thread writes come back NaN and fail the comparison.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import DEVICES, cube_crop_case, cube_crop_draws, cube_crop_on
from hypothesis import given, settings
from hypothesis import strategies as st

from vidfast.conventions import KINETICS_MEAN, KINETICS_STD
from vidfast.ops import OUT_DTYPES, cube_crop_reference

BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
BLOCK_ELEMS = 256 * 4  # elements of a plane per block (cube_crop_cuda.h: kThreads * kItemsPerThread)
CUDA_GRID = (2**31 - 1, 65535)  # CUDA's grid limits, the launcher's default max_grid


def _op_args(args: dict, dtype: torch.dtype, channels_last: bool) -> tuple:
    video = args["video"] if isinstance(args["video"], list) else [args["video"]]
    return (video, args["frame_idx"], args["boxes"], list(args["out_size"]), args["perm"], args["flip"],
            args["rot"], args["channel"], list(KINETICS_MEAN), list(KINETICS_STD), dtype, channels_last)


def _cuda_kernel(args: dict, device: str, dtype: torch.dtype = torch.float32, channels_last: bool = False,
                 max_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """The CUDA kernel's output, run on the host (device "cpu") or on the GPU, returned on the CPU."""
    op_args = _op_args(cube_crop_on(args, device), dtype, channels_last)
    return torch.ops.vidfast.cube_crop_cuda_check(*op_args, max_grid=max_grid).cpu()


def _assert_identical(out: torch.Tensor, args: dict, dtype: torch.dtype, channels_last: bool) -> None:
    """``out`` equals the CPU kernel and the reference bit for bit, with the CPU kernel's strides."""
    cpu = torch.ops.vidfast.cube_crop(*_op_args(args, dtype, channels_last))
    ref = cube_crop_reference(**args, dtype=dtype, channels_last=channels_last)
    assert out.dtype == dtype and out.shape == cpu.shape == ref.shape and out.stride() == cpu.stride()
    assert not out.isnan().any(), "elements that no thread wrote"
    assert torch.equal(out.view(BITS[dtype]), cpu.view(BITS[dtype]))
    assert torch.equal(out.view(BITS[dtype]), ref.view(BITS[dtype]))


def _launches(args: dict, channels_last: bool, max_grid: tuple[int, int]) -> int:
    """How many launches the launcher makes: planes and chunks per plane, split by max_grid."""
    n, p, t = args["frame_idx"].shape
    _, oh, ow = args["out_size"]
    planes = n * p * t * (1 if channels_last else 3)
    chunks = math.ceil(oh * ow * (3 if channels_last else 1) / BLOCK_ELEMS)
    return math.ceil(planes / max_grid[0]) * math.ceil(chunks / max_grid[1])


# The op's test matrix: batched and ragged clips, copies, resizes and both mixed, square outputs (every rot90)
# and non-square ones (rot 0 / 2); flips, permutations and channel replication drawn at random per piece.
CASES = {
    "mixed": {"seed": 1, "n": 3, "p": 4, "t": 4, "size": (8, 8)},
    "copy": {"seed": 2, "p": 4, "size": (8, 8), "copy": True},
    "resize": {"seed": 3, "p": 4, "size": (8, 8), "copy": False},
    "non-square": {"seed": 4, "p": 4, "size": (5, 7)},
    "ragged": {"seed": 5, "n": 3, "p": 4, "size": (6, 6), "ragged": True},
    "ragged non-square": {"seed": 6, "n": 3, "p": 4, "size": (5, 7), "ragged": True},
}


def test_matrix_covers_every_transform():
    """The random cases above really contain every flip, rotation, channel choice, copies and resizes."""
    cases = [cube_crop_case(**kwargs) for kwargs in CASES.values()]
    assert set(torch.cat([c["flip"].flatten() for c in cases]).tolist()) == {False, True}
    assert set(torch.cat([c["rot"].flatten() for c in cases]).tolist()) == {0, 1, 2, 3}
    assert set(torch.cat([c["channel"].flatten() for c in cases]).tolist()) == {-1, 0, 1, 2}
    copy = [bool((c["boxes"][..., 2:] == torch.tensor(c["out_size"][1:])).all(-1).any()) for c in cases]
    resize = [bool((c["boxes"][..., 2:] != torch.tensor(c["out_size"][1:])).any(-1).any()) for c in cases]
    assert any(copy) and any(resize)
    assert {isinstance(c["video"], list) for c in cases} == {False, True}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", OUT_DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_matrix(device, case, dtype, channels_last):
    args = cube_crop_case(**CASES[case])
    _assert_identical(_cuda_kernel(args, device, dtype, channels_last), args, dtype, channels_last)


# Outputs at the edges of the block grid (planes of oh * ow elements, x3 channels-last; a block covers 1024):
# one element per plane and one piece, fewer elements than threads, one per thread, exactly one block chunk,
# one or two past a chunk, several chunks.
EDGE_CASES = {
    "1x1, one piece": {"n": 1, "p": 1, "t": 1, "size": (1, 1)},
    "1x1": {"size": (1, 1)},
    "7x9 (63)": {"size": (7, 9)},
    "16x16 (256)": {"size": (16, 16)},
    "32x32 (1024)": {"size": (32, 32)},
    "25x41 (1025)": {"size": (25, 41)},
    "18x19 (342, x3 = 1026)": {"size": (18, 19)},
    "40x40 (several chunks)": {"size": (40, 40)},
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(EDGE_CASES))
@pytest.mark.parametrize("channels_last", [False, True])
def test_grid_edges(device, case, channels_last):
    kwargs = {"n": 1, "p": 2, "t": 2, **EDGE_CASES[case]}
    oh, ow = kwargs["size"]
    args = cube_crop_case(7, **kwargs, frames=3, hw=(oh + 3, ow + 3))
    out = _cuda_kernel(args, device, channels_last=channels_last)
    _assert_identical(out, args, torch.float32, channels_last)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("max_grid", [(1, 1), (5, 1), (7, 3), (2, 2), (36, 1)])
def test_grid_split_into_launches(device, channels_last, max_grid):
    """Grids over the per-launch limit run as several launches; the output does not depend on the split."""
    args = cube_crop_case(9, n=2, p=3, t=2, size=(25, 41), hw=(30, 45))
    assert _launches(args, channels_last, max_grid) > 1
    out = _cuda_kernel(args, device, channels_last=channels_last, max_grid=max_grid)
    assert torch.equal(out, _cuda_kernel(args, device, channels_last=channels_last, max_grid=CUDA_GRID))
    _assert_identical(out, args, torch.float32, channels_last)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_output(device):
    args = {**cube_crop_case(10, p=0), "boxes": torch.zeros(2, 0, 4, dtype=torch.long)}
    out = _cuda_kernel(args, device, max_grid=(1, 1))
    assert out.shape == (2, 0, 3, 3, 6, 6)
    assert out.stride() == torch.ops.vidfast.cube_crop(*_op_args(args, torch.float32, False)).stride()


@pytest.mark.parametrize("max_grid", [(0, 1), (1, 0), (1,), (1, 2, 3), (2**31, 1), (1, 65536)])
def test_max_grid_checked(max_grid):
    with pytest.raises(ValueError, match="max_grid"):
        _cuda_kernel(cube_crop_case(11), "cpu", max_grid=max_grid)


@settings(max_examples=30, deadline=None)
@given(**cube_crop_draws(max_size=40), max_grid=st.sampled_from([None, (1, 1), (3, 1), (4, 2), (64, 1)]))
def test_random_cases_on_host(seed, n, p, t, oh, ow, copy, ragged, dtype, channels_last, max_grid):
    args = cube_crop_case(seed, n=n, p=p, t=t, size=(oh, ow), hw=(oh + 4, ow + 4), copy=copy, ragged=ragged)
    out = _cuda_kernel(args, "cpu", dtype, channels_last, max_grid)
    _assert_identical(out, args, dtype, channels_last)

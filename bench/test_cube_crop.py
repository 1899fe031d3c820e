"""Benchmark of vidfast.ops.cube_crop (pytest-benchmark; not part of the test run).

Competitors, on the same inputs and producing the same float32 output bytes:
  native           torch.ops.vidfast.cube_crop (C++/OpenMP or CUDA)
  reference        vidfast.ops.cube_crop_reference (vectorised PyTorch gathers)
  straightforward  per-sample slicing, permute, float, F.interpolate, normalise, stack (written by hand)
  copy_            ``dst.copy_(src)``: float32 tensors of the output's shape, both preallocated, contiguous,
                   so it reads and writes the op's output bytes once each (the bandwidth yardstick the op
                   should match: the op reads a quarter of that, uint8, and writes the same)
Cases: (a) "puzzle": N=32 clips [16, 128, 171, 3] uint8 -> 4 pieces [3, 16, 64, 64], no resize, random perm;
(b) "supervised": N=32 clips -> one [3, 16, 112, 112] crop resized from a random multi-scale corner box.

Besides each competitor's own pytest-benchmark timing, all four are timed interleaved so that their ratios are
measured side by side even when other jobs load the machine: native and copy_ back to back in each of ROUNDS
rounds (alternating which goes first), the slow two in SLOW_ROUNDS rounds; a ratio is the median over rounds
of the per-round ratio.  They go into ``extra_info`` (``gb_per_s_written``, ``of_copy_bandwidth``,
``speedup_vs_straightforward``) and are printed with the instruction set of the CPU kernel's row loops
(``ATEN_CPU_CAPABILITY=avx2`` or ``default`` lowers it, as on a CPU without AVX-512).
Run: .venv/bin/python -m pytest bench/test_cube_crop.py -q -s --benchmark-columns=median,rounds
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from vidfast import _ext
from vidfast.conventions import KINETICS_MEAN, KINETICS_STD
from vidfast.ops import cube_crop, cube_crop_reference, native_available

N, T, H, W = 32, 16, 128, 171
ROUNDS, SLOW_ROUNDS = 41, 3
IMPLS = ("native", "reference", "straightforward", "copy_")
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[
        pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ]),
]


def _make_case(name: str, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (N, T, H, W, 3), dtype=torch.uint8, generator=g)
    if name == "puzzle":
        p, (t, oh, ow) = 4, (16, 64, 64)
        corners = torch.tensor([[0, 0], [0, 64], [64, 0], [64, 64]])
        jitter = torch.stack([torch.randint(0, H - 128 + 1, (N,), generator=g),
                              torch.randint(0, W - 128 + 1, (N,), generator=g)], -1)
        yx = corners[None] + jitter[:, None]
        boxes = torch.cat([yx, torch.full((N, p, 2), 64)], -1)
        perm = torch.stack([torch.randperm(p, generator=g) for _ in range(N)])
    else:  # multi-scale corner crop (Hara et al.): side = scale * short side, at a corner or the centre
        p, (t, oh, ow) = 1, (16, 112, 112)
        scales = torch.tensor([1.0, 1 / 2**0.25, 1 / 2**0.5, 1 / 2**0.75, 0.5])
        side = (scales[torch.randint(0, 5, (N,), generator=g)] * min(H, W)).long()
        corner = torch.randint(0, 5, (N,), generator=g)
        y0 = torch.where(corner % 2 == 1, H - side, 0)
        x0 = torch.where(corner >= 2, W - side, 0)
        y0, x0 = torch.where(corner == 4, (H - side) // 2, y0), torch.where(corner == 4, (W - side) // 2, x0)
        boxes = torch.stack([y0, x0, side, side], -1)[:, None]
        perm = torch.zeros(N, 1, dtype=torch.long)
    start = torch.randint(0, T - t + 1, (N, p, 1), generator=g)
    return {"video": video.to(device), "frame_idx": start + torch.arange(t), "boxes": boxes,
            "out_size": (t, oh, ow), "perm": perm}


def _straightforward(video, frame_idx, boxes, out_size, perm) -> torch.Tensor:
    """Hand-written version: slice each piece, permute to [3, t, h, w], float, resize, normalise, stack."""
    mean = torch.tensor(KINETICS_MEAN, device=video.device).view(3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD, device=video.device).view(3, 1, 1, 1)
    _, oh, ow = out_size
    clips = []
    for n in range(video.shape[0]):
        pieces = []
        for j in range(perm.shape[1]):
            src = int(perm[n, j])
            y0, x0, h, w = boxes[n, src].tolist()
            x = video[n, frame_idx[n, src].to(video.device), y0:y0 + h, x0:x0 + w]  # [t, h, w, 3]
            x = x.permute(3, 0, 1, 2).float() / 255
            if (h, w) != (oh, ow):
                x = F.interpolate(x.transpose(0, 1), size=(oh, ow), mode="bilinear", align_corners=False)
                x = x.transpose(0, 1)
            pieces.append((x - mean) / std)
        clips.append(torch.stack(pieces))
    return torch.stack(clips)


def _competitors(args: dict) -> dict[str, Callable[[], torch.Tensor]]:
    shape = (N, args["perm"].shape[1], 3, *args["out_size"])
    device = args["video"].device
    src = torch.empty(shape, device=device).uniform_()
    dst = torch.empty(shape, device=device)
    return {
        "native": lambda: cube_crop(**args),
        "reference": lambda: cube_crop_reference(**args),
        "straightforward": lambda: _straightforward(**args),
        "copy_": lambda: dst.copy_(src),
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


_MEASURED: dict[tuple[str, str], dict] = {}


def _side_by_side(case: str, device: str) -> dict:
    """Median seconds of every competitor, timed round robin; computed once per (case, device)."""
    key = (case, device)
    if key not in _MEASURED:
        args = _make_case(case, device)
        fns = _competitors(args)
        out = fns["native"]()
        torch.testing.assert_close(out, fns["straightforward"](), rtol=0, atol=1e-4)
        for name in IMPLS:  # warm-up (allocator, caches, lazy init)
            fns[name]()
        times: dict[str, list[float]] = {name: [] for name in IMPLS}

        def timed(name: str) -> None:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)

        for r in range(ROUNDS):
            for name in ("native", "copy_") if r % 2 == 0 else ("copy_", "native"):
                timed(name)
        for _ in range(SLOW_ROUNDS):
            for name in ("reference", "straightforward"):
                timed(name)
        median = {name: statistics.median(ts) for name, ts in times.items()}
        per_round = [c / n for c, n in zip(times["copy_"], times["native"], strict=True)]
        written = out.numel() * out.element_size()
        _MEASURED[key] = {
            "median_s": median,
            "bytes_written": written,
            "gb_per_s_written": {name: written / s / 1e9 for name, s in median.items()},
            "of_copy_bandwidth": {name: median["copy_"] / s for name, s in median.items()}
            | {"native": statistics.median(per_round)},
            "speedup_vs_straightforward": {name: median["straightforward"] / s for name, s in median.items()},
        }
        m = _MEASURED[key]
        native = _ext.native_module()
        isa = native.build_info().get("cpu_isa", "?") if native is not None and device == "cpu" else device
        quartiles = statistics.quantiles(per_round, n=4)
        print(f"\n[{case}/{device}] {written / 1e6:.0f} MB written; threads={torch.get_num_threads()}; "
              f"row kernels {isa}; native/copy_ per round: median {m['of_copy_bandwidth']['native']:.2f}, "
              f"quartiles {quartiles[0]:.2f}-{quartiles[2]:.2f} over {ROUNDS} rounds")
        for name in IMPLS:
            print(f"  {name:16s} {median[name] * 1e3:8.1f} ms  {m['gb_per_s_written'][name]:6.2f} GB/s  "
                  f"{100 * m['of_copy_bandwidth'][name]:6.1f}% of copy_  "
                  f"{m['speedup_vs_straightforward'][name]:6.1f}x straightforward")
    return _MEASURED[key]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ["puzzle", "supervised"])
@pytest.mark.parametrize("impl", IMPLS)
def test_cube_crop(benchmark, impl, case, device):
    if impl == "native" and not native_available(device):
        pytest.skip(f"no native cube_crop kernel for {device}")
    measured = _side_by_side(case, device)
    fn = _competitors(_make_case(case, device))[impl]

    def run() -> None:
        fn()
        _sync(device)

    benchmark.pedantic(run, rounds=3 if impl in ("reference", "straightforward") else 10, warmup_rounds=1)
    benchmark.extra_info.update({
        "bytes_written": measured["bytes_written"],
        "gb_per_s_written": round(measured["gb_per_s_written"][impl], 3),
        "of_copy_bandwidth": round(measured["of_copy_bandwidth"][impl], 3),
        "speedup_vs_straightforward": round(measured["speedup_vs_straightforward"][impl], 2),
        "side_by_side_median_ms": {k: round(v * 1e3, 2) for k, v in measured["median_s"].items()},
    })

"""Which precision a model runs in: measured on this machine among the candidates proven correct here.

``plan_precision`` (training, ``grads=True``, and inference alike):

1. candidates: fp32 and the autocast dtypes of the device (bf16 on a CPU; bf16 where supported and fp16 on
   CUDA); ``amp`` True/False forces one; unless forced, a low precision the hardware cannot accelerate is not
   considered (:func:`unaccelerated`: bf16 on a CPU without avx512_bf16 or AMX, or with oneDNN capped below
   them; fp16 / bf16 on GPUs without tensor cores for them), and one log line says why;
2. safety: each low-precision candidate's convolution configurations are checked against fp32
   (:mod:`vidfast.runtime.convcheck`); the layers that fail compute in fp32 under that autocast dtype, and a
   candidate whose every convolution failed is dropped; under the chosen one, configurations the run meets
   later (a smaller last batch, other clip shapes) are checked when first met;
3. speed: with more than one candidate left, ``make_step(name)`` steps (a real training step or forward of the
   actual model and batch) are timed interleaved after a warm-up, and the fastest wins; a candidate whose
   fastest step is more than ``GIVE_UP`` times another's fastest call (its warm-up included, an upper bound
   of its cost) is timed no further (an emulated bf16 step can take 5x an fp32 one; with AMX an fp32 step
   takes 3x a bf16 one), and the timing ends once one candidate is left (:func:`interleaved_seconds`), or
   once the spread of each one's timed steps cannot change the choice (:func:`settled`, from the second
   round on); fp32 wins unless another is faster by more than ``MARGIN`` (so the default is never slower
   than fp32 beyond noise). The decision is cached per (machine, torch, workload, threads): later runs --
   and a ``--deterministic`` rerun, which must not flip precision on timing noise -- reuse it; a run may
   also pass a ``recorded`` decision (e.g. its checkpoint's, on resume).

Why measure: bf16 + channels-last trains resnet18 1.36x faster than fp32 on a CPU with AMX, 0.76x on an
AVX-512 CPU without it, and small models and clips are within noise either way. The check and the timing show
their progress (``progress``, a :mod:`vidfast.progress` mode).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vidfast.progress import Progress
from vidfast.runtime.cache import JsonlStore, machine_fingerprint
from vidfast.runtime.convcheck import check_model, route_to_fp32

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: a low precision must beat fp32 by this fraction of its time to be chosen
MARGIN = 0.03
#: a candidate whose fastest timed step is more than this times the fastest step so far is timed no further
GIVE_UP = 1.5
#: oneDNN ISA caps (ONEDNN_MAX_CPU_ISA, DNNL_MAX_CPU_ISA) that still include its bf16 instructions
ONEDNN_BF16_ISAS = frozenset({
    "ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
    "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2",
})
log = logging.getLogger(__name__)


def _cpu_has(feature: str) -> bool:
    """``torch.cpu._is_<feature>_supported()`` (False where this torch lacks the query)."""
    query = getattr(torch.cpu, f"_is_{feature}_supported", None)
    return bool(query()) if query is not None else False


def unaccelerated(name: str, device: torch.device) -> str:
    """Why the hardware cannot run precision ``name`` faster than fp32 on ``device`` ("" when it may: then
    only timing tells). On a CPU bf16 needs avx512_bf16 or AMX, and oneDNN allowed to use them; on CUDA fp16
    needs tensor cores (compute capability 7.0) and bf16 ones that take it (8.0)."""
    if name == "fp32":
        return ""
    if device.type == "cpu":
        if not (_cpu_has("avx512_bf16") or _cpu_has("amx_tile")):
            return (f"this CPU has no bf16 instructions (no avx512_bf16, no AMX; ATen level "
                    f"{torch.backends.cpu.get_cpu_capability()}): bf16 would be emulated, several times "
                    "slower")
        for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
            cap = os.environ.get(var, "").strip().upper()
            if cap and cap not in ONEDNN_BF16_ISAS:
                return f"{var}={cap} keeps oneDNN below its bf16 instructions: bf16 would be emulated"
        return ""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        need = (8, 0) if name == "bf16" else (7, 0)
        if (major, minor) < need:
            return (f"compute capability {major}.{minor} has no {name} tensor cores "
                    f"(needs {need[0]}.{need[1]})")
    return ""


def candidates(device: torch.device, amp: bool | None = None, amp_dtype: str = "auto") -> list[str]:
    """The precisions to consider on ``device``, fp32 first. ``amp`` False: fp32 only; True: the low precision
    only (``amp_dtype`` "auto": bf16 on a CPU and on GPUs that support it, else fp16); None: all."""
    if amp_dtype not in ("auto", "bf16", "fp16"):
        raise ValueError(f"amp dtype must be auto, bf16 or fp16, got {amp_dtype!r}")
    if device.type == "cuda":
        low = ["bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    else:
        low = ["bf16"]
    if amp_dtype != "auto":
        if amp_dtype not in low:
            raise ValueError(f"{amp_dtype} autocast is not available on {device.type}; use bf16 (or auto)")
        low = [amp_dtype]
    if amp is None:
        return ["fp32", *low]
    return [low[0]] if amp else ["fp32"]


def choose(seconds: Mapping[str, float], margin: float = MARGIN) -> str:
    """The fastest of ``seconds`` (name -> seconds per step); fp32 unless another is faster by ``margin``."""
    fastest = min(seconds, key=seconds.__getitem__)
    if "fp32" in seconds and seconds[fastest] > seconds["fp32"] * (1 - margin):
        return "fp32"
    return fastest


def settled(seconds: Mapping[str, Sequence[float]], margin: float = MARGIN) -> bool:
    """Whether :func:`choose` picks the same candidate whichever of its timed steps stands for each (every
    combination of each one's fastest and slowest step; at least two steps each): then more rounds could
    only move the figures within a spread that does not change the choice."""
    if not seconds or any(len(ts) < 2 for ts in seconds.values()):
        return False
    names = list(seconds)
    corners = itertools.product(*[(min(seconds[n]), max(seconds[n])) for n in names])
    return len({choose(dict(zip(names, corner, strict=True)), margin) for corner in corners}) == 1


def interleaved_seconds(steps: Mapping[str, Callable[[], object]], rounds: int = 3, warmup: int = 1,
                        sync: Callable[[], None] = lambda: None, give_up: float | None = None,
                        progress: Progress | None = None,
                        enough: Callable[[dict[str, list[float]]], bool] | None = None
                        ) -> dict[str, list[float]]:
    """Wall seconds of each step per round, the steps called round robin (so that load from other jobs hits
    all alike; each round starts one step further, so that no step always comes first or last) after
    ``warmup`` calls each, timed too but not returned. ``progress`` advances per call.

    With ``give_up`` the timing stops as soon as the order is clear. Load from other jobs only adds time and a
    first call adds one-time set-up, so a step's fastest timed call is the best estimate of its cost, and
    its fastest call of any kind (warm-up included) is at least its cost. A step whose fastest timed call
    is more than ``give_up`` times the fastest call of another step is therefore clearly slower: it is called
    no more (it keeps the times it has), which may happen before the other has a timed call; and once a
    single step is left with a timed call, it is clearly the fastest and the timing ends. ``enough`` (e.g.
    :func:`settled`), asked after each round with the times of the steps still called, may end it too."""
    bound = dict.fromkeys(steps, math.inf)  # fastest call of any kind: at least the step's cost
    for name, step in steps.items():
        for _ in range(warmup):
            start = time.perf_counter()
            step()
            sync()
            bound[name] = min(bound[name], time.perf_counter() - start)
            if progress is not None:
                progress.advance()
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name not in names:  # given up during this round
                continue
            step = steps[name]
            start = time.perf_counter()
            step()
            sync()
            seconds[name].append(time.perf_counter() - start)
            bound[name] = min(bound[name], seconds[name][-1])
            if progress is not None:
                progress.advance()
            if give_up is None or len(steps) == 1:
                continue
            done = []
            other = min(names, key=lambda n: math.inf if n == name else bound[n])
            if other != name and min(seconds[name]) > give_up * bound[other]:
                names.remove(name)
                done.append(name)
                log.info("precision: %s timed no further: %.3g s/step, over %g x %s's %.3g s", name,
                         min(seconds[name]), give_up, other, bound[other])
            if len(names) == 1 and seconds[names[0]]:
                log.info("precision: %s clearly the fastest after %d timed round(s)", names[0], r + 1)
                done.append(names.pop())
            if progress is not None:
                progress.advance(sum(rounds - len(seconds[n]) for n in done))
            if not names:
                return seconds
        if enough is not None and r + 1 < rounds and enough({n: seconds[n] for n in names}):
            log.info("precision: settled after %d timed rounds", r + 1)
            if progress is not None:
                progress.advance(sum(rounds - len(seconds[n]) for n in names))
            return seconds
    return seconds


@dataclass
class PrecisionPlan:
    """The precision to run in, the layers that compute in fp32 under it and why, and how it was decided
    ("forced", "only candidate", "recorded", "cached" or "measured"; ``seconds`` per step when measured;
    ``skipped``: candidates the hardware cannot accelerate, and why)."""

    name: str
    how: str
    fp32_layers: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32."""
        return None if self.name == "fp32" else PRECISIONS[self.name]

    def describe(self) -> str:
        """One line, e.g. ``precision bf16 (measured: fp32 0.912 s/step, bf16 0.671 s/step)``."""
        timed = ", ".join(f"{n} {s:.3g} s/step" for n, s in self.seconds.items())
        skipped = "".join(f"; {n} not considered: {why}" for n, why in self.skipped.items())
        return f"precision {self.name} ({self.how}{': ' + timed if timed else ''}{skipped})"

    def describe_fp32_layers(self) -> str:
        """One line naming the layers that compute in fp32 under the chosen autocast dtype, and why."""
        reasons: dict[str, list[str]] = {}
        for layer, reason in self.fp32_layers.items():
            reasons.setdefault(reason, []).append(layer)
        return "; ".join(f"{', '.join(layers)} in fp32 ({reason})" for reason, layers in reasons.items())


def _workload_key(workloads: Sequence[tuple[nn.Module, Tensor]], batch_size: int, grads: bool,
                  names: list[str], device: torch.device) -> str:
    text = repr([(repr(m), tuple(x.shape), x.stride()) for m, x in workloads])
    digest = hashlib.sha1(text.encode()).hexdigest()
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    return repr((machine_fingerprint(device), digest, batch_size, grads, names, threads))


def plan_precision(workloads: Sequence[tuple[nn.Module, Tensor]], batch_size: int, device: torch.device,
                   make_step: Callable[[str], Callable[[], object]], amp: bool | None = None,
                   amp_dtype: str = "auto", grads: bool = True, recorded: str | None = None,
                   rounds: int = 3, progress: str = "none") -> PrecisionPlan:
    """Decide the precision of ``workloads`` ((model, one-sample example input) pairs run together) at
    ``batch_size``, and route each model's failing layers to fp32 (see the module docstring).

    ``make_step(name)`` returns one timed unit of work in precision ``name`` (called only when timing is
    needed). ``recorded``: a decision to reuse when it is still a candidate. ``progress``: how the check and
    the timing show their progress (a :mod:`vidfast.progress` mode).
    """
    names = candidates(device, amp, amp_dtype)
    skipped = {} if amp is not None else {n: why for n in names if (why := unaccelerated(n, device))}
    for name, why in skipped.items():
        names.remove(name)
        log.info("precision: %s not considered: %s", name, why)
    fp32_layers: dict[str, dict[str, str]] = {}
    for name in [n for n in names if n != "fp32"]:
        failed: dict[str, str] = {}
        total = 0
        for index, (model, example) in enumerate(workloads):
            layers = check_model(model, example, batch_size, PRECISIONS[name], device, grads,
                                 progress=progress)
            route_to_fp32(model, {layer: [PRECISIONS[name]] for layer in layers})
            prefix = f"model {index}: " if len(workloads) > 1 else ""
            failed.update({prefix + layer: why for layer, why in layers.items()})
            total += sum(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
        fp32_layers[name] = failed
        if amp is None and total and len(failed) == total:
            names.remove(name)  # every convolution would run in fp32: nothing to gain
    def decided(name: str, how: str, seconds: dict[str, float] | None = None) -> PrecisionPlan:
        if name != "fp32":  # shapes the plan did not foresee are checked when first met
            for model, _ in workloads:
                route_to_fp32(model, {}, checked=[PRECISIONS[name]])
        return PrecisionPlan(name, how, fp32_layers.get(name, {}), seconds or {}, skipped)

    if len(names) == 1:
        return decided(names[0], "forced" if amp is not None else "only candidate")
    if recorded in names:
        return decided(recorded, "recorded")
    store = JsonlStore("precision")
    key = _workload_key(workloads, batch_size, grads, names, device)
    cached = store.read().get(key)
    if cached is not None and cached.get("name") in names:
        return decided(cached["name"], "cached", cached["seconds"])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        steps = {name: make_step(name) for name in names}
        with Progress(f"precision: timing {', '.join(names)}", len(names) * (1 + rounds), mode=progress,
                      plain_every=1, transient=True) as shown:
            times = interleaved_seconds(steps, rounds, 1, sync, give_up=GIVE_UP, progress=shown,
                                        enough=settled)
        seconds = {n: statistics.median(s) for n, s in times.items()}
    del steps
    name = choose(seconds)
    store.append({"key": key, "name": name, "seconds": seconds})
    return decided(name, "measured", seconds)

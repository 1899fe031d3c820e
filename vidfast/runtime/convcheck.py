"""Per-layer check of low-precision convolution kernels against fp32, at the shapes a model really runs.

Measured with torch 2.13's CPU kernels (oneDNN), on an AVX-512 CPU without AMX as on one with AMX: under bf16
autocast the *weight gradient* of a ``Conv3d`` is garbage -- relative error from 0.1 to 1e33, inf or NaN,
different on every call -- where the input is shallower in time than the kernel (depth 2 under 3x3x3) and for
stride-2 convolutions whose input is 1x1 spatially, in both memory formats; outputs and input gradients are
right. A rule written from such observations misses the next case, so instead every distinct convolution
configuration of a model (channels, kernel, stride, padding, dilation, groups, bias, input shape and strides,
weight strides) is run once per candidate precision and compared with fp32 on the same (rounded) inputs:

- output, input, weight and bias gradients each within ``TOLERANCE`` (relative Frobenius error; a correct
  bf16 kernel is at ~0.003, the bf16 rounding of its output), on every call: at least ``CALLS`` calls, more
  while they take under ``BUDGET_S`` (up to ``MAX_CALLS``), with the output gradient alternately in the
  output's layout and contiguous (some wrong kernels are wrong in one layout only), so that each layout is
  met and the output's layout twice;
- the calls bit-for-bit identical wherever the fp32 kernel itself repeats bit for bit (always on a CPU, where
  the reference therefore runs once; twice elsewhere, to see whether it repeats);
- in a process whose heap is poisoned (:data:`CHECK_ENV`), so that reading unwritten memory shows every time:
  there each of the tests' bad-looking configurations was wrong on 20 of 20 direct calls or on none (on a
  Xeon with AMX, and with oneDNN capped at AVX512_CORE_BF16), where in a process with a history some were
  wrong on only a few: so a few calls per configuration suffice.

Some kernels do worse than compute garbage: the bf16 backward of a 3-channel 7x7x7 stride-(1,2,2) Conv3d on a
channels-last [2, 3, 4, 16, 16] input never returns (torch 2.13, AVX-512 CPU). So the checks run in a watched
child process: one that hangs or dies fails. Verdicts are cached per (machine, torch, precision,
configuration, threads). Failed configurations run in fp32 under autocast (:func:`route_to_fp32`), and a
configuration a run meets that its plan did not foresee (a smaller last batch, a puzzle whose video was too
short for the temporal cut) is checked when first met, before it runs in low precision.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidfast.progress import Progress
from vidfast.runtime.cache import JsonlStore, machine_fingerprint

#: largest relative error (Frobenius norm) a low-precision result may have against fp32 on rounded inputs
TOLERANCE: dict[torch.dtype, float] = {torch.bfloat16: 2e-2, torch.float16: 5e-3}
#: low-precision calls per check: at least CALLS (both output-gradient layouts, the output's one twice), more
#: within BUDGET_S seconds (cheap configurations), at most MAX_CALLS
CALLS, BUDGET_S, MAX_CALLS = 3, 0.1, 128
#: seconds a checking child may take to start and run the fp32 reference; then the low-precision calls may
#: take HANG_FACTOR times the reference's time (at least MIN_WAIT_S) before the kernel counts as hung
START_TIMEOUT_S, HANG_FACTOR, MIN_WAIT_S = 600.0, 20.0, 10.0
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
#: part of every cached verdict's key: raised when the check gets stricter, so that older verdicts are redone
CHECK_VERSION = 3
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class ConvConfig:
    """One convolution as a kernel sees it. ``input_shape`` ``(N, C, *spatial)`` at the run's batch size."""

    op: str  # conv1d, conv2d, conv3d
    weight_shape: tuple[int, ...]
    weight_strides: tuple[int, ...]
    bias: bool
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    groups: int
    input_shape: tuple[int, ...]
    input_strides: tuple[int, ...]
    input_grad: bool = True  # whether the backward pass computes the input's gradient (not for the clip)

    @classmethod
    def of(cls, module: nn.Module, x: Tensor, scale: int = 1) -> ConvConfig:
        """The configuration of ``module`` called on ``x``, with ``scale`` times its batch size."""
        shape = (x.shape[0] * scale, *x.shape[1:])
        per_sample = math.prod(x.shape[1:])
        rest = x.stride()[1:]
        expected, dense = 1, True  # the sample's dimensions tile its memory without gaps or overlaps
        for stride, size in sorted((s, n) for s, n in zip(rest, x.shape[1:], strict=True) if n > 1):
            dense, expected = dense and stride == expected, expected * size
        strides = (per_sample, *rest) if dense else torch.empty(shape).stride()
        return cls(
            op=f"conv{x.dim() - 2}d",
            weight_shape=tuple(module.weight.shape),
            weight_strides=tuple(module.weight.stride()),
            bias=module.bias is not None,
            stride=tuple(module.stride),
            padding=module.padding if isinstance(module.padding, str) else tuple(module.padding),
            dilation=tuple(module.dilation),
            groups=module.groups,
            input_shape=shape,
            input_strides=tuple(strides),
            input_grad=x.requires_grad,
        )

    def describe(self) -> str:
        """E.g. ``conv3d 64->128 k3x3x3 s2 p1 on [8, 64, 2, 1, 1] channels-last`` (plus ``, no input
        gradient`` for a first layer)."""
        cout, cin_g = self.weight_shape[:2]
        layout = "channels-last" if self.input_strides[1] == 1 and self.input_shape[1] > 1 else "contiguous"

        def dims(v: tuple[int, ...] | str) -> str:
            return v if isinstance(v, str) else (str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v)))

        groups = f" g{self.groups}" if self.groups > 1 else ""
        return (f"{self.op} {cin_g * self.groups}->{cout} k{'x'.join(map(str, self.weight_shape[2:]))} "
                f"s{dims(self.stride)} p{dims(self.padding)}{groups} on {list(self.input_shape)} {layout}"
                f"{'' if self.input_grad else ', no input gradient'}")


def collect_convs(model: nn.Module, example: Tensor, batch_size: int = 1) -> dict[ConvConfig, list[str]]:
    """The distinct convolution configurations of ``model`` on inputs like ``example`` (one forward pass in
    eval mode) scaled to ``batch_size`` times ``example``'s batch, each with its layers' names.
    Transposed convolutions and non-zero padding modes are not collected."""
    found: dict[ConvConfig, list[str]] = {}

    def record(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
            found.setdefault(ConvConfig.of(module, args[0], batch_size), []).append(name)

        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in model.named_modules()
             if isinstance(m, _CONVS) and m.padding_mode == "zeros"]
    was_training = model.training
    try:
        model.eval()
        with torch.enable_grad():  # so that inputs which need a gradient in training show it
            model(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return found


def _filled(shape: tuple[int, ...], strides: tuple[int, ...], scale: float, gen: torch.Generator,
            device: torch.device) -> Tensor:
    out = torch.empty_strided(shape, strides, device=device)
    return out.copy_(torch.randn(shape, generator=gen) * scale)


def _relative_error(a: Tensor, ref: Tensor, ref_norm: float) -> float:
    """``|a - ref| / ref_norm`` (Frobenius; float32 arithmetic: inf or NaN where ``a`` is garbage)."""
    return torch.linalg.vector_norm(a - ref).item() / max(ref_norm, 1e-30)


def check_config(config: ConvConfig, dtype: torch.dtype, device: torch.device | str = "cpu",
                 grads: bool = True, calls: int = CALLS, budget_s: float = BUDGET_S,
                 on_reference: Callable[[float], None] | None = None) -> str:
    """Why ``config`` is not safe under ``dtype`` autocast on ``device`` ("" when it is): see the module
    docstring. ``grads=False`` checks the forward pass only (inference). Runs in this process: a kernel that
    hangs hangs it (:func:`check_model` runs this in a watched child process). ``on_reference`` gets the
    seconds the fp32 reference took, before the low-precision calls."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    fan_in = math.prod(config.weight_shape[1:])
    x = _filled(config.input_shape, config.input_strides, 1.0, gen, device)
    w = _filled(config.weight_shape, config.weight_strides, fan_in ** -0.5, gen, device)
    b = (torch.randn(config.weight_shape[0], generator=gen) * 0.1).to(device) if config.bias else None
    conv = getattr(F, config.op)
    names = ["input gradient", "weight gradient", "bias gradient"]
    grad_out: list[Tensor] = []

    def run(leaves: list[Tensor | None], autocast: bool, contiguous_grad: bool = False) -> dict[str, Tensor]:
        needs = [grads and config.input_grad, grads, grads]
        leaves = [t.detach().requires_grad_(g) if t is not None else None
                  for t, g in zip(leaves, needs, strict=True)]
        with torch.set_grad_enabled(grads), torch.autocast(device.type, dtype=dtype, enabled=autocast):
            y = conv(leaves[0], leaves[1], leaves[2], config.stride, config.padding, config.dilation,
                     config.groups)
        if not grads:
            return {"output": y.detach().float()}
        if not grad_out:
            noise = torch.randn(y.shape, generator=gen)
            grad_out.append(torch.empty_like(y, dtype=torch.float32).copy_(noise))
        grad = grad_out[0].contiguous() if contiguous_grad else grad_out[0]
        y.backward(grad.to(dtype).to(y.dtype))
        done = {n: t.grad for n, t in zip(names, leaves, strict=True) if t is not None and t.requires_grad}
        return {"output": y.detach().float(), **{n: g.float() for n, g in done.items()}}

    rounded = [t.to(dtype).float() if t is not None else None for t in (x, w, b)]
    started = time.perf_counter()
    reference = run(rounded, autocast=False)
    if on_reference is not None:
        on_reference(time.perf_counter() - started)
    repeatable = device.type == "cpu" or all(
        torch.equal(reference[n], again) for n, again in run(rounded, autocast=False).items())
    norms = {name: ref.double().norm().item() for name, ref in reference.items()}
    tolerance, started = TOLERANCE[dtype], time.perf_counter()
    first: dict[bool, dict[str, Tensor]] = {}  # per output-gradient layout
    for call in range(MAX_CALLS):
        if call >= calls and time.perf_counter() - started > budget_s:
            break
        layout = call % 2 == 1
        result = run([x, w, b], autocast=True, contiguous_grad=layout)
        first.setdefault(layout, result)
        for name, ref in reference.items():
            error = _relative_error(result[name], ref, norms[name])
            if not error <= tolerance:
                return f"{name} off by {error:.2g} relative (tolerance {tolerance:g})"
            if repeatable and not torch.equal(result[name], first[layout][name]):
                return f"{name} differs between repeated calls"
    return ""


def serve() -> None:
    """Body of a checking process (``python -c``, argv: the request and reply pipes' descriptors): for each
    request, reply ("reference", seconds) then ("verdict", reason)."""
    requests = Connection(int(sys.argv[1]), writable=False)
    replies = Connection(int(sys.argv[2]), readable=False)
    while True:
        try:
            config, dtype, device, grads, deterministic, threads = requests.recv()
        except EOFError:
            return
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        verdict = check_config(config, dtype, device, grads,
                               on_reference=lambda seconds: replies.send(("reference", seconds)))
        replies.send(("verdict", verdict))


#: environment of a checking process: glibc fills memory that malloc hands out with 0x5a and freed memory with
#: 0xa5, so a kernel that reads memory it never wrote (the bf16 weight-gradient bugs above do: they are wrong
#: on 6 to 20 of 20 calls in a fresh process, depending on what the heap held before) is wrong on every call
CHECK_ENV = {"MALLOC_PERTURB_": "165"}


class _Checker:
    """A child Python process running ``code`` (default: :func:`serve`), watched: a check that kills it or
    outlives ``max(MIN_WAIT_S, HANG_FACTOR x`` its fp32 reference's time) fails; the next check gets a new
    child. A fresh interpreter rather than a multiprocessing child, so that the caller's main module is
    never imported again (a script without a ``__main__`` guard would run twice)."""

    def __init__(self, code: str = "from vidfast.runtime.convcheck import serve; serve()") -> None:
        self.code = code
        self.process: subprocess.Popen | None = None
        self.requests: Connection | None = None
        self.replies: Connection | None = None

    def _start(self) -> None:
        from_parent, to_child = os.pipe()
        from_child, to_parent = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-c", self.code, str(from_parent), str(to_parent)],
            pass_fds=(from_parent, to_parent), env={**os.environ, **CHECK_ENV},
        )
        os.close(from_parent)
        os.close(to_parent)
        self.requests = Connection(to_child, readable=False)
        self.replies = Connection(from_child, writable=False)

    def check(self, config: ConvConfig, dtype: torch.dtype, device: torch.device, grads: bool) -> str:
        if self.process is None or self.process.poll() is not None:
            self._start()
        assert self.requests is not None and self.replies is not None
        try:
            self.requests.send((config, dtype, str(device), grads,
                                torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()))
        except OSError:
            return f"killed the checking process (exit code {self.stop()})"
        wait = START_TIMEOUT_S
        while True:
            if not self.replies.poll(wait):
                self.stop()
                return f"hung: no result {wait:.0f} s after the fp32 reference"
            try:
                kind, value = self.replies.recv()
            except (EOFError, OSError):
                return f"killed the checking process (exit code {self.stop()})"
            if kind == "verdict":
                return value
            wait = max(MIN_WAIT_S, HANG_FACTOR * value)

    def stop(self) -> int | None:
        """End the child; its exit code."""
        assert self.process is not None and self.requests is not None and self.replies is not None
        if self.process.poll() is None:
            self.process.kill()
        code, self.process = self.process.wait(), None
        self.requests.close()
        self.replies.close()
        return code


_CHECKER = _Checker()
log = logging.getLogger(__name__)


class _Verdicts:
    """Verdicts by (machine, dtype, grads, determinism, threads, configuration): in memory for this process,
    backed by the ``convcheck`` store (one per cache directory), measured on first sight."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], str] = {}  # (store path, key) -> reason
        self.loaded: set[str] = set()

    def reason(self, config: ConvConfig, dtype: torch.dtype, device: torch.device, grads: bool,
               isolated: bool = True) -> str:
        store = JsonlStore("convcheck")
        path = str(store.path)
        if path not in self.loaded:
            self.known.update({(path, k): r.get("reason", "") for k, r in store.read().items()})
            self.loaded.add(path)
        context = {"check": CHECK_VERSION, "machine": machine_fingerprint(device), "dtype": _NAMES[dtype],
                   "grads": grads, "deterministic": torch.are_deterministic_algorithms_enabled(),
                   "threads": torch.get_num_threads() if device.type == "cpu" else 0}
        key = repr(sorted({**context, **asdict(config)}.items()))
        if (path, key) not in self.known:
            reason = (_CHECKER.check(config, dtype, device, grads) if isolated
                      else check_config(config, dtype, device, grads))
            store.append({"key": key, "config": config.describe(), "reason": reason})
            self.known[(path, key)] = reason
        return self.known[(path, key)]


_VERDICTS = _Verdicts()


def check_model(model: nn.Module, example: Tensor, batch_size: int, dtype: torch.dtype,
                device: torch.device, grads: bool = True, isolated: bool = True,
                progress: str = "none") -> dict[str, str]:
    """Layers of ``model`` whose convolution fails :func:`check_config` under ``dtype`` at inputs like
    ``example`` scaled to ``batch_size``, each with the failed configuration and why. Each distinct
    configuration is checked once, however many layers share it. Verdicts are cached; new ones are measured in
    a watched child process (``isolated``; measured here otherwise). ``progress``: a :mod:`vidfast.progress`
    mode, one step per configuration."""
    failed: dict[str, str] = {}
    configs = collect_convs(model, example, batch_size)
    with Progress(f"precision: checking {len(configs)} convolution configurations in {_NAMES[dtype]}",
                  len(configs), mode=progress, plain_every=1, transient=True) as shown:
        for config, layers in configs.items():
            reason = _VERDICTS.reason(config, dtype, device, grads, isolated)
            shown.advance()
            if reason:
                for layer in layers:
                    failed[layer] = f"{config.describe()}: {reason}"
    return failed


def _fails_here(module: nn.Module, x: Tensor, dtype: torch.dtype) -> bool:
    """Whether ``module``'s convolution fails under ``dtype`` at ``x``'s configuration (checked on first
    sight; logged once when it does). Not while torch.compile traces: compiled code keeps the routing it
    was traced with."""
    if torch.compiler.is_compiling():
        return False
    grads = torch.is_grad_enabled() and (x.requires_grad or module.weight.requires_grad)
    key = (x.shape, x.stride(), module.weight.stride(), x.requires_grad, dtype, grads)  # cheap, every call
    failed = module._vidfast_seen.get(key)
    if failed is None:
        config = ConvConfig.of(module, x)
        reason = _VERDICTS.reason(config, dtype, x.device, grads)
        if reason:
            log.warning("%s (%s) runs in fp32 under %s autocast: %s", module._vidfast_name,
                        config.describe(), _NAMES[dtype], reason)
        failed = module._vidfast_seen[key] = bool(reason)
    return failed


def _guarded_forward(self: nn.Module, x: Tensor) -> Tensor:
    """``forward`` of a routed layer: in fp32 outside autocast when autocast runs a dtype it failed in."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        dtype = torch.get_autocast_dtype(kind)
        if dtype in self._vidfast_fp32_dtypes or (dtype in self._vidfast_checked_dtypes
                                                  and _fails_here(self, x, dtype)):
            with torch.autocast(kind, enabled=False):
                return type(self).forward(self, x.float())
    return type(self).forward(self, x)


def route_to_fp32(model: nn.Module, layers: Mapping[str, Iterable[torch.dtype]],
                  checked: Iterable[torch.dtype] = ()) -> None:
    """Make each named layer compute in fp32 (inputs upcast, weights unchanged) whenever autocast runs one of
    its dtypes; other precisions pass through. Under a ``checked`` dtype every convolution layer also checks
    each configuration it has not run before (a shape the plan did not foresee: a smaller last batch, another
    clip size) and runs it in fp32 if it fails. Repeated calls add dtypes; ``copy.deepcopy`` keeps it."""
    checked = set(checked)
    modules = dict(model.named_modules())
    unknown = sorted(set(layers) - set(modules))
    if unknown:
        raise KeyError(f"no layer named {', '.join(unknown)}")
    for name, module in modules.items():
        fp32 = set(layers.get(name, ()))
        conv = isinstance(module, _CONVS) and module.padding_mode == "zeros"
        if not fp32 and not (checked and conv):
            continue
        module._vidfast_fp32_dtypes = frozenset(getattr(module, "_vidfast_fp32_dtypes", ())) | fp32
        module._vidfast_checked_dtypes = frozenset(getattr(module, "_vidfast_checked_dtypes", ())) | (
            checked if conv else set())
        module._vidfast_seen = getattr(module, "_vidfast_seen", {})
        module._vidfast_name = name
        module.forward = types.MethodType(_guarded_forward, module)

"""vidfast.runtime: the per-layer check of low-precision convolutions, fp32 routing, and the measured choice.

The bad configurations are built directly: torch 2.13's CPU bf16 Conv3d gives garbage weight gradients for a
stride-2 convolution on a 1x1 input and for an input shallower in time than the kernel. Where the real kernel
is wrong the check must say so; on a machine where it is right the check must say that instead (a test
compares the verdict with a direct measurement), and a kernel made wrong on purpose proves that it catches it.
"""

from __future__ import annotations

import copy
import logging
import math
import multiprocessing
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidfast.models import create_model
from vidfast.progress import Progress
from vidfast.runtime import (
    ConvConfig,
    check_config,
    check_model,
    choose,
    collect_convs,
    convcheck,
    interleaved_seconds,
    plan_precision,
    precision,
    route_to_fp32,
    settled,
)

CPU = torch.device("cpu")
UNACCELERATED = precision.unaccelerated


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Every test starts without cached verdicts and decisions, and with every candidate considered whatever
    this CPU accelerates (the tests of the skip rule say otherwise)."""
    monkeypatch.setenv("VIDFAST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "unaccelerated", lambda name, device: "")


def _configs(cin: int, cout: int, stride: int, shape: tuple[int, ...]) -> list[ConvConfig]:
    """The convolution in both memory formats, as a first layer (no input gradient) and as a later one."""
    configs = []
    for channels_last in (False, True):
        for input_grad in (False, True):
            conv = nn.Conv3d(cin, cout, 3, stride, 1, bias=False)
            x = torch.zeros(shape)
            if channels_last:
                conv = conv.to(memory_format=torch.channels_last_3d)
                x = x.contiguous(memory_format=torch.channels_last_3d)
            configs.append(ConvConfig.of(conv, x.requires_grad_(input_grad)))
    return configs


STRIDE2_1x1 = _configs(64, 128, 2, (2, 64, 2, 1, 1))
SHALLOW_TIME = _configs(32, 32, 1, (2, 32, 2, 4, 4))
ORDINARY = _configs(32, 32, 1, (2, 32, 8, 8, 8))


def _bad(shape: tuple[int, ...], weight: torch.Tensor, stride: tuple[int, ...]) -> bool:
    """The two configurations torch 2.13's CPU bf16 kernels get wrong: stride 2 on a 1x1 input, or an input
    shallower in time than the kernel."""
    return (max(stride) == 2 and shape[-2:] == (1, 1)) or 2 <= shape[2] < weight.shape[2]


class _CorruptWeightGrad(torch.autograd.Function):
    """Identity forward; the weight's gradient multiplied by a fresh random factor (a bad, non-repeatable
    kernel)."""

    @staticmethod
    def forward(ctx, weight):
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad):
        return grad * (1 + 10 * torch.rand(()))


@pytest.fixture
def bad_bf16_kernel(monkeypatch):
    """F.conv3d whose bf16 weight gradient is wrong exactly for the two bad configurations."""
    real = F.conv3d

    def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        stride_t = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        low = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        if low and _bad(tuple(x.shape), weight, stride_t):
            weight = _CorruptWeightGrad.apply(weight)
        return real(x, weight, bias, stride, padding, dilation, groups)

    monkeypatch.setattr(F, "conv3d", conv3d)


def test_check_catches_an_injected_bad_kernel_for_exactly_the_bad_configurations(bad_bf16_kernel):
    for config in STRIDE2_1x1 + SHALLOW_TIME:
        assert "weight gradient" in check_config(config, torch.bfloat16), config.describe()
    for config in ORDINARY:
        assert check_config(config, torch.bfloat16) == "", config.describe()
    for config in STRIDE2_1x1 + SHALLOW_TIME:  # forward only: the output is right
        assert check_config(config, torch.bfloat16, grads=False) == ""


class _Perturb(torch.autograd.Function):
    """Identity forward; on its n-th call, the gradient scaled by ``1 + size * n`` in fp32 (never twice the
    same) when ``when(grad)`` says so."""

    calls = 0

    @staticmethod
    def forward(ctx, y, when, size):
        ctx.when, ctx.size = when, size
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        if not ctx.when(grad):
            return grad, None, None
        _Perturb.calls += 1
        return (grad.float() * (1 + ctx.size * _Perturb.calls)).to(grad.dtype), None, None


def _perturbed_bf16_conv3d(monkeypatch, when, size: float) -> list[bool]:
    """F.conv3d whose bf16 backward is perturbed by :class:`_Perturb` where ``when(output gradient)``; returns
    the autocast flag of every call."""
    real, calls = F.conv3d, []

    def conv3d(*args, **kwargs):
        low = torch.is_autocast_enabled("cpu")
        calls.append(low)
        y = real(*args, **kwargs)
        return _Perturb.apply(y, when, size) if low else y

    monkeypatch.setattr(F, "conv3d", conv3d)
    return calls


def test_the_few_calls_still_catch_a_kernel_that_does_not_repeat(monkeypatch):
    """With no time budget the check makes its ``CALLS`` (3) calls after one fp32 reference (a CPU's fp32
    kernels repeat bit for bit): both output-gradient layouts, the output's one twice, so that a kernel
    within the tolerance that differs between calls still fails."""
    config = ORDINARY[3]  # channels-last, with an input gradient
    calls = _perturbed_bf16_conv3d(monkeypatch, lambda grad: True, 2e-3)  # within the tolerance
    verdict = check_config(config, torch.bfloat16, budget_s=0.0)
    assert verdict == "input gradient differs between repeated calls"
    assert calls == [False, True, True, True]


@pytest.mark.parametrize("contiguous", [False, True], ids=["output-layout", "contiguous"])
def test_a_kernel_wrong_in_one_output_gradient_layout_only_is_caught(monkeypatch, contiguous):
    """A channels-last configuration whose bf16 backward is garbage only when the output gradient is
    contiguous, or only when it is in the output's layout, fails either way with the fewest calls."""
    config = ORDINARY[3]
    _perturbed_bf16_conv3d(monkeypatch, lambda grad: grad.is_contiguous() == contiguous, 10.0)
    assert "input gradient off by" in check_config(config, torch.bfloat16, budget_s=0.0)


def _direct_failures(config: ConvConfig, calls: int) -> int:
    """Measured without the check's code: how many of ``calls`` bf16 calls (output gradient alternately in the
    output's layout and contiguous; the input's gradient computed as the configuration says, since that
    changes the kernels a CPU runs) give a weight gradient off by more than 2 % from fp32, or not bit-equal
    to the first call of the same layout."""
    g = torch.Generator().manual_seed(1)
    x = torch.empty_strided(config.input_shape, config.input_strides).copy_(
        torch.randn(config.input_shape, generator=g))
    w = torch.empty_strided(config.weight_shape, config.weight_strides).copy_(
        torch.randn(config.weight_shape, generator=g) * 0.05)

    def weight_grad(xx, ww, autocast, contiguous):
        xx, ww = xx.detach().requires_grad_(config.input_grad), ww.detach().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = F.conv3d(xx, ww, None, config.stride, config.padding)
        grad = torch.empty_like(y).copy_(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
        y.backward((grad.contiguous() if contiguous else grad).bfloat16().to(y.dtype))
        return ww.grad.double()

    ref = weight_grad(x.bfloat16().float(), w.bfloat16().float(), False, False)
    first: dict[bool, torch.Tensor] = {}
    failures = 0
    for call in range(calls):
        grad = weight_grad(x, w, True, call % 2 == 1)
        first.setdefault(call % 2 == 1, grad)
        error = ((grad - ref).norm() / ref.norm()).item()
        failures += not error <= 0.02 or not torch.equal(grad, first[call % 2 == 1])
    return failures


def _direct_failures_in_a_checking_process(config: ConvConfig, calls: int, monkeypatch) -> int:
    """:func:`_direct_failures` in a fresh process with the checking processes' poisoned heap: the broken
    kernels read memory they never wrote, so in a process with a history they are right or wrong by luck."""
    for name, value in convcheck.CHECK_ENV.items():
        monkeypatch.setenv(name, value)  # read by glibc when the pool's process starts
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_direct_failures, (config, calls))


@pytest.mark.parametrize("config", STRIDE2_1x1 + SHALLOW_TIME + ORDINARY, ids=lambda c: c.describe())
def test_verdict_on_the_real_kernels_matches_a_direct_measurement(config, monkeypatch):
    """Whatever this machine's kernels do (broken on torch 2.13 CPUs with and without AMX), the check run as
    real runs run it agrees: a failed configuration fails direct calls too, a passed one none of 20."""
    verdict = convcheck._CHECKER.check(config, torch.bfloat16, CPU, True)
    failures = _direct_failures_in_a_checking_process(config, 20, monkeypatch)
    assert (failures > 0) == bool(verdict), (verdict, failures)
    if config in ORDINARY:
        assert verdict == ""


def test_collected_configurations_hold_the_old_shallow_time_rule(bad_bf16_kernel):
    """The hand-written rule this check replaced (input depth 2 under a 3-deep kernel: layer2 of a resnet18 on
    8-frame clips), plus the stride-2 1x1 case it missed, now as a test of the per-layer check."""
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=2, widen_factor=0.25)
    example = torch.zeros(1, 3, 8, 16, 16)  # layer3 ends at 1x1: layer4 strides 2 over a 1x1 input
    configs = collect_convs(model, example, batch_size=4)
    assert all(c.input_shape[0] == 4 for c in configs)
    assert sum(len(layers) for layers in configs.values()) == 20  # every conv of resnet18, grouped
    failed = check_model(model, example, 4, torch.bfloat16, CPU, isolated=False)  # the injected kernel
    assert sorted(failed) == [
        "layer2.0.conv2", "layer2.1.conv1", "layer2.1.conv2", "layer3.0.conv1",  # depth 2 < kernel 3
        "layer4.0.conv1", "layer4.0.downsample.0",  # stride 2 on a 1x1 input
    ]
    assert "weight gradient" in failed["layer2.0.conv2"]


def test_verdicts_are_cached_and_measured_in_a_child_process(monkeypatch):
    model = nn.Sequential(nn.Conv3d(4, 4, 3, padding=1))
    example = torch.zeros(1, 4, 4, 4, 4)
    calls = []
    real = convcheck._Checker.check
    monkeypatch.setattr(convcheck._Checker, "check", lambda *a: calls.append(1) or real(*a))
    assert check_model(model, example, 2, torch.bfloat16, CPU) == {}
    assert convcheck._CHECKER.process is not None and convcheck._CHECKER.process.poll() is None  # isolated
    assert check_model(model, example, 2, torch.bfloat16, CPU) == {} and len(calls) == 1  # cached


_CHILD_START = ("import os, sys, time; from multiprocessing.connection import Connection; "
                "requests = Connection(int(sys.argv[1]), writable=False); "
                "replies = Connection(int(sys.argv[2]), readable=False); requests.recv(); ")


def test_a_script_without_a_main_guard_is_not_run_again_by_the_check(tmp_path):
    """The checking child is a fresh interpreter: a user's script that checks (evaluates, predicts) without
    ``if __name__ == "__main__"`` runs once and gets its verdicts."""
    script = tmp_path / "score.py"
    script.write_text(
        "import torch\nfrom torch import nn\nfrom vidfast.runtime import check_model\nprint('started')\n"
        "net = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1))\n"
        "print(check_model(net, torch.zeros(1, 3, 4, 8, 8), 2, torch.bfloat16, torch.device('cpu')))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["started", "{}"]


def test_a_check_that_kills_or_hangs_its_process_fails(monkeypatch):
    """Some kernels never return (a 3-channel 7x7x7 channels-last bf16 backward here): the watched child
    turns a crash or a hang into a failed verdict, and the next check starts a new child."""
    monkeypatch.setattr(convcheck, "MIN_WAIT_S", 1.0)
    config = ORDINARY[0]
    dying = convcheck._Checker(_CHILD_START + "os._exit(3)")
    assert dying.check(config, torch.bfloat16, CPU, True) == "killed the checking process (exit code 3)"
    hanging = convcheck._Checker(_CHILD_START + "replies.send(('reference', 0.01)); time.sleep(600)")
    assert hanging.check(config, torch.bfloat16, CPU, True) == "hung: no result 1 s after the fp32 reference"
    assert hanging.process is None
    assert convcheck._Checker().check(config, torch.bfloat16, CPU, True) == ""


def test_routed_layers_compute_in_fp32_only_under_their_failing_dtype():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(4, 8, 3, padding=1), nn.Conv3d(8, 8, 3, padding=1))
    route_to_fp32(model, {"1": [torch.bfloat16]})
    x = torch.randn(2, 4, 2, 4, 4)
    for routed in (model, copy.deepcopy(model)):  # a copy keeps the routing, bound to itself
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert routed[0](x).dtype == torch.bfloat16
            y = routed(x)
        assert y.dtype == torch.float32
        y.sum().backward()
        weight = routed[1].weight.detach().clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = routed[0](x).float()
        F.conv3d(hidden.detach(), weight, routed[1].bias, padding=1).sum().backward()
        assert torch.allclose(routed[1].weight.grad, weight.grad, rtol=1e-5, atol=1e-5)
    assert model(x).dtype == torch.float32  # no autocast: untouched


def test_choose_the_fastest_but_fp32_within_the_margin():
    assert choose({"fp32": 1.0, "bf16": 0.5}) == "bf16"
    assert choose({"fp32": 1.0, "bf16": 0.99}) == "fp32"  # within noise: never slower than fp32
    assert choose({"fp32": 1.0, "bf16": 1.4}) == "fp32"
    assert choose({"fp32": 1.0, "bf16": 0.8, "fp16": 0.6}) == "fp16"
    assert choose({"fp32": 1.0, "bf16": 0.96}, margin=0.0) == "bf16"


def _plan(model, monkeypatch, seconds, **kwargs):
    made = []
    monkeypatch.setattr(precision, "interleaved_seconds",
                        lambda steps, *a, **k: {n: [seconds[n]] for n in steps})
    example = torch.zeros(1, 3, 4, 8, 8)
    kwargs.setdefault("grads", False)
    plan = plan_precision([(model, example)], 2, CPU, lambda n: made.append(n) or (lambda: 0), **kwargs)
    return plan, made


def test_cpu_training_is_measured_like_inference(monkeypatch):
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1))
    plan, made = _plan(model, monkeypatch, {"fp32": 1.0, "bf16": 0.5}, grads=True)
    assert (plan.name, plan.how, made) == ("bf16", "measured", ["fp32", "bf16"])
    plan, made = _plan(nn.Sequential(nn.Conv3d(3, 7, 3)), monkeypatch, {"fp32": 1.0, "bf16": 1.3}, grads=True)
    assert (plan.name, plan.how) == ("fp32", "measured")


def test_a_shape_the_plan_did_not_foresee_is_checked_when_first_met(bad_bf16_kernel, monkeypatch, caplog):
    """Planned on 2x2 inputs, the stride-2 layer then meets a 1x1 one (a bad configuration): it is checked
    once, logged, and runs in fp32 from then on, with the right weight gradient; other layers stay bf16."""
    checked = []
    monkeypatch.setattr(convcheck._CHECKER, "check", lambda config, *a: checked.append(config) or
                        check_config(config, *a))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.Conv3d(8, 8, 3, 2, 1))
    plan, _ = _plan(model, monkeypatch, {}, amp=True, grads=True)
    assert (plan.name, plan.fp32_layers) == ("bf16", {})  # the planned shapes pass
    planned = len(checked)
    x = torch.randn(2, 3, 4, 1, 1)
    for _ in range(2):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = model[0](x)
            y = model[1](hidden)
        assert (hidden.dtype, y.dtype) == (torch.bfloat16, torch.float32)
        y.sum().backward()
        weight = model[1].weight.detach().clone().requires_grad_()
        F.conv3d(hidden.detach().float(), weight, model[1].bias, 2, 1).sum().backward()
        assert torch.allclose(model[1].weight.grad, weight.grad, rtol=1e-5, atol=1e-5)
    assert [c.input_shape for c in checked[planned:]] == [(2, 3, 4, 1, 1), (2, 8, 4, 1, 1)]  # once each
    assert "runs in fp32 under bf16 autocast: weight gradient" in caplog.text
    assert "[2, 8, 4, 1, 1]" in caplog.text
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # forward only: a new, passing check
        assert model(x).dtype == torch.bfloat16
    assert len(checked) == planned + 4


def test_decision_is_measured_then_cached_forced_or_recorded(monkeypatch):
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1))
    plan, made = _plan(model, monkeypatch, {"fp32": 1.0, "bf16": 0.5})
    assert (plan.name, plan.how, made, plan.dtype) == ("bf16", "measured", ["fp32", "bf16"], torch.bfloat16)
    assert plan.describe() == "precision bf16 (measured: fp32 1 s/step, bf16 0.5 s/step)"
    plan, made = _plan(model, monkeypatch, {"fp32": 0.1, "bf16": 9.0})  # timings now say fp32: cache wins
    assert (plan.name, plan.how, made) == ("bf16", "cached", [])
    plan, made = _plan(nn.Sequential(nn.Conv3d(3, 5, 3)), monkeypatch, {"fp32": 1.0, "bf16": 1.2})
    assert (plan.name, plan.how) == ("fp32", "measured")
    plan, made = _plan(model, monkeypatch, {}, amp=False)
    assert (plan.name, plan.how, made, plan.dtype) == ("fp32", "forced", [], None)
    plan, made = _plan(model, monkeypatch, {}, amp=True)
    assert (plan.name, plan.how, made) == ("bf16", "forced", [])
    plan, made = _plan(nn.Sequential(nn.Conv3d(3, 6, 3)), monkeypatch, {}, recorded="fp32")
    assert (plan.name, plan.how, made) == ("fp32", "recorded", [])
    with pytest.raises(ValueError, match="fp16 autocast is not available on cpu"):
        _plan(model, monkeypatch, {}, amp=True, amp_dtype="fp16")


def test_a_precision_whose_every_convolution_fails_is_not_a_candidate(monkeypatch):
    monkeypatch.setattr(convcheck._Checker, "check", lambda *a: "weight gradient off by 1e+30 relative")
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1))
    plan, made = _plan(model, monkeypatch, {"fp32": 1.0, "bf16": 0.1})
    assert (plan.name, plan.how, made) == ("fp32", "only candidate", [])
    plan, _ = _plan(model, monkeypatch, {}, amp=True)  # forced: bf16, with that layer in fp32
    assert plan.name == "bf16" and list(plan.fp32_layers) == ["0"]
    assert math.isfinite(len(plan.describe_fp32_layers()))


@pytest.mark.parametrize(("avx512_bf16", "amx", "isa_cap", "why"), [
    (False, False, None, "no bf16 instructions"),  # AVX2-only, or AVX-512 without bf16
    (True, False, None, ""),  # avx512_bf16 without AMX: only timing tells
    (False, True, None, ""),
    (True, True, "AVX2", "ONEDNN_MAX_CPU_ISA=AVX2"),
    (True, True, "avx512_core", "ONEDNN_MAX_CPU_ISA=AVX512_CORE"),
    (True, True, "AVX512_CORE_BF16", ""),
])
def test_bf16_is_skipped_where_the_cpu_cannot_accelerate_it(monkeypatch, avx512_bf16, amx, isa_cap, why):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if isa_cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa_cap)
    reason = UNACCELERATED("bf16", CPU)
    if why:
        assert why in reason
    else:
        assert reason == ""
    assert UNACCELERATED("fp32", CPU) == ""


def test_a_candidate_the_hardware_cannot_accelerate_is_neither_checked_nor_timed(monkeypatch, caplog):
    monkeypatch.setattr(precision, "unaccelerated",
                        lambda name, device: "no bf16 here" if name == "bf16" else "")
    monkeypatch.setattr(convcheck._Checker, "check", lambda *a: pytest.fail("checked a skipped candidate"))
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1))
    with caplog.at_level(logging.INFO, logger="vidfast.runtime.precision"):
        plan, made = _plan(model, monkeypatch, {"fp32": 1.0, "bf16": 0.1})
    assert (plan.name, plan.how, made) == ("fp32", "only candidate", [])
    assert plan.skipped == {"bf16": "no bf16 here"}
    assert "bf16 not considered: no bf16 here" in caplog.text
    assert plan.describe() == "precision fp32 (only candidate; bf16 not considered: no bf16 here)"
    monkeypatch.setattr(convcheck._Checker, "check", lambda *a: "")
    plan, _ = _plan(model, monkeypatch, {}, amp=True)  # forced: the user's choice stands
    assert (plan.name, plan.how, plan.skipped) == ("bf16", "forced", {})


def _scripted_steps(monkeypatch, durations: dict[str, list[float]]) -> tuple[dict, dict[str, int]]:
    """Steps that advance a fake clock (the timing's perf_counter) by their scripted durations, call by call
    (warm-up included; the last duration repeats), and count their calls."""
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(precision, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    calls = dict.fromkeys(durations, 0)

    def make(name: str):
        def step() -> None:
            calls[name] += 1
            clock.now += durations[name][min(calls[name], len(durations[name])) - 1]
        return step

    return {name: make(name) for name in durations}, calls


@pytest.mark.parametrize("order", [("fp32", "bf16"), ("bf16", "fp32")])
def test_timing_gives_up_on_a_clearly_slower_candidate(monkeypatch, order):
    """bf16 at 5x fp32 (emulated): one timed call each settles it, whichever comes first in the round (timed
    first, bf16 is compared with fp32's warm-up, an upper bound of fp32's cost); then fp32 is left alone."""
    durations = {"fp32": [1.0], "bf16": [5.0]}
    steps, calls = _scripted_steps(monkeypatch, {name: durations[name] for name in order})
    lines: list[str] = []
    with Progress("timing", 8, mode="plain", plain_every=1, emit=lines.append) as shown:
        seconds = interleaved_seconds(steps, rounds=3, warmup=1, give_up=1.5, progress=shown)
    assert seconds == {"fp32": [1.0], "bf16": [5.0]}
    assert calls == {"fp32": 2, "bf16": 2}  # warm-up included
    assert lines[-1].startswith("timing: 8/8")  # the display completes although the timing stopped early


def test_timing_ends_once_one_candidate_is_clearly_the_fastest(monkeypatch):
    """bf16 at a third of fp32 (AMX): fp32's first timed call is over 1.5x bf16's warm-up, and bf16, left
    alone, is timed once for its figure."""
    steps, calls = _scripted_steps(monkeypatch, {"fp32": [1.0], "bf16": [0.3]})
    seconds = interleaved_seconds(steps, rounds=3, warmup=1, give_up=1.5)
    assert seconds == {"fp32": pytest.approx([1.0]), "bf16": pytest.approx([0.3])}
    assert calls == {"fp32": 2, "bf16": 2}


def test_a_slow_first_call_makes_no_candidate_look_slower(monkeypatch):
    """Warm-ups only bound a step's cost from above: fp32's 4 s set-up call gives bf16 no reason to stop
    fp32, and bf16 within 1.5x of fp32's timed calls is timed every round."""
    steps, _ = _scripted_steps(monkeypatch, {"fp32": [4.0, 1.0], "bf16": [1.2]})
    seconds = interleaved_seconds(steps, rounds=3, warmup=1, give_up=1.5)
    assert seconds == {"fp32": pytest.approx([1.0] * 3), "bf16": pytest.approx([1.2] * 3)}
    steps, _ = _scripted_steps(monkeypatch, {"fp32": [4.0, 1.0], "bf16": [2.0]})
    seconds = interleaved_seconds(steps, rounds=3, warmup=1, give_up=1.5)
    assert seconds == {"fp32": pytest.approx([1.0]), "bf16": pytest.approx([2.0])}


def test_timing_keeps_a_candidate_within_the_factor_or_slowed_once_by_noise(monkeypatch):
    steps, calls = _scripted_steps(monkeypatch, {"fp32": [1.0], "bf16": [1.2, 1.2, 3.0, 1.2]})
    seconds = interleaved_seconds(steps, rounds=3, warmup=1, give_up=1.5)
    assert seconds == {"fp32": [1.0] * 3, "bf16": pytest.approx([1.2, 3.0, 1.2])}
    steps, _ = _scripted_steps(monkeypatch, {"fp32": [1.0], "bf16": [5.0]})
    assert len(interleaved_seconds(steps, rounds=3, warmup=1)["bf16"]) == 3  # no give_up: every round


def test_settled_when_no_spread_of_the_timed_steps_changes_the_choice():
    assert settled({"fp32": [2.16, 2.18], "bf16": [2.01, 2.03]})  # bf16 faster by over the margin throughout
    assert settled({"fp32": [2.0, 2.01], "bf16": [1.99, 2.05]})  # fp32 throughout: within the margin
    assert not settled({"fp32": [2.0, 2.3], "bf16": [2.01, 2.2]})  # either, depending on the steps taken
    assert not settled({"fp32": [2.16], "bf16": [2.01]})  # one step each tells no spread
    assert not settled({})


def test_timing_ends_when_settled_and_runs_every_round_otherwise(monkeypatch):
    """A low precision 10 % faster (below the give-up factor): two rounds settle it; with one step of it
    slowed by load the spread could change the choice, and the third round is timed."""
    steps, calls = _scripted_steps(monkeypatch, {"fp32": [2.0], "bf16": [1.8]})
    lines: list[str] = []
    with Progress("timing", 8, mode="plain", plain_every=1, emit=lines.append) as shown:
        seconds = interleaved_seconds(steps, 3, 1, give_up=1.5, progress=shown, enough=settled)
    assert seconds == {"fp32": pytest.approx([2.0] * 2), "bf16": pytest.approx([1.8] * 2)}
    assert calls == {"fp32": 3, "bf16": 3}
    assert lines[-1].startswith("timing: 8/8")
    steps, _ = _scripted_steps(monkeypatch, {"fp32": [2.0], "bf16": [1.8, 2.5, 1.8]})
    seconds = interleaved_seconds(steps, 3, 1, give_up=1.5, enough=settled)
    assert seconds == {"fp32": pytest.approx([2.0] * 3), "bf16": pytest.approx([2.5, 1.8, 1.8])}


def test_the_check_shows_its_progress_per_distinct_configuration(capsys):
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.Conv3d(4, 4, 3, padding=1),
                          nn.Conv3d(4, 4, 3, padding=1))  # the last two share one configuration
    check_model(model, torch.zeros(1, 3, 4, 6, 6), 1, torch.bfloat16, CPU, isolated=False, progress="plain")
    err = capsys.readouterr().err
    assert "precision: checking 2 convolution configurations in bf16: 2/2" in err

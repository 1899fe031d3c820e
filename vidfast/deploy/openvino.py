"""OpenVINO behind the part of onnxruntime's ``InferenceSession`` that vidfast uses, and the measured choice
between the installed CPU runtimes.

OpenVINO's runtime reads vidfast's ONNX files unchanged (``pip install "vidfast[openvino]"``); it runs int8
QDQ graphs with fast int8 3D convolutions where onnxruntime's CPU provider has none. Which runtime serves a
model on a CPU is not assumed: :func:`fastest_cpu_session` times each installed one on the model itself,
interleaved. fp32 graphs run in fp32 (``INFERENCE_PRECISION_HINT`` f32: OpenVINO would otherwise compute in
bf16 on CPUs with AMX).
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vidfast.deploy.session import make_session, usable_cores
from vidfast.errors import BackendUnavailable, VidfastError

if TYPE_CHECKING:
    import openvino

PROVIDER = "OpenVINO"
#: OpenVINO element type name -> onnxruntime's input type string
_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "u8": "tensor(uint8)"}


def openvino_available() -> bool:
    """Whether the ``openvino`` runtime is importable."""
    try:
        return importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class _Arg:
    """An input or output as onnxruntime describes it: name, shape (str for a dynamic axis), type."""

    name: str
    shape: list
    type: str


@functools.cache
def _core() -> openvino.Core:
    """The process's one ``openvino.Core``, kept for its whole life. Each Core loads a CPU plugin of its own,
    which gives the thread that loaded it a signal stack (big enough for AMX state) and, once destroyed, puts
    back the stack it found there. Cores destroyed in another order than made left the thread on an unmapped
    stack, and the next signal with a handler killed the process (SIGSEGV from the kernel): in vidfast, the
    SIGCHLD of a later worker pool."""
    import openvino as ov

    return ov.Core()


class OpenVinoSession:
    """An ONNX model compiled by OpenVINO for the CPU: ``get_inputs()``, ``get_outputs()``,
    ``get_providers()`` (``["OpenVINO"]``) and ``run(None, {name: array})`` as onnxruntime has them."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        if not openvino_available():
            raise BackendUnavailable('openvino is not installed (pip install "vidfast[openvino]")')
        core = _core()
        try:
            model = core.read_model(str(path))
            self._compiled = core.compile_model(model, "CPU", {
                "INFERENCE_NUM_THREADS": threads or usable_cores(),
                "INFERENCE_PRECISION_HINT": "f32",
                "PERFORMANCE_HINT": "LATENCY",
            })
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise VidfastError(f"OpenVINO cannot load {path}: {' '.join(str(exc).split())[:300]}") from None
        self._request = self._compiled.create_infer_request()
        self._inputs = [_describe(port) for port in self._compiled.inputs]
        self._outputs = [_describe(port) for port in self._compiled.outputs]

    def get_inputs(self) -> list[_Arg]:
        return list(self._inputs)

    def get_outputs(self) -> list[_Arg]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [PROVIDER]

    def run(self, output_names, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs (all, in graph order; ``output_names`` must be None) for ``feeds``."""
        if output_names is not None:
            raise ValueError("OpenVinoSession.run returns every output: pass None")
        results = self._request.infer(feeds)
        return [np.array(results[port]) for port in self._compiled.outputs]


def _describe(port) -> _Arg:
    shape = [d.get_length() if d.is_static else f"dim{i}" for i, d in enumerate(port.get_partial_shape())]
    return _Arg(port.get_any_name(), shape, _TYPES.get(port.get_element_type().get_type_name(), "unknown"))


def timed_runs(sessions: dict[str, object], feed: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Median seconds of one ``run`` per session on ``feed``, after one warm-up each, the sessions taking
    turns (interleaved) so that background load hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():
        session.run(None, {session.get_inputs()[0].name: feed})
    for _ in range(repeats):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.run(None, {session.get_inputs()[0].name: feed})
            times[name].append(time.perf_counter() - started)
    return {name: float(np.median(t)) for name, t in times.items()}


def fastest_cpu_session(path: str | Path, sample: Callable[[int], np.ndarray], batch: int,
                        threads: int | None = None):
    """``(session, seconds by runtime)``: onnxruntime's CPU provider and, where installed and able to load
    the model, OpenVINO, timed (:func:`timed_runs`) on ``sample(n)``, ``n`` the graph's fixed batch size or
    else ``batch``; the faster one is returned."""
    ort_session = make_session(path, "cpu", threads)
    sessions: dict[str, object] = {"CPUExecutionProvider": ort_session}
    if openvino_available():
        try:
            sessions[PROVIDER] = OpenVinoSession(path, threads)
        except VidfastError:
            pass
    if len(sessions) == 1:
        return ort_session, {}
    fixed = ort_session.get_inputs()[0].shape[0]
    seconds = timed_runs(sessions, sample(fixed if isinstance(fixed, int) else batch))
    return sessions[min(seconds, key=seconds.__getitem__)], seconds

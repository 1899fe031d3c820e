"""Static int8 quantisation of an exported network with onnxruntime, calibrated on clips of a manifest, the
format and the ops kept in float chosen by measurement.

int8 3D convolutions are not fast in every runtime (onnxruntime's CPU provider has none that beats its fp32;
OpenVINO has), so no layout is assumed: each candidate (:data:`CANDIDATES`: QDQ or QOperator, per-channel
int8 weights and uint8 activations, every Conv/MatMul/Gemm quantised or the stem convolution, whose 3 input
channels make int8 least useful, kept in float) is quantised with the same calibration (MinMax over the
calibration clips, after onnxruntime's quantisation pre-processing: shape inference, Conv+BatchNorm folding),
then timed on every installed CPU runtime (interleaved) and checked against fp32 on held-out clips. The
fastest candidate whose top-1 agrees with fp32 on at least :data:`MIN_AGREEMENT` of them wins; the
measurements go into the model's metadata (``vidfast.int8``).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vidfast.deploy.openvino import PROVIDER, OpenVinoSession, openvino_available, timed_runs
from vidfast.deploy.session import make_session
from vidfast.errors import DataError, VidfastError

log = logging.getLogger(__name__)

#: fraction of held-out clips whose int8 top-1 must equal fp32's for a candidate to be eligible
MIN_AGREEMENT = 0.95
#: calibration clips used by default, and the share of them held out to check the candidates
DEFAULT_CALIBRATION_CLIPS = 64
HELD_OUT = 0.25


@dataclass(frozen=True)
class Candidate:
    """A quantisation layout: ``fmt`` "QDQ" or "QOperator"; ``float_stem`` keeps the first Conv in float."""

    fmt: str
    float_stem: bool = False

    @property
    def name(self) -> str:
        return f"{self.fmt}{' float-stem' if self.float_stem else ''}"


CANDIDATES = (Candidate("QDQ"), Candidate("QDQ", float_stem=True), Candidate("QOperator"))


@dataclass
class Trial:
    """One candidate's measurements: seconds per batch by runtime, top-1 agreement and largest logit error
    (relative to the largest fp32 logit) against fp32 on the held-out clips; ``error`` when it failed."""

    candidate: str
    seconds: dict[str, float] = field(default_factory=dict)
    agreement: float = float("nan")
    max_rel: float = float("nan")
    error: str = ""

    @property
    def best(self) -> tuple[str, float] | None:
        """(runtime, seconds) of its fastest runtime, None when nothing ran."""
        return min(self.seconds.items(), key=lambda kv: kv[1]) if self.seconds else None


@dataclass
class QuantReport:
    """What :func:`quantize_int8` measured and chose; ``fp32_seconds`` times the fp32 graph likewise."""

    chosen: str
    runtime: str
    trials: list[Trial]
    fp32_seconds: dict[str, float]
    calibration_clips: int
    held_out_clips: int
    batch: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def summary(self) -> list[str]:
        """Human-readable lines for the CLI."""
        lines = [f"int8: calibrated on {self.calibration_clips} clips, checked on {self.held_out_clips} "
                 f"held-out clips, timed at batch {self.batch} (s/batch, interleaved)"]
        fp32 = ", ".join(f"{k} {v:.3f}" for k, v in self.fp32_seconds.items())
        lines.append(f"  fp32: {fp32}")
        for t in self.trials:
            if t.error:
                lines.append(f"  {t.candidate}: failed ({t.error})")
                continue
            times = ", ".join(f"{k} {v:.3f}" for k, v in t.seconds.items())
            lines.append(f"  {t.candidate}: {times}; top-1 agreement {t.agreement:.1%}, "
                         f"max-rel {t.max_rel:.3g}")
        lines.append(f"chosen: {self.chosen}, fastest on {self.runtime}")
        return lines


def calibration_clips(manifest: str | Path, clip: tuple[int, int, int], frame_step: int,
                      mean: Sequence[float], std: Sequence[float], count: int = DEFAULT_CALIBRATION_CLIPS,
                      split: str = "train", seed: int = 0) -> np.ndarray:
    """``count`` float clips ``[count, 3, T, H, W]`` of ``split`` of a manifest as evaluation feeds them
    (evenly spaced clips, central square crop, normalised with ``mean``/``std``), from videos in a seeded
    random order, as few clips per video as give ``count``. Undecodable videos are skipped (logged)."""
    from vidfast.data import read_manifest
    from vidfast.data.reader import load_clips

    if count < 4:
        raise ValueError(f"--calibration-clips must be at least 4, got {count}")
    rows = read_manifest(manifest).select(split=split)
    if not rows:
        raise DataError(f"{manifest}: no usable video in split {split!r} to calibrate int8 with")
    order = np.random.default_rng(seed).permutation(len(rows))
    per_video = math.ceil(count / len(rows))
    t, h, _ = clip
    batches, have, skipped = [], 0, 0
    for i in order.tolist():
        row = rows[i]
        try:
            x = load_clips(row.path, clip_len=t, frame_step=frame_step, size=h, clips=per_video, mean=mean,
                           std=std, start=row.start, end=row.end)
        except DataError as exc:
            skipped += 1
            log.warning("calibration: skipping %s: %s", row.path, exc)
            continue
        batches.append(x.numpy()[: count - have])
        have += len(batches[-1])
        if have >= count:
            break
    if have < 4:
        raise DataError(f"{manifest}: only {have} calibration clips could be decoded "
                        f"({skipped} videos skipped)")
    return np.concatenate(batches)


def _sessions(model: bytes | Path) -> dict[str, object]:
    """A CPU session of every installed runtime that loads ``model``."""
    sessions: dict[str, object] = {"CPUExecutionProvider": make_session(model, "cpu")}
    if openvino_available():
        try:
            if isinstance(model, bytes):
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "model.onnx"
                    path.write_bytes(model)
                    sessions[PROVIDER] = OpenVinoSession(path)
            else:
                sessions[PROVIDER] = OpenVinoSession(model)
        except VidfastError:
            pass
    return sessions


def _logits(session, clips: np.ndarray, batch: int) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: clips[i:i + batch]})[0]
                           for i in range(0, len(clips), batch)])


class _Reader:
    """onnxruntime's calibration data reader over float clips ``[N, 3, T, H, W]``, one clip per read."""

    def __init__(self, name: str, clips: np.ndarray) -> None:
        self.items = iter([{name: clips[i:i + 1]} for i in range(len(clips))])

    def get_next(self):
        return next(self.items, None)

    def rewind(self) -> None:  # pragma: no cover - onnxruntime calls it only for some methods
        pass


def _quantize(prepared: Path, out: Path, candidate: Candidate, clips: np.ndarray, input_name: str) -> None:
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    exclude = []
    if candidate.float_stem:
        proto = onnx.load(str(prepared), load_external_data=False)
        exclude = [next(n.name for n in proto.graph.node if n.op_type == "Conv")]
    quantize_static(
        str(prepared), str(out), _Reader(input_name, clips),
        quant_format=QuantFormat.QDQ if candidate.fmt == "QDQ" else QuantFormat.QOperator,
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude, extra_options={"WeightSymmetric": True},
    )


def quantize_int8(model, clips: np.ndarray, batch: int = 8,
                  candidates: Sequence[Candidate] = CANDIDATES) -> tuple[object, QuantReport]:
    """Quantise ``model`` (an ``onnx.ModelProto`` taking float clips ``[N, 3, T, H, W]``) with float clips
    ``clips`` of the evaluation path: the first ``1 - HELD_OUT`` calibrate, the rest check. Returns the chosen
    int8 ``ModelProto`` and the :class:`QuantReport`. VidfastError when no candidate is eligible."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(clips) < 4:
        raise VidfastError(f"int8 calibration needs at least 4 clips, got {len(clips)}")
    held = max(2, int(round(len(clips) * HELD_OUT)))
    calibration, check = clips[:-held], clips[-held:]
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="vidfast-int8-") as tmp:
        fp32_path, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        onnx.save_model(model, str(fp32_path))
        quant_pre_process(str(fp32_path), str(prepared))
        fp32_sessions = _sessions(fp32_path)
        reference = _logits(fp32_sessions["CPUExecutionProvider"], check, batch)
        feed = check[:batch] if len(check) >= batch else np.resize(check, (batch, *check.shape[1:]))
        fp32_seconds = timed_runs(fp32_sessions, feed)
        trials, files = [], {}
        for candidate in candidates:
            trial = Trial(candidate.name)
            trials.append(trial)
            out = Path(tmp) / f"{candidate.name.replace(' ', '_')}.onnx"
            try:
                _quantize(prepared, out, candidate, calibration, input_name)
                sessions = _sessions(out)
                got = _logits(sessions["CPUExecutionProvider"], check, batch)
                trial.seconds = timed_runs(sessions, feed)
            except Exception as exc:  # quantiser and runtimes raise many exception types
                trial.error = " ".join(str(exc).split())[:200] or type(exc).__name__
                continue
            trial.agreement = float((got.argmax(1) == reference.argmax(1)).mean())
            trial.max_rel = float(np.abs(got - reference).max() / max(np.abs(reference).max(), 1e-12))
            files[candidate.name] = out
        eligible = [t for t in trials if not t.error and t.agreement >= MIN_AGREEMENT]
        if not eligible:
            detail = "; ".join(f"{t.candidate}: {t.error or f'agreement {t.agreement:.1%}'}" for t in trials)
            raise VidfastError(f"no int8 layout keeps top-1 within {MIN_AGREEMENT:.0%} of fp32 ({detail})")
        best = min(eligible, key=lambda t: t.best[1])
        chosen = onnx.load(str(files[best.candidate]))
    report = QuantReport(best.candidate, best.best[0], trials, fp32_seconds, len(calibration), len(check),
                         batch)
    return chosen, report

"""Which inference path is fastest by default, from what is installed and how much work there is.

The rule follows ``bench/test_inference.py`` (3D ResNet-18, 16x112x112, all paths timed side by side on a
2-core AVX-512 CPU without AMX, in runs under different background load): onnxruntime CPU runs a batch of 1
at 1.9-3.9x PyTorch eager fp32 but a batch of 8 only at 1.0-1.25x; ``torch.compile`` with inductor freezing on
channels_last_3d fp32 reaches 2.3-3.6x at batch 1 and 1.6-2.2x at batch 8, but costs tens of seconds of
compilation per batch size, which pays back only over many clips. On a GPU, TensorRT (through onnxruntime) is
preferred when installed, else PyTorch on CUDA with channels_last_3d. Which autocast dtype the eager PyTorch
paths run in is not a rule here (bf16 was 0.64-1.05x fp32 eager on that CPU, 1.36x with AMX for training):
it is measured per model and machine by :func:`vidfast.runtime.plan_precision`, as in eval and predict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidfast.deploy.session import available_providers

#: a call with at most this many clips counts as latency-bound: onnxruntime wins on the CPU
SMALL_BATCH = 2
#: clips to score before ``torch.compile`` (tens of seconds on a CPU) pays for itself over onnxruntime/eager
COMPILE_PAYBACK_CLIPS = 2000


@dataclass(frozen=True)
class Backend:
    """An inference path: ``engine`` "onnxruntime" (with ``provider``) or "torch" (with ``dtype`` for
    autocast, None where :func:`vidfast.runtime.plan_precision` measures it, ``channels_last`` for
    channels_last_3d and ``compile`` for ``torch.compile`` with freezing)."""

    engine: str
    device: str
    provider: str | None = None
    dtype: torch.dtype | None = torch.float32
    channels_last: bool = False
    compile: bool = False
    reason: str = ""


def _ort_has(provider: str) -> bool:
    try:
        return provider in available_providers()
    except ImportError:
        return False


def best_backend(batch_size: int = 10, total_clips: int | None = None, device: str = "auto") -> Backend:
    """The fastest default path for scoring ``total_clips`` clips (None: a few videos) in calls of
    ``batch_size`` clips on ``device`` ("auto", "cpu" or "cuda"); the module docstring gives the evidence."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    cuda = torch.cuda.is_available() and device != "cpu"
    if device == "cuda" and not cuda:
        raise ValueError("device 'cuda' asked for but torch sees no CUDA GPU")
    if cuda:
        if _ort_has("TensorrtExecutionProvider"):
            return Backend("onnxruntime", "cuda", provider="TensorrtExecutionProvider", dtype=torch.float16,
                           reason="TensorRT engines (fp16) are the fastest GPU path when installed")
        return Backend("torch", "cuda", dtype=None, channels_last=True,
                       reason="cuDNN with channels_last_3d, in the precision measured fastest among the safe")
    long_run = total_clips is not None and total_clips >= COMPILE_PAYBACK_CLIPS
    if long_run and batch_size > SMALL_BATCH:
        return Backend("torch", "cpu", channels_last=True, compile=True,
                       reason=f"{total_clips} clips in batches of {batch_size}: compiled fp32 channels_last "
                              "(freezing) is the fastest CPU path and its compile time pays back")
    if _ort_has("CPUExecutionProvider") and batch_size <= SMALL_BATCH:
        return Backend("onnxruntime", "cpu", provider="CPUExecutionProvider",
                       reason=f"batches of {batch_size}: onnxruntime is 1.9-3.9x torch eager at batch 1")
    return Backend("torch", "cpu", dtype=None,
                   reason=f"batches of {batch_size}, too few clips for compilation to pay back: eager, in "
                          "the precision measured fastest among the safe")

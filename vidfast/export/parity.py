"""Parity of an exported graph with its PyTorch model: onnxruntime (CPU) vs PyTorch on the same inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vidfast.deploy.session import make_session
from vidfast.errors import VidfastError

#: largest max-abs difference allowed, relative to the largest |logit| of the PyTorch model
FP32_TOLERANCE = 1e-3
FP16_TOLERANCE = 5e-2


@dataclass(frozen=True)
class ParityReport:
    """How far onnxruntime's outputs are from PyTorch's on ``batches`` random inputs.

    ``max_abs``: largest absolute difference over all outputs; ``max_rel``: the same divided by each output's
    largest ``|value|`` (the logit scale); ``top1_agreement``: fraction of samples whose arg-max of the first
    output agrees. ``skipped`` says why no comparison ran (e.g. fp16 kernels missing on the CPU provider).
    """

    batches: tuple[int, ...]
    max_abs: float
    max_rel: float
    top1_agreement: float
    tolerance: float
    skipped: str | None = None
    #: frame sizes ``TxHxW`` fed to a preprocessing graph (empty for clip graphs)
    frame_sizes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """Whether the comparison ran and stayed within ``tolerance`` (a skipped check counts as passed)."""
        return self.skipped is not None or self.max_rel <= self.tolerance

    def __str__(self) -> str:
        if self.skipped is not None:
            return f"parity check skipped: {self.skipped}"
        verdict = "ok" if self.passed else f"FAILED (tolerance {self.tolerance:g})"
        sizes = f" (frames {', '.join(self.frame_sizes)})" if self.frame_sizes else ""
        return (
            f"parity vs PyTorch at batch {'/'.join(map(str, self.batches))}{sizes}: "
            f"max-abs {self.max_abs:.3g}, "
            f"max-rel {self.max_rel:.3g}, top-1 agreement {self.top1_agreement:.1%} — {verdict}"
        )


def random_inputs(shape: Sequence[int], frames: bool, seed: int) -> torch.Tensor:
    """Seeded test input: uint8 frames uniform in 0..255, or float clips ~ N(0, 1) (normalised video)."""
    gen = torch.Generator().manual_seed(seed)
    if frames:
        return torch.randint(0, 256, tuple(shape), generator=gen, dtype=torch.uint8)
    return torch.randn(tuple(shape), generator=gen)


def check_parity(
    graph: bytes,
    reference: nn.Module,
    shapes: Sequence[Sequence[int]],
    frames: bool,
    feed_dtype: torch.dtype,
    tolerance: float,
    seed: int = 0,
    fp16: bool = False,
) -> ParityReport:
    """Compare the serialized ONNX ``graph`` on onnxruntime's CPU provider with ``reference`` (fp32 PyTorch).

    One random input of each of ``shapes`` (``[N, ...]``); the graph is fed them as ``feed_dtype``
    (float32/float16 clips, or uint8 frames when ``frames``), the reference as float32 / uint8. An ``fp16``
    graph the CPU provider cannot load gives a skipped report instead of an error.
    """
    try:
        session = make_session(graph, providers="cpu")
    except VidfastError as exc:
        if fp16:
            return ParityReport(tuple(s[0] for s in shapes), float("nan"), float("nan"), float("nan"),
                                tolerance, skipped=f"the CPU provider cannot run this fp16 graph ({exc})")
        raise
    input_name = session.get_inputs()[0].name
    max_abs = max_rel = 0.0
    agree = total = 0
    for i, shape in enumerate(shapes):
        b = shape[0]
        x = random_inputs(shape, frames, seed + i)
        with torch.no_grad():
            ref = reference(x)
        refs = [t.float().numpy() for t in (ref if isinstance(ref, tuple) else (ref,))]
        feed = x.numpy() if frames else x.to(feed_dtype).numpy()
        got = [np.asarray(o, dtype=np.float32) for o in session.run(None, {input_name: feed})]
        for r, g in zip(refs, got, strict=True):
            if r.shape != g.shape:
                raise VidfastError(
                    f"exported graph output shape {list(g.shape)} differs from PyTorch's {list(r.shape)}"
                )
            if r.size == 0:
                continue
            diff = float(np.abs(r - g).max())
            max_abs = max(max_abs, diff)
            max_rel = max(max_rel, diff / max(float(np.abs(r).max()), np.finfo(np.float32).tiny))
        if refs[0].size:
            first_ref, first_got = refs[0].reshape(b, -1), got[0].reshape(b, -1)
            agree += int((first_ref.argmax(1) == first_got.argmax(1)).sum())
            total += b
    sizes = tuple("x".join(map(str, s[1:4])) for s in shapes) if frames else ()
    return ParityReport(tuple(s[0] for s in shapes), max_abs, max_rel, agree / total if total else 1.0,
                        tolerance, frame_sizes=sizes)

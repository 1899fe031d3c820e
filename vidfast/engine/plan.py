"""The plan of a training run: what the run actually uses, decided once from its config.

A config says what the user asked for; the plan adds what the run made of it: the model of a fine-tuning
source, the input convention, the precision measured on this machine, the clip geometry and options the task
cuts with (the puzzle's geometry derived in one place), the batch. It is written whole to ``RUN/plan.yaml``
and into every checkpoint (``"plan"``). ``--resume`` and ``runtime.plan`` reuse a recorded plan: its precision
is taken instead of measured again, and a config that would plan anything else is refused, naming what
differs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vidfast.engine.config import upgraded_sampler
from vidfast.errors import VidfastError


class PlanMismatch(VidfastError):
    """A recorded plan that this run's config would not make."""


@dataclass(frozen=True)
class RunPlan:
    """What one training run uses.

    ``arch``/``model_kwargs`` build the network (``num_classes`` outputs; a puzzle backbone has 0);
    ``convention`` is :meth:`vidfast.conventions.Convention.to_data`; ``precision`` fp32, bf16 or fp16;
    one sample of the loader is ``sample_shape`` (``[3, T, S, S]``, a puzzle ``[P, 3, t, s, s]``) cut as
    ``clip_len`` frames ``frame_step`` apart, ``size`` square, with the task's clip ``options`` (a puzzle's:
    the sampler's choices, :class:`vidfast.puzzle.PuzzleOptions`); ``loader``: batch size and what else
    changes the batches (not the worker count).
    """

    task: str
    arch: str
    model_kwargs: dict[str, Any]
    num_classes: int
    class_names: list[str]
    convention: dict[str, Any]
    precision: str
    clip_len: int
    size: int
    frame_step: int
    sample_shape: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    loader: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, source: str) -> RunPlan:
        """The plan ``to_dict`` wrote; PlanMismatch naming ``source`` when it is not one."""
        names = [f.name for f in dataclasses.fields(cls)]
        if not isinstance(values, dict) or set(values) != set(names):
            found = sorted(values) if isinstance(values, dict) else type(values).__name__
            raise PlanMismatch(f"{source} holds no run plan of this vidfast (entries: {found})")
        if values["task"] == "puzzle":
            values = {**values, "options": upgraded_sampler(values["options"])}
        return cls(**values)

    def save(self, path: str | Path) -> None:
        """Write the plan as YAML (``RUN/plan.yaml``)."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    @classmethod
    def read(cls, path: str | Path) -> RunPlan:
        """A plan from ``RUN/plan.yaml`` or from a checkpoint's ``"plan"`` entry."""
        path = Path(path)
        if not path.is_file():
            raise PlanMismatch(f"runtime.plan: no file {path}")
        if path.suffix.lower() in (".yaml", ".yml"):
            try:
                values = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise PlanMismatch(f"cannot parse plan {path}: {' '.join(str(exc).split())}") from None
        else:
            from vidfast.models import read_checkpoint

            values = read_checkpoint(path).get("plan")
        return cls.from_dict(values, str(path))

    def differences(self, recorded: RunPlan) -> list[tuple[str, Any, Any]]:
        """``(entry, recorded value, this plan's value)`` for every entry but the precision that differs."""
        return [
            (f.name, getattr(recorded, f.name), getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "precision" and _plain(getattr(recorded, f.name)) != _plain(getattr(self, f.name))
        ]


def _plain(value: Any) -> Any:
    """Tuples as lists (a YAML round trip makes lists of them)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

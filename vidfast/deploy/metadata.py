"""The ``vidfast.*`` metadata properties of an exported ONNX model, so that it deploys without side files.

Keys (all strings, as ONNX ``metadata_props`` require): ``vidfast.arch``, ``vidfast.task`` ("classify",
"features" or "puzzle"), ``vidfast.class_names`` (JSON list), the input convention of
:mod:`vidfast.conventions`: ``vidfast.convention`` (its name), ``vidfast.value_scale`` ("1.0" or "255.0";
absent in older exports: 1) and ``vidfast.mean`` / ``vidfast.std`` (``"m0,m1,m2"``, in value units),
``vidfast.clip`` (``"T,H,W"``), ``vidfast.frame_step``, ``vidfast.input`` ("clip":
float ``[N, 3, T, H, W]``; "rgb_uint8": uint8 ``[N, T, H, W, 3]`` with in-graph preprocessing; "frames" in
exports made before it was renamed, read as "rgb_uint8"),
``vidfast.crop`` (preprocessing graphs: "center": frames of any ``H, W``, the graph takes the central square
of the short side and resizes it bilinearly, half-pixel centres, no antialiasing, to the clip's ``H, W``, as
the evaluation crop does (:mod:`vidfast.deploy.preprocess`); "none", or absent in older exports: the frames
must be the clip's size already), ``vidfast.precision`` ("fp32", "fp16" or "int8": statically quantised),
``vidfast.version`` and ``vidfast.sampling`` (a sentence for clients: which frames make a clip).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vidfast.conventions import Convention
from vidfast.errors import VidfastError

PREFIX = "vidfast."
TASKS = ("classify", "features", "puzzle")
INPUT_FORMATS = ("clip", "rgb_uint8")
#: ``vidfast.input`` values of older exports -> their name now
RENAMED_INPUT_FORMATS = {"frames": "rgb_uint8"}
CROPS = ("none", "center")
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ModelMetadata:
    """What a deployed model needs to know about its input and output (keys: see the module docstring)."""

    arch: str
    clip: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    task: str = "classify"
    class_names: list[str] = field(default_factory=list)
    frame_step: int = 1
    input_format: str = "clip"
    precision: str = "fp32"
    version: str = ""
    value_scale: float = 1.0
    convention: str = "custom"
    crop: str = "none"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("task", self.task, TASKS),
            ("input_format", self.input_format, INPUT_FORMATS),
            ("precision", self.precision, PRECISIONS),
            ("crop", self.crop, CROPS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        Convention(self.convention, self.value_scale, self.mean, self.std)  # ValueError for bad values

    @property
    def input_convention(self) -> Convention:
        """The recorded convention (its ``unit_mean`` / ``unit_std`` are what the pipelines apply)."""
        return Convention(self.convention, self.value_scale, self.mean, self.std)

    @property
    def preprocess(self) -> bool:
        """Whether the graph takes uint8 frames and normalises them itself."""
        return self.input_format == "rgb_uint8"

    @property
    def any_frame_size(self) -> bool:
        """Whether the graph takes frames of any size and crops and resizes them itself."""
        return self.preprocess and self.crop == "center"

    def sampling(self) -> str:
        """How a client picks the frames of one clip (stored as ``vidfast.sampling``)."""
        t, h, w = self.clip
        size = ("any H, W (the graph takes the central square of the short side and resizes it to "
                f"{h}x{w})" if self.any_frame_size else f"{h}x{w}")
        fmt = (f"uint8 RGB [N, {t}, H, W, 3], {size}" if self.preprocess
               else f"float [N, 3, {t}, {h}, {w}] normalised with mean/std")
        return (f"a clip is {t} frames taken every {self.frame_step}-th frame of the video (frame i, "
                f"i+{self.frame_step}, ...; repeated from its start when the video ends first); feed {fmt}; "
                "a video's score is the mean softmax of evenly spaced clips")

    def to_props(self) -> dict[str, str]:
        """The metadata as ``{"vidfast.<key>": str}``."""
        values = {
            "arch": self.arch,
            "task": self.task,
            "class_names": json.dumps(list(self.class_names)),
            "convention": self.convention,
            "value_scale": repr(float(self.value_scale)),
            "mean": _join(self.mean),
            "std": _join(self.std),
            "clip": _join(self.clip),
            "frame_step": str(self.frame_step),
            "input": self.input_format,
            "precision": self.precision,
            "version": self.version,
            "crop": self.crop,
            "sampling": self.sampling(),
        }
        return {PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMetadata:
        """Parse ``vidfast.*`` properties; VidfastError naming ``source`` when they are missing or bad."""
        missing = [k for k in ("arch", "clip", "mean", "std") if PREFIX + k not in props]
        if missing:
            raise VidfastError(
                f"{source} is not a vidfast export: metadata lacks {', '.join(PREFIX + k for k in missing)}"
            )
        try:
            clip = tuple(int(v) for v in props[PREFIX + "clip"].split(","))
            mean = tuple(float(v) for v in props[PREFIX + "mean"].split(","))
            std = tuple(float(v) for v in props[PREFIX + "std"].split(","))
            names = json.loads(props.get(PREFIX + "class_names", "[]"))
            if len(clip) != 3 or len(mean) != 3 or len(std) != 3 or not isinstance(names, list):
                raise ValueError("clip, mean and std need 3 values and class_names a JSON list")
            return cls(
                arch=props[PREFIX + "arch"],
                clip=clip,  # type: ignore[arg-type]
                mean=mean,  # type: ignore[arg-type]
                std=std,  # type: ignore[arg-type]
                task=props.get(PREFIX + "task", "classify"),
                class_names=[str(n) for n in names],
                frame_step=int(props.get(PREFIX + "frame_step", "1")),
                input_format=_renamed(props.get(PREFIX + "input", "clip")),
                precision=props.get(PREFIX + "precision", "fp32"),
                version=props.get(PREFIX + "version", ""),
                value_scale=float(props.get(PREFIX + "value_scale", "1.0")),
                convention=props.get(PREFIX + "convention", "custom"),
                crop=props.get(PREFIX + "crop", "none"),
            )
        except ValueError as exc:
            raise VidfastError(f"{source} has malformed vidfast metadata: {exc}") from None


def _renamed(input_format: str) -> str:
    return RENAMED_INPUT_FORMATS.get(input_format, input_format)


def _join(values: tuple) -> str:
    return ",".join(repr(v) if isinstance(v, float) else str(v) for v in values)


def read_metadata(path: str | Path) -> ModelMetadata:
    """The :class:`ModelMetadata` of an exported ``.onnx`` file (weights are not loaded)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise VidfastError(f"ONNX model not found: {p}")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / ValueError / OSError for a file that is not a model
        raise VidfastError(f"cannot read ONNX model {p}: {type(exc).__name__}: {exc}") from None
    return ModelMetadata.from_props({prop.key: prop.value for prop in proto.metadata_props}, source=str(p))


def write_metadata(proto, meta: ModelMetadata) -> None:
    """Replace the ``metadata_props`` of an ``onnx.ModelProto`` with ``meta``'s, in place."""
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        proto.metadata_props.add(key=key, value=value)

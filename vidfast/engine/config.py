"""Typed run configuration: defaults <- YAML/TOML file <- command-line overrides; saved as
``RUN/config.yaml``.

The config is a tree of frozen dataclasses (``TrainConfig`` with sections ``model``, ``data``, ``optim``,
``puzzle``, ``runtime``, ``finetune``): what the user asked for, read and never written back. What a run
decides from it (the model a fine-tuning source holds, the measured precision, ...) is its
:class:`~vidfast.engine.plan.RunPlan`. Files and overrides are nested dicts of the same shape; values are
checked and coerced against the field types, and an unknown key is an error naming it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import tomllib
import yaml

from vidfast.errors import VidfastError

Task = Literal["classify", "puzzle"]
PUZZLE_CUBE_SIZE = 80  # default data.size of the puzzle task: Kim et al.'s 80x80 cubes


class ConfigError(VidfastError):
    """A config file or value that cannot be used."""


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build. ``kwargs`` go to ``create_model`` as they are (e.g. ``{"dropout": 0.5}``)."""

    arch: str = "resnet18"
    widen_factor: float | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_model`` besides ``num_classes`` (recorded in checkpoints)."""
        extra = dict(self.kwargs)
        if self.widen_factor is not None:
            extra["widen_factor"] = self.widen_factor
        return extra


@dataclass(frozen=True)
class DataConfig:
    """Clip geometry and loading. ``loader`` holds :class:`vidfast.data.LoaderConfig` fields and clip options
    (:func:`vidfast.data.clip_policy`: sampling, clips, stride, spatial, scales, hflip, ...). ``convention``
    (a preset of :mod:`vidfast.conventions`), ``mean``, ``std`` and ``value_scale`` override the input
    convention (default: vidfast's, or a fine-tuned checkpoint's own)."""

    manifest: str = ""
    clip_len: int = 16
    size: int = 112
    frame_step: int = 1
    batch_size: int = 8
    workers: int = 2
    backend: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    loader: dict[str, Any] = field(default_factory=dict)
    convention: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    value_scale: float | None = None


@dataclass
class OptimConfig:
    """Optimizer and schedule. Defaults are the CVPR 2018 setup (SGD, lr 0.1, momentum 0.9, weight decay 1e-3,
    rate divided by 10 when the validation loss plateaus). Not frozen (the engine never writes it either):
    ``vidfast.study`` sets ``warmup_epochs`` on a config it made."""

    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "plateau"
    step_size: int = 30
    milestones: list[int] = field(default_factory=lambda: [50, 100, 150])
    gamma: float = 0.1
    plateau_patience: int = 10
    min_lr: float = 0.0
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.01
    clip_grad_norm: float = 0.0
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class PuzzleTaskConfig:
    """Cubic-puzzle pretext task: loss = ``permutation_weight`` * perm CE + ``rotation_weight`` * rotation CE
    (``permutation_weight`` 0: rotation prediction alone, 3DRotNet-style, on the same cubes). ``sampler``
    overrides ``vidfast.puzzle.PuzzleConfig`` fields; ``hidden`` is the PuzzleNet head width (None = its
    default)."""

    rotation_weight: float = 1.0
    permutation_weight: float = 1.0
    hidden: int | None = None
    sampler: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeConfig:
    """Device, speed switches, reproducibility, and where the run writes."""

    device: str = "auto"
    #: autocast: True/False force it on/off; None: ``precision`` when recorded, else measured (fastest of the
    #: precisions proven correct on this machine: ``vidfast.runtime.precision``)
    amp: bool | None = None
    #: the low precision autocast may use: auto (bf16 on CPU, bf16 or fp16 on CUDA), bf16 or fp16
    amp_dtype: str = "auto"
    #: the precision to reuse (fp32, bf16, fp16) instead of measuring one (``RUN/plan.yaml`` records what a
    #: run used)
    precision: str | None = None
    channels_last: bool = True
    compile: bool = False
    cudnn_benchmark: bool = True
    deterministic: bool = False
    seed: int = 0
    run_dir: str = "runs/run"
    resume: bool = False
    #: a plan recorded by an earlier run (``RUN/plan.yaml`` or a checkpoint): this run reuses its decisions
    #: (precision) and stops when its config would plan anything else (same model, clips, batch)
    plan: str | None = None
    #: resume from the newest valid checkpoint of ``run_dir`` when it has one, else start fresh (one command
    #: line for the first start and every restart: torchrun --max-restarts, SLURM --requeue)
    auto_resume: bool = False
    #: checkpoints besides those at epoch ends: "500" every 500 optimizer steps, "10m" (or "90s", "2h") every
    #: so much wall time, "0" at epoch ends only
    checkpoint_every: str = "500"
    #: step-numbered checkpoints kept in ``run_dir/checkpoints`` (the newest K; ``last.pt`` is the newest)
    keep_checkpoints: int = 2
    #: checkpoint writes that may fail in a row (full disk, I/O error) before training stops
    checkpoint_failures: int = 3
    #: signal that asks for a checkpoint at the next step and an exit (as SIGTERM and Ctrl-C do), e.g. for
    #: SLURM's ``--signal=USR1@120``
    preempt_signal: str = "SIGUSR1"
    log_every: int = 10
    progress: str = "auto"
    tensorboard: bool = True
    plots: bool = True


@dataclass(frozen=True)
class FinetuneConfig:
    """Start from ``checkpoint`` (a vidfast classifier/puzzle checkpoint, a 3D-ResNets-PyTorch 2018/2020 file
    or torchvision video weights) or from ``inflate_from`` (a torchvision-format 2D ResNet state dict,
    inflated); train modules from ``begin_module`` on (None = all). ``force`` accepts a data convention
    that contradicts the checkpoint's."""

    checkpoint: str | None = None
    inflate_from: str | None = None
    begin_module: str | None = None
    force: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    task: Task = "classify"
    epochs: int = 100
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    puzzle: PuzzleTaskConfig = field(default_factory=PuzzleTaskConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML-, JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) config file into a nested dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml or .toml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot parse config file {path}: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against / converted to the annotated type ``tp``; ConfigError naming ``key``
    otherwise."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(
                f"config key {key}: {value!r} is not one of {', '.join(map(str, get_args(tp)))}"
            )
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key}: expected a list, got {value!r}")
        (item_tp,) = get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"config key {key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"config key {key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"config key {key}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"config key {key}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"config key {key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, Path):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"config key {key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {tp!r} for {key}")


def _merged(current: Any, updates: dict[str, Any], prefix: str) -> Any:
    """A copy of the dataclass instance ``current`` with a nested dict of ``updates`` applied."""
    hints = typing.get_type_hints(type(current))
    names = {f.name for f in dataclasses.fields(current)}
    changes: dict[str, Any] = {}
    for name, value in updates.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise ConfigError(f"unknown config key {key!r} (known: {', '.join(sorted(names))})")
        section = getattr(current, name)
        if dataclasses.is_dataclass(section):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key}: expected a section (mapping), got {value!r}")
            changes[name] = _merged(section, value, f"{key}.")
        else:
            changes[name] = _coerce(value, hints[name], key)
    return dataclasses.replace(current, **changes)


PREEMPT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGHUP")
_INTERVAL_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def checkpoint_interval(text: str) -> tuple[int, float]:
    """``runtime.checkpoint_every`` as (optimizer steps, seconds); 0 = not by that measure.

    ``"500"`` -> (500, 0.0); ``"10m"`` -> (0, 600.0); ``"0"`` -> (0, 0.0) (epoch ends only).
    """
    text = text.strip().lower()
    unit = _INTERVAL_UNITS.get(text[-1:]) if text else None
    try:
        value = float(text[:-1]) if unit else int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(
            f"runtime.checkpoint_every: {text!r} is not a number of steps (500) or a time (90s, 10m, 2h)"
        )
    return (0, value * unit) if unit else (int(value), 0.0)


def _validate(cfg: TrainConfig) -> None:
    checkpoint_interval(cfg.runtime.checkpoint_every)
    checks = [
        (cfg.epochs >= 1, "epochs must be >= 1"),
        (cfg.data.batch_size >= 1, "data.batch_size must be >= 1"),
        (
            cfg.data.clip_len >= 1 and cfg.data.size >= 1 and cfg.data.frame_step >= 1,
            "data.clip_len, data.size and data.frame_step must be >= 1",
        ),
        (
            cfg.optim.optimizer in ("sgd", "adamw"),
            f"unknown optimizer {cfg.optim.optimizer!r} (sgd or adamw)",
        ),
        (
            cfg.optim.schedule in ("constant", "step", "multistep", "cosine", "plateau"),
            f"unknown schedule {cfg.optim.schedule!r} (constant, step, multistep, cosine or plateau)",
        ),
        (
            cfg.runtime.device in ("auto", "cpu", "cuda") or cfg.runtime.device.startswith("cuda:"),
            f"unknown device {cfg.runtime.device!r} (cpu, cuda or auto)",
        ),
        (cfg.runtime.amp_dtype in ("auto", "bf16", "fp16"), "runtime.amp_dtype must be auto, bf16 or fp16"),
        (
            cfg.runtime.precision in (None, "fp32", "bf16", "fp16"),
            "runtime.precision must be fp32, bf16 or fp16",
        ),
        (
            cfg.runtime.progress in ("auto", "rich", "plain", "none"),
            "runtime.progress must be auto, rich, plain or none",
        ),
        (
            cfg.runtime.preempt_signal in PREEMPT_SIGNALS,
            f"runtime.preempt_signal must be one of {', '.join(PREEMPT_SIGNALS)}",
        ),
        (cfg.runtime.keep_checkpoints >= 1, "runtime.keep_checkpoints must be >= 1"),
        (cfg.runtime.checkpoint_failures >= 1, "runtime.checkpoint_failures must be >= 1"),
        (
            not (cfg.runtime.resume and cfg.runtime.auto_resume),
            "runtime.resume and runtime.auto_resume exclude each other (auto_resume also starts fresh)",
        ),
        (0.0 <= cfg.optim.label_smoothing < 1.0, "optim.label_smoothing must be in [0, 1)"),
        (
            cfg.puzzle.permutation_weight >= 0 and cfg.puzzle.rotation_weight >= 0
            and cfg.puzzle.permutation_weight + cfg.puzzle.rotation_weight > 0,
            "puzzle.permutation_weight and puzzle.rotation_weight must be >= 0, not both 0",
        ),
        (
            cfg.finetune.checkpoint is None or cfg.finetune.inflate_from is None,
            "finetune.checkpoint and finetune.inflate_from exclude each other",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def resolve_config(
    task: Task = "classify",
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults for ``task`` <- ``config_file`` <- ``overrides`` (nested dicts), checked; returns the
    config."""
    cfg = TrainConfig(task=task, data=DataConfig(size=PUZZLE_CUBE_SIZE) if task == "puzzle" else DataConfig())
    if config_file is not None:
        file_values = load_config_file(config_file)
        file_values.pop("task", None)  # the command decides the task
        cfg = _merged(cfg, file_values, "")
    if overrides:
        cfg = _merged(cfg, overrides, "")
    _validate(cfg)
    return cfg


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved with ``TrainConfig.to_dict`` (e.g. from a checkpoint)."""
    cfg = _merged(TrainConfig(), values, "")
    _validate(cfg)
    return cfg


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


@dataclass(frozen=True)
class Geometry:
    """The network and input sizes of a small run, shared by the demo, the study and the bench: ``arch``
    x ``widen_factor``, classification clips ``clip_len`` x ``size`` x ``size``, puzzle cubes ``cube_len`` x
    ``cube_size`` x ``cube_size``, ``batch_size`` clips (or puzzles) a step, loader ``workers``,
    ``device``."""

    arch: str = "resnet18"
    widen_factor: float = 0.25
    clip_len: int = 16
    size: int = 48
    cube_len: int = 8
    cube_size: int = 32
    batch_size: int = 8
    workers: int = 1
    device: str = "auto"


@dataclass(frozen=True)
class Recipe:
    """How a small run trains: ``optimizer`` (SGD with momentum 0.9, or AdamW) at peak rate ``lr`` with weight
    decay ``weight_decay``, warmup (a quarter of the run, at most one epoch) and ``schedule``."""

    optimizer: str = "sgd"
    lr: float = 0.02
    weight_decay: float = 1e-4
    schedule: str = "cosine"


def small_run_config(
    geometry: Geometry,
    recipe: Recipe,
    task: Task,
    manifest: str | Path,
    run_dir: str | Path,
    epochs: int,
    seed: int,
    init: str | Path | None = None,
    puzzle: dict[str, Any] | None = None,
    batch_size: int | None = None,
    begin_module: str | None = None,
    runtime: dict[str, Any] | None = None,
) -> TrainConfig:
    """The training config of one demo or study run with ``geometry`` and ``recipe``: quiet (no progress,
    no plots) unless ``runtime`` says otherwise; ``puzzle`` overrides the puzzle section (``sampler`` options
    on top of the geometry's cubes, ``permutation_weight``...). Classification runs keep horizontal flips
    off: the synthetic classes are directions and rotation senses, which a flip changes."""
    data: dict[str, Any] = {
        "manifest": str(manifest),
        "clip_len": geometry.clip_len,
        "size": geometry.size,
        "batch_size": batch_size or geometry.batch_size,
        "workers": geometry.workers,
    }
    overrides: dict[str, Any] = {
        "epochs": epochs,
        "model": {"arch": geometry.arch, "widen_factor": geometry.widen_factor},
        "data": data,
        "optim": {
            "optimizer": recipe.optimizer,
            "lr": recipe.lr,
            "momentum": 0.9,
            "weight_decay": recipe.weight_decay,
            "schedule": recipe.schedule,
            "warmup_epochs": min(1.0, epochs / 4),
        },
        "runtime": {
            "device": geometry.device,
            "channels_last": True,
            "seed": seed,
            "run_dir": str(run_dir),
            "progress": "none",
            "tensorboard": False,
            "plots": False,
            **(runtime or {}),
        },
        "finetune": {"checkpoint": None if init is None else str(init), "begin_module": begin_module},
    }
    if task == "puzzle":
        extra = dict(puzzle or {})
        sampler = {"cube_len": geometry.cube_len, "out_size": geometry.cube_size, **extra.pop("sampler", {})}
        overrides["puzzle"] = {"sampler": sampler, **extra}
    else:
        data["loader"] = {"hflip": False}
    return resolve_config(task, overrides=overrides)

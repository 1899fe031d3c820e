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

from vidfast.conventions import Override
from vidfast.errors import VidfastError
from vidfast.puzzle.sampler import PuzzleOptions

Task = Literal["classify", "puzzle"]
PUZZLE_CUBE_SIZE = 80  # default data.size of the puzzle task: Kim et al.'s 80x80 cubes
#: ``--help`` panels of options outside their section's own
MODEL_GROUP, OPTIM_GROUP, CONVENTION_GROUP = "Model", "Optimization", "Input convention"
EVAL_GROUP = "Evaluation"


class ConfigError(VidfastError):
    """A config file or value that cannot be used."""


@dataclass(frozen=True)
class Option:
    """A command-line option, declared once for the config fields of every command that takes it (each
    field with its own default): ``vidfast_cli`` makes the options from the fields.

    ``help``: one paragraph; ``flag``: the option's name (default ``--`` + the field name with dashes);
    ``short``: a one-letter alias (``-c``); ``min``/``max``: bounds, checked in config files too; ``group``:
    the ``--help`` panel (default: the section's); ``negatable``: a bool option also has its ``--no-``
    form."""

    help: str
    flag: str | None = None
    short: str | None = None
    min: float | None = None
    max: float | None = None
    group: str | None = None
    negatable: bool = True

    def __call__(self, default: Any = dataclasses.MISSING, *,
                 default_factory: Any = dataclasses.MISSING) -> Any:
        """A config field with this option and ``default`` (or ``default_factory``)."""
        return field(default=default, default_factory=default_factory, metadata=dataclasses.asdict(self))


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
           min: float | None = None, max: float | None = None, group: str | None = None,
           negatable: bool = True, default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field that is also a command-line option of one config (:class:`Option` declares one that
    several configs share)."""
    declared = Option(help, flag=flag, min=min, max=max, group=group, negatable=negatable)
    return declared(default, default_factory=default_factory)


# the options several commands take, each declared once (their fields below, and in EvalConfig, Geometry,
# the study's, the demo's and the bench's configs)
ARCH = Option("Backbone architecture from the model registry, e.g. resnet18, r2plus1d_18, c3d.")
WIDEN_FACTOR = Option("Scale every channel width of the ResNet families (0.25 = tiny).", min=0.0)
CLIP_LEN = Option("Frames per training clip (T).", min=1)
SIZE = Option("Side of the square spatial crop in pixels.", min=1)
FRAME_STEP = Option("Temporal stride between sampled frames.", min=1)
BATCH_SIZE = Option("Clips per batch (per process under torchrun).", min=1)
WORKERS = Option("Data-loading worker processes (0 = load in the main process).", min=0)
BACKEND = Option("Video decoder (vidfast.data.decoders): auto (for each video, the fastest measured on this "
                 "machine among those that can read it), pyav, decord2, torchcodec, dali or frame_folder.")
DEVICE = Option("cpu, cuda (fails without a GPU) or auto.")
AMP = Option("Force mixed precision on (bf16 autocast on CPU; bf16, or fp16 + GradScaler, on CUDA) or off. "
             "Default: measured - each convolution is checked against fp32 in each precision (failures run "
             "in fp32), then a few steps are timed and the fastest is used (cached; recorded in "
             "RUN/plan.yaml).")
CHANNELS_LAST = Option("channels_last_3d memory format for model and inputs.")
SEED = Option("Random seed of the run.")
CHECKPOINTS = Option("Classifier checkpoint; repeat it to average the softmax scores of several models "
                     "(score ensemble).", flag="--checkpoint", short="-c")
ONNX = Option("Model written by `vidfast export` (fp32 or --int8) instead of checkpoints, run in onnxruntime "
              "(class names, clip size and normalization come from its metadata); --device auto times "
              "onnxruntime and OpenVINO on it and keeps the faster.")
CLIPS = Option("Evenly spaced clips per video whose scores are averaged.", min=1)
POLICY = Option("A registered clip policy (vidfast.data.policies: random, center, uniform, sliding, or one "
                "of your own) that takes each video's clips instead of --clips evenly spaced ones; its "
                "scores are averaged.")


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build. ``kwargs`` go to ``create_model`` as they are (e.g. ``{"dropout": 0.5}``)."""

    arch: str = ARCH("resnet18")
    widen_factor: float | None = WIDEN_FACTOR(None)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``create_model`` besides ``num_classes`` (recorded in checkpoints)."""
        extra = dict(self.kwargs)
        if self.widen_factor is not None:
            extra["widen_factor"] = self.widen_factor
        return extra


@dataclass(frozen=True)
class ClipConfig:
    """How a classifier's clips are cut (:func:`vidfast.data.clip_policy`; the puzzle task cuts cubes as
    ``puzzle.sampler`` says): None = the policy's default (random clips, multi-scale crops and flips for
    training; the center clip and crop for validation). ``policy`` / ``val_policy``: registered clip policies
    (:func:`vidfast.data.policies.register_policy`) by name for training / validation clips (default
    ``random`` / ``center``). ``options``: further ``clip_policy`` options
    (``sampling``, ``clips``, ``stride``, ``spatial``, ``scales``, ``corners``, ``area``, ``ratio``)."""

    hflip: bool | None = option(None, help="Random horizontal flips of training clips (turn off when the "
                                "classes depend on left/right direction or rotation sense, as in `vidfast "
                                "data synth`). Default: on.")
    keyframe_snap: int | None = option(None, min=0, help="Move each random training clip's start to a "
                                       "keyframe at most this many frames away (randomised rounding: the "
                                       "expected start is unchanged), so that decoding wastes no frames; 16 "
                                       "suits `vidfast data transcode` output (a keyframe every 16 frames). "
                                       "Default: 0 (off).")
    policy: str | None = option(None, help="Registered clip policy (vidfast.data.policies) of the training "
                                "clips. Default: random (random clips, multi-scale corner crops, flips).")
    val_policy: str | None = option(None, help="Registered clip policy of the validation clips. Default: "
                                    "center (the center clip and crop).")
    options: dict[str, Any] = field(default_factory=dict)

    def policy_options(self) -> dict[str, Any]:
        """The options given (not None), for the task's clip policy."""
        given = {"hflip": self.hflip, "keyframe_snap": self.keyframe_snap, "policy": self.policy,
                 "val_policy": self.val_policy}
        return {**self.options, **{k: v for k, v in given.items() if v is not None}}


@dataclass(frozen=True)
class LoadingConfig:
    """How the loader works (:class:`vidfast.data.LoaderConfig`): ``crop_in`` "worker" cuts clips in the
    workers, "main" batches the crops in the main process; ``prefetch_factor`` batches each worker keeps
    ready."""

    crop_in: Literal["worker", "main"] = "worker"
    prefetch_factor: int = field(default=2, metadata={"min": 1})


@dataclass(frozen=True)
class DataConfig:
    """Clip geometry and loading: ``clips`` how a classifier's clips are cut, ``loader`` how they are
    loaded. ``convention`` (a preset of :mod:`vidfast.conventions`), ``mean``, ``std`` and ``value_scale``
    override the input convention (default: vidfast's, or a fine-tuned checkpoint's own)."""

    manifest: str = ""
    clip_len: int = CLIP_LEN(16)
    size: int = SIZE(112)
    frame_step: int = FRAME_STEP(1)
    batch_size: int = BATCH_SIZE(8)
    workers: int = WORKERS(2)
    backend: str = BACKEND("auto")
    train_split: str = "train"
    val_split: str = "val"
    clips: ClipConfig = field(default_factory=ClipConfig)
    loader: LoadingConfig = field(default_factory=LoadingConfig)
    convention: str | None = option(None, flag="--preset", group=CONVENTION_GROUP, help="Input convention "
                                    "preset of the weights: kinetics (vidfast's default), cvpr2018 "
                                    "(3D-ResNets 2018 release: values 0-255 minus the ActivityNet mean), "
                                    "3dr2020, torchvision or imagenet. Default: what the checkpoint records "
                                    "or its layout tells (see `vidfast models show FILE`).")
    mean: list[float] | None = option(None, group=CONVENTION_GROUP, help="Per-channel mean m0,m1,m2 in value "
                                      "units (see --value-scale).")
    std: list[float] | None = option(None, group=CONVENTION_GROUP, help="Per-channel std s0,s1,s2 in value "
                                     "units.")
    value_scale: float | None = option(None, group=CONVENTION_GROUP, help="Pixel values the weights expect: "
                                       "1 (0-1) or 255 (0-255).")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule. Defaults are the CVPR 2018 setup (SGD, lr 0.1, momentum 0.9, weight decay 1e-3,
    rate divided by 10 when the validation loss plateaus)."""

    optimizer: Literal["sgd", "adamw"] = option("sgd", help="sgd (momentum, optional Nesterov) or adamw.")
    lr: float = option(0.1, min=0.0, help="Base learning rate (after warmup, before decay).")
    momentum: float = option(0.9, min=0.0, help="SGD momentum.")
    dampening: float = 0.0
    nesterov: bool = option(False, help="Nesterov momentum for SGD.")
    weight_decay: float = option(1e-3, min=0.0, help="Weight decay (decoupled for adamw).")
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: Literal["constant", "step", "multistep", "cosine", "plateau"] = option(
        "plateau", help="Learning-rate schedule.")
    step_size: int = 30
    milestones: list[int] = option(flag="--milestone", default_factory=lambda: [50, 100, 150],
                                   help="Epoch at which the multistep schedule divides the rate "
                                   "(repeatable).")
    gamma: float = 0.1
    plateau_patience: int = 10
    min_lr: float = 0.0
    warmup_epochs: float = option(0.0, min=0.0, help="Linear learning-rate warmup length in epochs.")
    warmup_start_factor: float = 0.01
    clip_grad_norm: float = option(0.0, flag="--clip-grad", min=0.0, help="Clip the gradient norm to this "
                                   "value (0 = off).")
    label_smoothing: float = option(0.0, min=0.0, max=1.0, help="Label smoothing of the cross-entropy.")


@dataclass(frozen=True)
class PuzzleTaskConfig:
    """Cubic-puzzle pretext task: loss = ``permutation_weight`` * perm CE + ``rotation_weight`` * rotation CE
    (``permutation_weight`` 0: rotation prediction alone, 3DRotNet-style, on the same cubes). ``sampler``:
    the puzzle sampler's choices (:class:`vidfast.puzzle.PuzzleOptions`; the cubes are ``data.clip_len``
    frames ``data.frame_step`` apart, ``data.size`` square); ``hidden`` is the PuzzleNet head width (None =
    its default)."""

    rotation_weight: float = option(1.0, min=0.0, group=OPTIM_GROUP, help="Weight of the rotation loss added "
                                    "to the permutation loss.")
    permutation_weight: float = field(default=1.0, metadata={"min": 0.0})
    hidden: int | None = None
    sampler: PuzzleOptions = field(default_factory=PuzzleOptions)


@dataclass(frozen=True)
class RuntimeConfig:
    """Device, speed switches, reproducibility, and where the run writes. ``amp_dtype``: the low precision
    autocast may use (auto: bf16 on CPU, bf16 or fp16 on CUDA); ``precision``: the precision to reuse instead
    of measuring one (``RUN/plan.yaml`` records what a run used)."""

    device: str = DEVICE("auto")
    amp: bool | None = AMP(None)
    amp_dtype: Literal["auto", "bf16", "fp16"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] | None = None
    channels_last: bool = CHANNELS_LAST(True)
    compile: bool = option(False, help="torch.compile the model (slow first steps).")
    cudnn_benchmark: bool = True
    deterministic: bool = option(False, help="Deterministic algorithms (exactly reproducible runs, slower).")
    seed: int = SEED(0)
    run_dir: str = option("runs/run", help="Run directory: checkpoints, config.yaml, plan.yaml, metrics.csv, "
                          "TensorBoard logs, plots.")
    resume: bool = option(False, help="Continue the run in --run-dir exactly from its last.pt (with the plan "
                          "it recorded).")
    auto_resume: bool = option(False, help="Continue from the newest valid checkpoint in --run-dir when "
                               "there is one, else start fresh (the same command line for the first start "
                               "and every restart: torchrun --max-restarts, SLURM --requeue).")
    plan: str | None = option(None, help="Reuse the plan an earlier run recorded (its RUN/plan.yaml or a "
                              "checkpoint): the same precision, without measuring again; a config that would "
                              "plan another model, clips or batch is refused.")
    checkpoint_every: str = option("500", help="Checkpoint also mid-epoch: every N optimizer steps (500), or "
                                   "every so much time (90s, 10m, 2h); 0 = at epoch ends only.")
    keep_checkpoints: int = option(2, min=1, help="Step-numbered checkpoints kept in RUN/checkpoints (the "
                                   "newest K).")
    checkpoint_failures: int = option(3, min=1, help="Stop (exit 74) when this many checkpoint writes fail "
                                      "in a row (full disk, I/O error); fewer are logged and training goes "
                                      "on.")
    preempt_signal: Literal["SIGUSR1", "SIGUSR2", "SIGHUP", "SIGTERM"] = option(
        "SIGUSR1", help="Signal that, like SIGTERM, checkpoints at the next step and exits 75 (SIGUSR1 suits "
        "SLURM --signal=USR1@120).")
    log_every: int = field(default=10, metadata={"min": 1})
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    tensorboard: bool = True
    plots: bool = True


@dataclass(frozen=True)
class FinetuneConfig:
    """Start from ``checkpoint`` or from ``inflate_from``; train modules from ``begin_module`` on (None =
    all); ``force`` accepts a data convention that contradicts the checkpoint's."""

    checkpoint: str | None = option(None, flag="--from", group=MODEL_GROUP, help="Checkpoint to start "
                                    "from: a vidfast puzzle or classifier checkpoint, a 3D-ResNets-PyTorch "
                                    "2018/2020 file or torchvision video weights (architecture and input "
                                    "convention recognised from the file; the convention is kept unless "
                                    "--preset says otherwise).")
    inflate_from: str | None = option(None, group=MODEL_GROUP, help="Start --arch from a torchvision-format "
                                      "2D ResNet state dict, inflated to 3D (ImageNet-inflated "
                                      "initialisation; ImageNet convention unless --preset says otherwise).")
    begin_module: str | None = option(None, flag="--ft-begin-module", group=MODEL_GROUP,
                                      help="Train only from this module on (e.g. layer4, fc); earlier ones "
                                      "are frozen. Default: train everything.")
    force: bool = option(False, negatable=False, group=CONVENTION_GROUP, help="Accept a convention that "
                         "contradicts what the checkpoint records or its layout tells.")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    task: Task = "classify"
    epochs: int = option(100, min=1, group=OPTIM_GROUP, help="Number of training epochs.")
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
    import yaml  # not in the deployment install, whose CLI reads the config's fields for --help

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


#: sections of older configs whose keys live elsewhere now
_MOVED = {
    "data.loader.": "clip options are in data.clips now (hflip, keyframe_snap, options)",
    "puzzle.sampler.cube_len": "the cubes are data.clip_len frames long now",
    "puzzle.sampler.out_size": "the cubes are data.size square now",
    "puzzle.sampler.frame_step": "the cubes' frames are data.frame_step apart now",
    "puzzle.sampler.clip_len": "renamed puzzle.sampler.source_frames (frames the four temporal cells split)",
}


def _merged(current: Any, updates: dict[str, Any], prefix: str) -> Any:
    """A copy of the dataclass instance ``current`` with a nested dict of ``updates`` applied."""
    hints = typing.get_type_hints(type(current))
    fields = {f.name: f for f in dataclasses.fields(current)}
    names = set(fields)
    changes: dict[str, Any] = {}
    for name, value in updates.items():
        key = f"{prefix}{name}"
        if name not in names:
            moved = "".join(f"; {where}" for section, where in _MOVED.items() if key.startswith(section))
            raise ConfigError(f"unknown config key {key!r} (known: {', '.join(sorted(names))}){moved}")
        section = getattr(current, name)
        if dataclasses.is_dataclass(section):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key}: expected a section (mapping), got {value!r}")
            changes[name] = _merged(section, value, f"{key}.")
        else:
            changes[name] = _in_bounds(_coerce(value, hints[name], key), fields[name].metadata, key)
    try:
        return dataclasses.replace(current, **changes)
    except ValueError as exc:  # a section's own checks across its fields
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from None


def _in_bounds(value: Any, metadata: Any, key: str) -> Any:
    """``value``, or ConfigError naming ``key`` when it is below the field's ``min`` or above its ``max``."""
    low, high = metadata.get("min"), metadata.get("max")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if low is not None and value < low:
            raise ConfigError(f"config key {key}: {value} is below the minimum {low:g}")
        if high is not None and value > high:
            raise ConfigError(f"config key {key}: {value} is above the maximum {high:g}")
    return value


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
    """Checks across fields (one field's type, choices and bounds are checked as it is read)."""
    checkpoint_interval(cfg.runtime.checkpoint_every)
    checks = [
        (
            cfg.runtime.device in ("auto", "cpu", "cuda") or cfg.runtime.device.startswith("cuda:"),
            f"unknown device {cfg.runtime.device!r} (cpu, cuda or auto)",
        ),
        (
            not (cfg.runtime.resume and cfg.runtime.auto_resume),
            "runtime.resume and runtime.auto_resume exclude each other (auto_resume also starts fresh)",
        ),
        (cfg.optim.label_smoothing < 1.0, "optim.label_smoothing must be in [0, 1)"),
        (
            cfg.puzzle.permutation_weight + cfg.puzzle.rotation_weight > 0,
            "puzzle.permutation_weight and puzzle.rotation_weight must not both be 0",
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
    config_type: type[TrainConfig] = TrainConfig,
) -> TrainConfig:
    """Defaults for ``task`` <- ``config_file`` <- ``overrides`` (nested dicts), checked; returns the
    config (a ``config_type``: TrainConfig or an extension of it)."""
    cfg = config_type(task=task)
    if task == "puzzle":
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, size=PUZZLE_CUBE_SIZE))
    if config_file is not None:
        file_values = load_config_file(config_file)
        file_values.pop("task", None)  # the command decides the task
        cfg = _merged(cfg, file_values, "")
    if overrides:
        cfg = _merged(cfg, overrides, "")
    _validate(cfg)
    return cfg


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved with ``TrainConfig.to_dict`` (e.g. from a checkpoint; one of an older vidfast
    with the cubes' geometry in ``puzzle.sampler`` is read as :func:`upgraded_puzzle` says)."""
    cfg = _merged(TrainConfig(), upgraded_puzzle(values), "")
    _validate(cfg)
    return cfg


#: entries of an older ``puzzle.sampler`` that the data section holds now
_OLD_SAMPLER_GEOMETRY = {"cube_len": "clip_len", "out_size": "size", "frame_step": "frame_step"}


def upgraded_sampler(sampler: dict[str, Any]) -> dict[str, Any]:
    """The puzzle sampler's choices of an older vidfast (a saved ``puzzle.sampler``, a recorded plan's
    options) as this one names them: without the cubes' geometry, ``clip_len`` (frames the temporal cells
    split) named ``source_frames``."""
    upgraded = {k: v for k, v in sampler.items() if k not in _OLD_SAMPLER_GEOMETRY}
    if "clip_len" in upgraded:
        upgraded["source_frames"] = upgraded.pop("clip_len")
    return upgraded


def upgraded_puzzle(values: dict[str, Any]) -> dict[str, Any]:
    """A saved config of an older vidfast as this one writes it: a puzzle run's ``puzzle.sampler.cube_len``,
    ``out_size`` and ``frame_step`` (which overrode the data section's) become ``data.clip_len``, ``size``
    and ``frame_step``; the sampler's other entries as :func:`upgraded_sampler` says."""
    sampler = (values.get("puzzle") or {}).get("sampler")
    if not isinstance(sampler, dict):
        return values
    data = dict(values.get("data") or {})
    if values.get("task") == "puzzle":
        data.update({new: sampler[old] for old, new in _OLD_SAMPLER_GEOMETRY.items() if old in sampler})
    return {**values, "data": data, "puzzle": {**values["puzzle"], "sampler": upgraded_sampler(sampler)}}


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    import yaml

    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


@dataclass(frozen=True)
class Geometry:
    """The network and input sizes of a small run, shared by the demo, the study and the bench: ``arch``
    x ``widen_factor``, classification clips ``clip_len`` x ``size`` x ``size``, puzzle cubes ``cube_len`` x
    ``cube_size`` x ``cube_size``, ``batch_size`` clips (or puzzles) a step, loader ``workers``,
    ``device``."""

    arch: str = ARCH("resnet18")
    widen_factor: float = WIDEN_FACTOR(0.25)
    clip_len: int = CLIP_LEN(16)
    size: int = SIZE(48)
    cube_len: int = 8
    cube_size: int = 32
    batch_size: int = BATCH_SIZE(8)
    workers: int = WORKERS(1)
    device: str = DEVICE("auto")


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
    puzzle: PuzzleTaskConfig | None = None,
    batch_size: int | None = None,
    begin_module: str | None = None,
    runtime: dict[str, Any] | None = None,
) -> TrainConfig:
    """The training config of one demo or study run with ``geometry`` and ``recipe``: quiet (no progress,
    no plots) unless ``runtime`` says otherwise. A puzzle run cuts the geometry's cubes (they are its data
    section's clips) as ``puzzle`` says (default: the defaults of the section). Classification runs keep
    horizontal flips off: the synthetic classes are directions and rotation senses, which a flip changes."""
    cubes = task == "puzzle"
    data: dict[str, Any] = {
        "manifest": str(manifest),
        "clip_len": geometry.cube_len if cubes else geometry.clip_len,
        "size": geometry.cube_size if cubes else geometry.size,
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
    if puzzle is not None:
        overrides["puzzle"] = dataclasses.asdict(puzzle)
    if not cubes:
        data["clips"] = {"hflip": False}
    return resolve_config(task, overrides=overrides)


@dataclass(frozen=True)
class EvalConfig:
    """What ``vidfast eval`` scores (:func:`vidfast.engine.evaluate.evaluate`); ``vidfast predict`` takes its
    model and clip options too. ``clip_len``, ``size``, ``frame_step`` and ``convention`` override the
    checkpoint's. ``policy``: a registered clip policy (:func:`vidfast.data.policies.create_policy`) taking
    the clips instead of ``clips`` evenly spaced ones or the ``sliding`` windows; ``onnx``: the exported
    model evaluated instead of ``checkpoints`` (recorded in the report)."""

    manifest: str = ""
    checkpoints: list[str] = CHECKPOINTS(default_factory=list)
    onnx: str | None = ONNX(None)
    split: str = option("test", group=EVAL_GROUP, help="Manifest split to evaluate: train, val or test.")
    clips: int = CLIPS(10)
    sliding: bool = option(False, group=EVAL_GROUP, help="Score every non-overlapping window of each video "
                           "instead of --clips evenly spaced clips.")
    policy: str | None = POLICY(None)
    batch_size: int = BATCH_SIZE(16)
    workers: int = WORKERS(2)
    device: str = DEVICE("auto")
    amp: bool | None = AMP(None)
    channels_last: bool = CHANNELS_LAST(True)
    backend: str = BACKEND("auto")
    clip_len: int | None = CLIP_LEN(None)
    size: int | None = SIZE(None)
    frame_step: int | None = FRAME_STEP(None)
    run_dir: str | None = option(None, group=EVAL_GROUP, help="Where report.json, confusion.png and "
                                 "predictions.csv go.")
    convention: Override = Override()

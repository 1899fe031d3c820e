"""Typer option definitions shared by the training commands (and usable by eval/predict/bench).

Every option defaults to ``None`` = "not given on the command line", so the value falls back to the
``--config`` file and then to the library defaults (``vidfast.engine.config``). ``CONFIG_KEYS`` maps each
option's parameter name to its dotted key in the run config; ``overrides_from_options`` turns the given ones
into a nested override dict.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

_MODEL = "Model"
_DATA = "Data"
_OPTIM = "Optimization"
_RUNTIME = "Runtime"

F = TypeVar("F", bound=Callable[..., Any])

ManifestArg = Annotated[
    Path,
    typer.Argument(help="Manifest CSV written by `vidfast data index` (only rows with status ok are used)."),
]

Arch = Annotated[
    str | None,
    typer.Option(
        "--arch",
        help="Backbone architecture from the model registry, e.g. resnet18, r2plus1d_18, c3d.",
        rich_help_panel=_MODEL,
    ),
]
WidenFactor = Annotated[
    float | None,
    typer.Option(
        "--widen-factor",
        min=0.0,
        help="Scale every channel width of the ResNet families (0.25 = tiny).",
        rich_help_panel=_MODEL,
    ),
]
ClipLen = Annotated[
    int | None, typer.Option("--clip-len", min=1, help="Frames per training clip (T).", rich_help_panel=_DATA)
]
Size = Annotated[
    int | None,
    typer.Option("--size", min=1, help="Side of the square spatial crop in pixels.", rich_help_panel=_DATA),
]
FrameStep = Annotated[
    int | None,
    typer.Option(
        "--frame-step", min=1, help="Temporal stride between sampled frames.", rich_help_panel=_DATA
    ),
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size", min=1, help="Clips per batch (per process under torchrun).", rich_help_panel=_DATA
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="Data-loading worker processes (0 = load in the main process).",
        rich_help_panel=_DATA,
    ),
]
HFlip = Annotated[
    bool | None,
    typer.Option(
        "--hflip/--no-hflip",
        help="Random horizontal flips of training clips (turn off when the classes depend on left/right "
        "direction or rotation sense, as in `vidfast data synth`).",
        rich_help_panel=_DATA,
    ),
]
KeyframeSnap = Annotated[
    int | None,
    typer.Option(
        "--keyframe-snap",
        min=0,
        help="Move each random training clip's start to a keyframe at most this many frames away "
        "(randomised rounding: the expected start is unchanged), so that decoding wastes no frames; 16 suits "
        "`vidfast data transcode` output (a keyframe every 16 frames). 0 = off (default).",
        rich_help_panel=_DATA,
    ),
]
Epochs = Annotated[
    int | None, typer.Option("--epochs", min=1, help="Number of training epochs.", rich_help_panel=_OPTIM)
]
Lr = Annotated[
    float | None,
    typer.Option(
        "--lr", min=0.0, help="Base learning rate (after warmup, before decay).", rich_help_panel=_OPTIM
    ),
]
Optimizer = Annotated[
    str | None,
    typer.Option("--optimizer", help="sgd (momentum, optional Nesterov) or adamw.", rich_help_panel=_OPTIM),
]
Schedule = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        help="Learning-rate schedule: constant, step, multistep, cosine or plateau.",
        rich_help_panel=_OPTIM,
    ),
]
WarmupEpochs = Annotated[
    float | None,
    typer.Option(
        "--warmup-epochs",
        min=0.0,
        help="Linear learning-rate warmup length in epochs.",
        rich_help_panel=_OPTIM,
    ),
]
WeightDecay = Annotated[
    float | None,
    typer.Option(
        "--weight-decay", min=0.0, help="Weight decay (decoupled for adamw).", rich_help_panel=_OPTIM
    ),
]
Momentum = Annotated[
    float | None, typer.Option("--momentum", min=0.0, help="SGD momentum.", rich_help_panel=_OPTIM)
]
Nesterov = Annotated[
    bool | None,
    typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum for SGD.", rich_help_panel=_OPTIM),
]
Milestones = Annotated[
    list[int] | None,
    typer.Option(
        "--milestone",
        help="Epoch at which the multistep schedule divides the rate (repeatable).",
        rich_help_panel=_OPTIM,
    ),
]
LabelSmoothing = Annotated[
    float | None,
    typer.Option(
        "--label-smoothing",
        min=0.0,
        max=1.0,
        help="Label smoothing of the cross-entropy.",
        rich_help_panel=_OPTIM,
    ),
]
ClipGrad = Annotated[
    float | None,
    typer.Option(
        "--clip-grad", min=0.0, help="Clip the gradient norm to this value (0 = off).", rich_help_panel=_OPTIM
    ),
]
Device = Annotated[
    str | None,
    typer.Option("--device", help="cpu, cuda (fails without a GPU) or auto.", rich_help_panel=_RUNTIME),
]
Amp = Annotated[
    bool | None,
    typer.Option(
        "--amp/--no-amp",
        help="Force mixed precision on (bf16 autocast on CPU; bf16, or fp16 + GradScaler, on CUDA) or off. "
        "Default: measured - each convolution is checked against fp32 in each precision (failures run in "
        "fp32), then a few steps are timed and the fastest is used (cached; recorded in config.yaml).",
        rich_help_panel=_RUNTIME,
    ),
]
ChannelsLast = Annotated[
    bool | None,
    typer.Option(
        "--channels-last/--no-channels-last",
        help="channels_last_3d memory format for model and inputs.",
        rich_help_panel=_RUNTIME,
    ),
]
Compile = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile", help="torch.compile the model (slow first steps).", rich_help_panel=_RUNTIME
    ),
]
Deterministic = Annotated[
    bool | None,
    typer.Option(
        "--deterministic/--no-deterministic",
        help="Deterministic algorithms (exactly reproducible runs, slower).",
        rich_help_panel=_RUNTIME,
    ),
]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed of the run.", rich_help_panel=_RUNTIME)]
RunDir = Annotated[
    Path | None,
    typer.Option(
        "--run-dir",
        help="Run directory: checkpoints, config.yaml, metrics.csv, TensorBoard logs, plots.",
        rich_help_panel=_RUNTIME,
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML or TOML config file (sections model, data, optim, puzzle, runtime, "
        "finetune; command-line options override it).",
        rich_help_panel=_RUNTIME,
    ),
]
Resume = Annotated[
    bool | None,
    typer.Option(
        "--resume/--no-resume",
        help="Continue the run in --run-dir exactly from its last.pt.",
        rich_help_panel=_RUNTIME,
    ),
]
AutoResume = Annotated[
    bool | None,
    typer.Option(
        "--auto-resume/--no-auto-resume",
        help="Continue from the newest valid checkpoint in --run-dir when there is one, else start fresh "
        "(the same command line for the first start and every restart: torchrun --max-restarts, SLURM "
        "--requeue).",
        rich_help_panel=_RUNTIME,
    ),
]
CheckpointEvery = Annotated[
    str | None,
    typer.Option(
        "--checkpoint-every",
        help="Checkpoint also mid-epoch: every N optimizer steps (500), or every so much time (90s, 10m, "
        "2h); 0 = at epoch ends only. Default 500.",
        rich_help_panel=_RUNTIME,
    ),
]
KeepCheckpoints = Annotated[
    int | None,
    typer.Option(
        "--keep-checkpoints",
        min=1,
        help="Step-numbered checkpoints kept in RUN/checkpoints (the newest K; default 2).",
        rich_help_panel=_RUNTIME,
    ),
]
CheckpointFailures = Annotated[
    int | None,
    typer.Option(
        "--checkpoint-failures",
        min=1,
        help="Stop (exit 74) when this many checkpoint writes fail in a row (full disk, I/O error); fewer "
        "are logged and training goes on (default 3).",
        rich_help_panel=_RUNTIME,
    ),
]
PreemptSignal = Annotated[
    str | None,
    typer.Option(
        "--preempt-signal",
        help="Signal that, like SIGTERM, checkpoints at the next step and exits 75: SIGUSR1 (default, for "
        "SLURM --signal=USR1@120), SIGUSR2, SIGHUP or SIGTERM.",
        rich_help_panel=_RUNTIME,
    ),
]
RotationWeight = Annotated[
    float | None,
    typer.Option(
        "--rotation-weight",
        min=0.0,
        help="Weight of the rotation loss added to the permutation loss.",
        rich_help_panel=_OPTIM,
    ),
]
FromCheckpoint = Annotated[
    Path | None,
    typer.Option(
        "--from",
        help="Checkpoint to start from: a vidfast puzzle or classifier checkpoint, a 3D-ResNets-PyTorch "
        "2018/2020 file or torchvision video weights (architecture and input convention recognised from the "
        "file; the convention is kept unless --preset says otherwise).",
        rich_help_panel=_MODEL,
    ),
]
FtBeginModule = Annotated[
    str | None,
    typer.Option(
        "--ft-begin-module",
        help="Train only from this module on (e.g. layer4, fc); earlier ones are "
        "frozen. Default: train everything.",
        rich_help_panel=_MODEL,
    ),
]

_CONVENTION = "Input convention"


def _triple(value: str | None) -> list[float] | None:
    """``"0.43,0.39,0.37"`` -> ``[0.43, 0.39, 0.37]`` (None stays None)."""
    if value is None:
        return None
    try:
        values = [float(v) for v in value.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise typer.BadParameter(f"expected 3 comma-separated numbers, got {value!r}")
    return values


Preset = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="Input convention preset of the weights: kinetics (vidfast's default), cvpr2018 (3D-ResNets "
        "2018 release: values 0-255 minus the ActivityNet mean), 3dr2020, torchvision or imagenet. Default: "
        "what the checkpoint records or its layout tells (see `vidfast models show FILE`).",
        rich_help_panel=_CONVENTION,
    ),
]
Mean = Annotated[
    str | None,
    typer.Option("--mean", callback=_triple, help="Per-channel mean m0,m1,m2 in value units (see "
                 "--value-scale).", rich_help_panel=_CONVENTION),
]
Std = Annotated[
    str | None,
    typer.Option("--std", callback=_triple, help="Per-channel std s0,s1,s2 in value units.",
                 rich_help_panel=_CONVENTION),
]
ValueScale = Annotated[
    float | None,
    typer.Option("--value-scale", help="Pixel values the weights expect: 1 (0-1) or 255 (0-255).",
                 rich_help_panel=_CONVENTION),
]
Force = Annotated[
    bool,
    typer.Option("--force", help="Accept a convention that contradicts what the checkpoint records or its "
                 "layout tells.", rich_help_panel=_CONVENTION),
]
InflateFrom = Annotated[
    Path | None,
    typer.Option(
        "--inflate-from",
        help="Start --arch from a torchvision-format 2D ResNet state dict, inflated to 3D (ImageNet-inflated "
        "initialisation; ImageNet convention unless --preset says otherwise).",
        rich_help_panel=_MODEL,
    ),
]


def convention_override(preset: str | None = None, mean: list[float] | None = None,
                        std: list[float] | None = None, value_scale: float | None = None,
                        force: bool | None = False) -> Any:
    """The ``vidfast.conventions.Override`` of the input-convention options."""
    from vidfast.conventions import Override

    return Override(preset, mean, std, value_scale, bool(force))


# --preset, --mean, --std, --value-scale and --force, for the commands that read weights
CONVENTION_OPTIONS: dict[str, Any] = {
    "preset": Preset, "mean": Mean, "std": Std, "value_scale": ValueScale, "force": Force,
}


# the options every training command takes, in --help order
TRAINING_OPTIONS: dict[str, Any] = {
    "arch": Arch,
    "widen_factor": WidenFactor,
    "clip_len": ClipLen,
    "size": Size,
    "frame_step": FrameStep,
    "batch_size": BatchSize,
    "workers": Workers,
    "hflip": HFlip,
    "keyframe_snap": KeyframeSnap,
    "epochs": Epochs,
    "lr": Lr,
    "optimizer": Optimizer,
    "schedule": Schedule,
    "milestones": Milestones,
    "warmup_epochs": WarmupEpochs,
    "weight_decay": WeightDecay,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "label_smoothing": LabelSmoothing,
    "clip_grad": ClipGrad,
    "device": Device,
    "amp": Amp,
    "channels_last": ChannelsLast,
    "compile": Compile,
    "deterministic": Deterministic,
    "seed": Seed,
    "run_dir": RunDir,
    "resume": Resume,
    "auto_resume": AutoResume,
    "checkpoint_every": CheckpointEvery,
    "keep_checkpoints": KeepCheckpoints,
    "checkpoint_failures": CheckpointFailures,
    "preempt_signal": PreemptSignal,
    "preset": Preset,
    "mean": Mean,
    "std": Std,
    "value_scale": ValueScale,
    "config": ConfigFile,
}

# option parameter name -> dotted key of the run config (vidfast.engine.config.TrainConfig)
CONFIG_KEYS: dict[str, str] = {
    "arch": "model.arch",
    "widen_factor": "model.widen_factor",
    "clip_len": "data.clip_len",
    "size": "data.size",
    "frame_step": "data.frame_step",
    "batch_size": "data.batch_size",
    "workers": "data.workers",
    "hflip": "data.loader.hflip",
    "keyframe_snap": "data.loader.keyframe_snap",
    "epochs": "epochs",
    "lr": "optim.lr",
    "optimizer": "optim.optimizer",
    "schedule": "optim.schedule",
    "warmup_epochs": "optim.warmup_epochs",
    "weight_decay": "optim.weight_decay",
    "momentum": "optim.momentum",
    "nesterov": "optim.nesterov",
    "milestones": "optim.milestones",
    "label_smoothing": "optim.label_smoothing",
    "clip_grad": "optim.clip_grad_norm",
    "device": "runtime.device",
    "amp": "runtime.amp",
    "channels_last": "runtime.channels_last",
    "compile": "runtime.compile",
    "deterministic": "runtime.deterministic",
    "seed": "runtime.seed",
    "run_dir": "runtime.run_dir",
    "resume": "runtime.resume",
    "auto_resume": "runtime.auto_resume",
    "checkpoint_every": "runtime.checkpoint_every",
    "keep_checkpoints": "runtime.keep_checkpoints",
    "checkpoint_failures": "runtime.checkpoint_failures",
    "preempt_signal": "runtime.preempt_signal",
    "rotation_weight": "puzzle.rotation_weight",
    "from_checkpoint": "finetune.checkpoint",
    "inflate_from": "finetune.inflate_from",
    "force": "finetune.force",
    "ft_begin_module": "finetune.begin_module",
    "preset": "data.convention",
    "mean": "data.mean",
    "std": "data.std",
    "value_scale": "data.value_scale",
}


def overrides_from_options(**values: Any) -> dict[str, Any]:
    """Nested config overrides from option values given on the command line (``None`` = not given).

    ``overrides_from_options(lr=0.01, arch=None)`` -> ``{"optim": {"lr": 0.01}}``. Paths become strings.
    """
    nested: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name not in CONFIG_KEYS:
            raise KeyError(name)
        *sections, leaf = CONFIG_KEYS[name].split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = str(value) if isinstance(value, Path) else value
    return nested


def with_options(
    options: dict[str, Any], name: str = "given", combine: Callable[..., Any] = dict
) -> Callable[[F], F]:
    """Decorator adding ``options`` (parameter name -> ``Annotated`` option type, default None) to a Typer
    command.

    The command function declares its own parameters plus ``given: dict``; it receives the shared options'
    values in ``given`` (None = not given), e.g. ``@with_options(TRAINING_OPTIONS) def train(manifest, given):
    ...``. With ``name`` and ``combine`` it receives ``name=combine(**values)`` instead (e.g.
    :func:`with_convention_options`).
    """

    def wrap(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != name]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
            for name, annotation in options.items()
        ]

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            values = {option: kwargs.pop(option, None) for option in options}
            return func(*args, **{name: combine(**values)}, **kwargs)

        command.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in own + added}
        del command.__wrapped__  # type: ignore[attr-defined]
        return command  # type: ignore[return-value]

    return wrap


def with_convention_options(func: F) -> F:
    """Decorator adding :data:`CONVENTION_OPTIONS` to a command, which receives them as ``convention`` (a
    ``vidfast.conventions.Override``)."""
    return with_options(CONVENTION_OPTIONS, "convention", convention_override)(func)

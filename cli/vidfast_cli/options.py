"""Command-line options, each declared once.

The training options are made from the run config's fields (:mod:`vidfast.engine.config`): a field declared
with ``option(...)`` is an option, with its help, flag, bounds and ``--help`` panel, so an option added there
appears in ``--help`` and in the config file without touching the CLI. Every such option defaults to None =
"not given", so the value falls back to the ``--config`` file and then to the field's default;
:func:`overrides_from_options` turns the given ones into a nested override dict. The other commands take the
same declarations (``Arch``, ``BatchSize``, :data:`CONVENTION_OPTIONS`, ...).

Importing this module loads the config module only (no torch): ``vidfast --help`` answers at once, also in the
deployment install.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

import typer

from vidfast.engine.config import TrainConfig

F = TypeVar("F", bound=Callable[..., Any])

#: the ``--help`` panel of each config section's options (a field's ``group`` overrides it)
SECTION_PANELS = {"model": "Model", "data": "Data", "optim": "Optimization", "puzzle": "Optimization",
                  "runtime": "Runtime", "finetune": "Model"}
#: the panels in --help order
PANELS = ("Model", "Data", "Optimization", "Runtime", "Input convention")
#: options only some training commands take, by config key prefix (every other option: all of them)
ONLY_FOR = {"puzzle.": ("pretrain",), "data.clips.": ("train", "finetune"), "finetune.": ("finetune",)}
TRAINING_COMMANDS = ("pretrain", "train", "finetune")


def paragraphs(text: str) -> str:
    """A docstring as help text: its paragraphs (blank-line separated) each on one line, so that ``--help``
    flows them to the terminal's width instead of keeping the source's line breaks."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def _numbers(value: str | None) -> list[float] | None:
    """``"0.43,0.39,0.37"`` -> ``[0.43, 0.39, 0.37]`` (None stays None)."""
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {value!r}") from None


def _cli_type(tp: Any) -> tuple[Any, dict[str, Any]]:
    """The type Typer parses a config field of type ``tp`` as, and the ``typer.Option`` arguments it needs."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        (tp,) = [arg for arg in get_args(tp) if arg is not type(None)]
    if get_origin(tp) is Literal:
        return tp, {}
    if get_origin(tp) is list:
        (item,) = get_args(tp)
        return (list[int], {}) if item is int else (str, {"callback": _numbers, "metavar": "X,Y,Z"})
    if tp in (bool, int, float, str):
        return tp, {}
    raise TypeError(f"no command-line form for a config field of type {tp!r}")


@dataclasses.dataclass(frozen=True)
class ConfigOption:
    """The option of config field ``key`` (dotted): the command functions' parameter ``param`` and its
    ``Annotated`` type."""

    key: str
    param: str
    annotation: Any
    panel: str


def config_options(config_type: type = TrainConfig) -> dict[str, ConfigOption]:
    """The option of every field of ``config_type`` (and its sections) declared with ``option(...)``, by
    dotted config key, in declaration order."""
    found: dict[str, ConfigOption] = {}

    def walk(section_type: type, prefix: str, panel: str | None) -> None:
        hints = typing.get_type_hints(section_type)
        for f in dataclasses.fields(section_type):
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{key}.", panel or SECTION_PANELS.get(f.name))
                continue
            if "help" not in f.metadata:
                continue
            meta = f.metadata
            tp, extra = _cli_type(hints[f.name])
            flag = meta["flag"] or f"--{f.name.replace('_', '-')}"
            if tp is bool and meta["negatable"]:
                flag = f"{flag}/--no-{flag[2:]}"
            if tp in (int, float):
                extra.update({k: meta[k] for k in ("min", "max") if meta[k] is not None})
            shown = meta["group"] or panel or PANELS[0]
            option = typer.Option(flag, help=meta["help"], rich_help_panel=shown, **extra)
            found[key] = ConfigOption(key, key.replace(".", "__"), Annotated[tp | None, option], shown)

    walk(config_type, "", None)
    return found


TRAINING = config_options()


def training_options(command: str, config_type: type = TrainConfig) -> dict[str, Any]:
    """Parameter name -> ``Annotated`` option type of every config option that training command ``command``
    (pretrain, train or finetune) takes, in ``--help`` order, and ``config`` (the ``--config`` file)."""
    options = TRAINING if config_type is TrainConfig else config_options(config_type)
    taken = [
        o for o in options.values()
        if all(command in commands for prefix, commands in ONLY_FOR.items() if o.key.startswith(prefix))
    ]
    taken.sort(key=lambda o: PANELS.index(o.panel) if o.panel in PANELS else len(PANELS))
    return {**{o.param: o.annotation for o in taken}, "config": ConfigFile}


def overrides_from_options(given: dict[str, Any]) -> dict[str, Any]:
    """Nested config overrides from option values by parameter name (``None`` = not given).

    ``{"optim__lr": 0.01, "model__arch": None}`` -> ``{"optim": {"lr": 0.01}}``. Paths become strings.
    """
    nested: dict[str, Any] = {}
    for param, value in given.items():
        if value is None:
            continue
        *sections, leaf = param.split("__")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = str(value) if isinstance(value, Path) else value
    return nested


def _alias(key: str) -> Any:
    return TRAINING[key].annotation


# the declarations the other commands share
Arch = _alias("model.arch")
WidenFactor = _alias("model.widen_factor")
ClipLen = _alias("data.clip_len")
Size = _alias("data.size")
FrameStep = _alias("data.frame_step")
BatchSize = _alias("data.batch_size")
Workers = _alias("data.workers")
Device = _alias("runtime.device")
Amp = _alias("runtime.amp")
ChannelsLast = _alias("runtime.channels_last")
Seed = _alias("runtime.seed")

ManifestArg = Annotated[
    Path,
    typer.Argument(help="Manifest CSV written by `vidfast data index` (only rows with status ok are used)."),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML or TOML config file (sections model, data, optim, puzzle, runtime, finetune; command-line "
        "options override it).",
        rich_help_panel=SECTION_PANELS["runtime"],
    ),
]

# --preset, --mean, --std, --value-scale and --force, for the commands that read weights
CONVENTION_OPTIONS: dict[str, Any] = {
    "preset": _alias("data.convention"), "mean": _alias("data.mean"), "std": _alias("data.std"),
    "value_scale": _alias("data.value_scale"), "force": _alias("finetune.force"),
}


def convention_override(preset: str | None = None, mean: list[float] | None = None,
                        std: list[float] | None = None, value_scale: float | None = None,
                        force: bool | None = False) -> Any:
    """The ``vidfast.conventions.Override`` of the input-convention options."""
    from vidfast.conventions import Override

    return Override(preset, mean, std, value_scale, bool(force))


def with_options(
    options: dict[str, Any], name: str = "given", combine: Callable[..., Any] = dict
) -> Callable[[F], F]:
    """Decorator adding ``options`` (parameter name -> ``Annotated`` option type, default None) to a Typer
    command.

    The command function declares its own parameters plus ``given: dict``; it receives the shared options'
    values in ``given`` (None = not given), e.g. ``@with_options(training_options("train")) def
    train(manifest, given): ...``. With ``name`` and ``combine`` it receives ``name=combine(**values)``
    instead (e.g. :func:`with_convention_options`).
    """

    def wrap(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != name]
        added = [
            inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
            for param, annotation in options.items()
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

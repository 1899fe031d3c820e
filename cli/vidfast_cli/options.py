"""Command-line options, each declared once.

A command's options are made from the fields of its config dataclass: a field declared with ``option(...)``
(or with a shared declaration such as ``vidfast.engine.config.BATCH_SIZE``) is an option, with its help,
flag, bounds and ``--help`` panel, so an option added there appears in ``--help`` (and, for the training
commands, in the config file) without touching the CLI. The training commands take :class:`TrainConfig`'s;
``eval`` and ``predict`` :class:`EvalConfig`'s; ``bench``, ``study`` and ``demo`` their own configs', whose
``geometry`` (:class:`~vidfast.engine.config.Geometry`) gives the three the same network and clip options.
Every such option defaults to None = "not given": :func:`overrides_from_options` turns the given ones into a
nested override dict, which the training commands resolve against the ``--config`` file and the others apply
to their config with :func:`configured`.

Importing this module loads config modules only (no torch): ``vidfast --help`` answers at once, also in the
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
                  "runtime": "Runtime", "finetune": "Model", "geometry": "Network and clips"}
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


def _items(item: type) -> Callable[[str | None], tuple[Any, ...] | None]:
    """The parser of a comma-separated tuple of ``item`` values: ``"2,4,8"`` -> ``(2, 4, 8)``."""

    def parse(value: str | None) -> tuple[Any, ...] | None:
        if value is None:
            return None
        try:
            return tuple(item(v.strip()) for v in value.split(","))
        except ValueError:
            raise typer.BadParameter(f"expected comma-separated {item.__name__} values, got {value!r}"
                                     ) from None

    return parse


def _cli_type(tp: Any) -> tuple[Any, dict[str, Any]]:
    """The type Typer parses a config field of type ``tp`` as, and the ``typer.Option`` arguments it needs."""
    if get_origin(tp) in (typing.Union, types.UnionType):
        (tp,) = [arg for arg in get_args(tp) if arg is not type(None)]
    if get_origin(tp) is Literal:
        return tp, {}
    if get_origin(tp) is list:
        (item,) = get_args(tp)
        if item in (int, str):
            return list[item], {}  # type: ignore[valid-type]  (the option is repeated)
        return str, {"callback": _numbers, "metavar": "X,Y,Z"}
    if get_origin(tp) is tuple:
        item = get_args(tp)[0]
        return str, {"callback": _items(item), "metavar": "A,B,..."}
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
    panel: str | None
    default: Any = None


def config_options(config_type: type = TrainConfig, panel: str | None = PANELS[0],
                   defaults: Any = None) -> dict[str, ConfigOption]:
    """The option of every field of ``config_type`` (and its sections) declared with ``option(...)``, by
    dotted config key, in declaration order. ``panel``: the ``--help`` panel of top-level fields (a
    section's is in :data:`SECTION_PANELS`, a field's ``group`` overrides both); ``defaults``: a
    ``config_type`` instance whose values (numbers, text, switches) are the options' defaults, shown in
    ``--help``."""
    found: dict[str, ConfigOption] = {}

    def walk(section_type: type, prefix: str, panel: str | None, instance: Any) -> None:
        hints = typing.get_type_hints(section_type)
        for f in dataclasses.fields(section_type):
            key = f"{prefix}{f.name}"
            value = None if instance is None else getattr(instance, f.name)
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{key}.", SECTION_PANELS.get(f.name, panel), value)
                continue
            if "help" not in f.metadata:
                continue
            meta = f.metadata
            tp, extra = _cli_type(hints[f.name])
            flags = [meta["flag"] or f"--{f.name.replace('_', '-')}"]
            flags += [meta["short"]] if meta["short"] else []
            if tp is bool and meta["negatable"]:
                flags[0] = f"{flags[0]}/--no-{flags[0][2:]}"
            if tp in (int, float):
                extra.update({k: meta[k] for k in ("min", "max") if meta[k] is not None})
            default = value if isinstance(value, bool | int | float | str) else None
            shown = meta["group"] or panel
            option = typer.Option(*flags, help=meta["help"], rich_help_panel=shown, **extra)
            annotation = Annotated[tp | None, option]
            found[key] = ConfigOption(key, key.replace(".", "__"), annotation, shown, default)

    walk(config_type, "", panel, defaults)
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


def configured(cfg: Any, overrides: dict[str, Any]) -> Any:
    """A copy of the config dataclass ``cfg`` with the nested ``overrides`` applied (``dataclasses.replace``
    at every level; the values are already parsed and checked against the options' bounds)."""
    changes = {
        name: configured(getattr(cfg, name), value) if isinstance(value, dict)
        and dataclasses.is_dataclass(getattr(cfg, name)) else value
        for name, value in overrides.items()
    }
    return dataclasses.replace(cfg, **changes)


def with_config(config_type: type, keys: tuple[str, ...] | None = None, panel: str | None = None,
                defaults: Any = None) -> Callable[[F], F]:
    """Decorator adding the options of ``config_type``'s fields (:func:`config_options`; ``keys``: only
    these dotted keys) to a Typer command, which receives the given ones as ``overrides``, a nested dict to
    apply to its config with :func:`configured`: e.g. ``@with_config(BenchConfig) def bench(quick,
    overrides): cfg = configured(BenchConfig.quick() if quick else BenchConfig(), overrides)``."""
    options = config_options(config_type, panel, defaults)
    taken = options.values() if keys is None else [options[key] for key in keys]
    return with_options({o.param: o.annotation for o in taken}, "overrides",
                        lambda **given: overrides_from_options(given), {o.param: o.default for o in taken})


def _alias(key: str) -> Any:
    return TRAINING[key].annotation


#: ``--json`` of the commands that print a table otherwise
AsJson = Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of a table.")]
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
    options: dict[str, Any], name: str = "given", combine: Callable[..., Any] = dict,
    defaults: dict[str, Any] | None = None,
) -> Callable[[F], F]:
    """Decorator adding ``options`` (parameter name -> ``Annotated`` option type; default None, or as
    ``defaults`` says) to a Typer command.

    The command function declares its own parameters plus ``given: dict``; it receives the shared options'
    values in ``given`` (None = not given), e.g. ``@with_options(training_options("train")) def
    train(manifest, given): ...``. With ``name`` and ``combine`` it receives ``name=combine(**values)``
    instead (e.g. :func:`with_convention_options`).
    """

    def wrap(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != name]
        added = [
            inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=(defaults or {}).get(param),
                              annotation=annotation)
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

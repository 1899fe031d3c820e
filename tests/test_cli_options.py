"""The training commands' options come from the config's fields: every option a command lists is accepted
at a valid value and lands in its config key; a field added to a config section is an option and a config-file
key without touching the CLI. ``fit`` is replaced by a recorder: these tests parse and build configs only."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, get_args, get_origin

import pytest
import typer
import yaml
from typer.testing import CliRunner
from vidfast_cli import options as opt
from vidfast_cli.app import app
from vidfast_cli.commands.train import training_command

from vidfast.engine.config import RuntimeConfig, TrainConfig, option, save_config

runner = CliRunner()

#: a valid value of every free-text option (a new one fails the walk until it has an entry here)
TEXT_VALUES = {
    "model.arch": "resnet10",
    "runtime.device": "cpu",
    "runtime.checkpoint_every": "10m",
    "finetune.begin_module": "layer4",
    "data.convention": "imagenet",
}
PATH_KEYS = ("runtime.run_dir", "runtime.plan", "finetune.checkpoint", "finetune.inflate_from")


@pytest.fixture
def fits(monkeypatch, tmp_path) -> list[Any]:
    """The configs ``fit`` is called with (nothing is trained)."""
    import vidfast.engine.trainer

    calls: list[Any] = []

    def record(cfg):
        calls.append(cfg)
        return SimpleNamespace(status="completed", epochs_completed=0, steps=0, best_metric=None,
                               last_checkpoint=None, best_checkpoint=None, run_dir=tmp_path)

    monkeypatch.setattr(vidfast.engine.trainer, "fit", record)
    return calls


def _field_types(config_type: type, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (type, default) of every leaf field."""
    found = {}
    hints = typing.get_type_hints(config_type)
    for f in dataclasses.fields(config_type):
        if dataclasses.is_dataclass(hints[f.name]):
            found.update(_field_types(hints[f.name], f"{prefix}{f.name}."))
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            found[f"{prefix}{f.name}"] = (hints[f.name], default)
    return found


def _valid(key: str, tp: Any, default: Any, flag: str, negative: str | None,
           tmp_path: Path) -> tuple[list[str], Any]:
    """Arguments giving option ``flag`` (``negative``: its --no- form) a valid value other than the default,
    and the value the config should then hold."""
    if get_origin(tp) in (typing.Union, type(int | None)):
        (tp,) = [a for a in get_args(tp) if a is not type(None)]
    if tp is bool:
        return ([negative], False) if default and negative else ([flag], True)
    if get_origin(tp) is Literal:
        value = [v for v in get_args(tp) if v != default][-1]
        return [flag, value], value
    if get_origin(tp) is list:
        if get_args(tp)[0] is int:
            return [flag, "5", flag, "9"], [5, 9]
        return [flag, "0.4,0.5,0.6"], [0.4, 0.5, 0.6]
    if tp is int:
        return [flag, str((default or 0) + 2)], (default or 0) + 2
    if tp is float:
        return [flag, "0.5"], 0.5
    if key in PATH_KEYS:
        path = tmp_path / key.replace(".", "-")
        path.write_text("")
        return [flag, str(path)], str(path)
    return [flag, TEXT_VALUES[key]], TEXT_VALUES[key]


def _value(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


@pytest.mark.parametrize("command", ["pretrain", "train", "finetune"])
def test_every_option_a_training_command_lists_is_accepted_at_a_valid_value(command, fits, tmp_path):
    """All options at once (the few that exclude another, and --config, in runs of their own); each value
    must reach its config key."""
    click_command = typer.main.get_command(app).commands[command]
    types = _field_types(TrainConfig)
    by_param = {o.param: o.key for o in opt.TRAINING.values()}
    listed = [p for p in click_command.params if p.param_type_name == "option" and p.name != "help"]
    assert len(listed) >= 30
    together: list[tuple[list[str], str, Any]] = []
    alone = []
    for param in listed:
        if param.name == "config":
            config_file = tmp_path / "run.yaml"
            config_file.write_text("epochs: 3\n")
            alone.append((["--config", str(config_file)], "epochs", 3))
            continue
        key = by_param[param.name]
        tp, default = types[key]
        negative = param.secondary_opts[0] if param.secondary_opts else None
        args, expected = _valid(key, tp, default, param.opts[0], negative, tmp_path)
        exclusive = key in ("runtime.auto_resume", "finetune.inflate_from")  # of resume, checkpoint
        (alone if exclusive else together).append((args, key, expected))
    source = tmp_path / "source.pt"
    source.write_text("")
    for group in [together] + [[one] for one in alone]:
        args = [arg for option_args, _, _ in group for arg in option_args]
        if command == "finetune" and "--from" not in args and "--inflate-from" not in args:
            args += ["--from", str(source)]
        result = runner.invoke(app, [command, "manifest.csv", *args])
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        cfg = fits[-1]
        assert cfg.task == ("puzzle" if command == "pretrain" else "classify")
        for option_args, key, expected in group:
            assert _value(cfg, key) == expected, (option_args, key)


def test_pretrain_takes_no_classifier_clip_options(fits):
    """Flips and keyframe snapping are options of a classifier's clips: ``pretrain`` does not list them
    (it used to, and then failed on them: "unexpected options for the puzzle task: hflip")."""
    result = runner.invoke(app, ["pretrain", "--help"], env={"COLUMNS": "200"})
    assert "--hflip" not in result.stdout and "--keyframe-snap" not in result.stdout
    assert "--rotation-weight" in result.stdout
    result = runner.invoke(app, ["train", "manifest.csv", "--no-hflip", "--keyframe-snap", "16"])
    assert result.exit_code == 0, result.stderr
    assert fits[-1].data.clips.policy_options() == {"hflip": False, "keyframe_snap": 16}


@dataclass(frozen=True)
class _Runtime(RuntimeConfig):
    gradient_notes: int = option(3, min=1, help="How many gradient notes to keep (a field added in a test).")


@dataclass(frozen=True)
class _Extended(TrainConfig):
    runtime: _Runtime = field(default_factory=_Runtime)


def test_a_field_added_to_a_config_section_is_an_option_and_a_config_key(fits, tmp_path):
    extended = typer.Typer()
    extended.command("train")(training_command("train", "classify", "Train.", config_type=_Extended))
    extended.callback()(lambda: None)
    result = runner.invoke(extended, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--gradient-notes" in result.stdout
    assert "How many gradient notes to keep" in result.stdout

    assert runner.invoke(extended, ["train", "m.csv", "--gradient-notes", "7"]).exit_code == 0
    assert fits[-1].runtime.gradient_notes == 7
    save_config(fits[-1], tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["runtime"]["gradient_notes"] == 7

    (tmp_path / "run.yaml").write_text("runtime:\n  gradient_notes: 5\n")
    assert runner.invoke(extended, ["train", "m.csv", "--config", str(tmp_path / "run.yaml")]).exit_code == 0
    assert fits[-1].runtime.gradient_notes == 5
    assert runner.invoke(extended, ["train", "m.csv", "--gradient-notes", "0"]).exit_code == 2  # min=1
    (tmp_path / "bad.yaml").write_text("runtime:\n  gradient_notes: 0\n")
    result = runner.invoke(extended, ["train", "m.csv", "--config", str(tmp_path / "bad.yaml")])
    assert result.exit_code != 0 and "runtime.gradient_notes" in str(result.exception)


def test_help_text_flows_as_paragraphs():
    """A command's docstring is wrapped to the terminal, not at the source's line ends."""
    result = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "precision measured fastest among those whose convolutions pass" in result.stdout

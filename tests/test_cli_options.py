"""Every command's options come from its config's fields: every option a command lists is accepted at a
valid value and lands in its config key (or reaches the library call); a field added to a config section is an
option and a config-file key without touching the CLI. The library functions the commands call are replaced by
recorders: these tests parse and build configs only."""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import re
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

from vidfast.engine.config import Geometry, RuntimeConfig, TrainConfig, option, save_config

runner = CliRunner()

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




# --- every command ---------------------------------------------------------------------------------------
#
# One walk over every command the app lists: each option its --help shows is given a valid value (all at once,
# the few that exclude another in runs of their own); the library function the command calls is replaced by a
# recorder, and each value must arrive: in the config the command built where the option is a config field,
# else among the arguments the library was called with.

#: a valid value of every free-text option, by flag (a new one fails the walk until it has an entry here);
#: paths are made under tmp_path
TEXT = {
    "--arch": "resnet10", "--device": "cpu", "--checkpoint-every": "10m", "--ft-begin-module": "layer4",
    "--preset": "imagenet", "--split": "val", "--policy": "uniform", "--val-policy": "uniform",
    "--window": "2s", "--stride": "1s", "--format": "mpegts", "--batch": "4", "--clip": "8x32x32",
    "--exporter": "torchscript", "--backend": "pyav",
    "--calibration-split": "val", "--catalogues": "control", "--ks": "2,5", "--size": "48x48",
    "--codec": "vp9", "--catalogue": "control", "--gravity": "random", "--family": "torchvision",
}
#: what a text value arrives as where the command parses it before calling the library
PARSED = {"--batch": 4, "--clip": (8, 32, 32), "--catalogues": ("control",), "--ks": (2, 5),
          "--size": (48, 48)}
INPUTS = {"--onnx": "model.onnx", "--calibrate": "calibration.csv", "--pool": "pool.csv", "--labelled":
          "labelled.csv", "--test": "test.csv", "--annotations": "annotations.csv", "--plan": "plan.yaml",
          "--from": "source.pt", "--inflate-from": "resnet2d.pth", "--checkpoint": "model.pt"}
OUTPUTS = {"--timeline-out": "windows.csv", "--render": "drawn.mp4", "--out": "new/out",
           "--run-dir": "new/run"}
#: each command's arguments, and the options that go in runs of their own (they exclude another one)
ARGS = {
    "pretrain": ["manifest.csv"], "train": ["manifest.csv"], "finetune": ["manifest.csv"],
    "eval": ["manifest.csv"], "predict": ["a.mp4"], "export": [], "bench": [], "study": [], "demo": [],
    "info": [],
    "data index": ["folder", "videos"], "data synth": ["synth"], "data transcode": ["manifest.csv", "coded"],
    "models list": [], "models show": ["resnet18"], "models convert": ["source.pth", "converted.pt"],
}
ALONE = {"--auto-resume", "--inflate-from", "--onnx"}
#: options a command needs (added to a run that does not give them or an option excluding them)
NEEDS = {"finetune": ["--from", "source.pt"], "eval": ["--checkpoint", "model.pt"],
         "export": ["--checkpoint", "model.pt", "--out", "new/out"], "data index": ["--out", "new/out"],
         "info": ["--json"]}
TIMELINE = {"--timeline", "--window", "--stride", "--smooth", "--timeline-out", "--render", "--live",
            "--timeout", "--format"}


def _commands(group: Any = None, prefix: str = "") -> dict[str, Any]:
    """Every command of the app (``data index``, ...) by name."""
    group = group or typer.main.get_command(app)
    found = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found.update(_commands(command, f"{prefix}{name} "))
        else:
            found[f"{prefix}{name}"] = command
    return found


@pytest.fixture
def library(monkeypatch, tmp_path) -> list[tuple[str, tuple, dict]]:
    """The calls into the library every command makes, recorded instead of run: (name, args, kwargs)."""
    calls: list[tuple[str, tuple, dict]] = []

    def recorder(name: str, result: Any) -> Any:
        def record(*args, **kwargs):
            calls.append((name, args, kwargs))
            return result(*args, **kwargs) if callable(result) else result
        return record

    def study(cfg, say=None):
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        (Path(cfg.out) / "report.md").write_text("report")
        return {"catalogues": [], "seconds": 0.0}

    finished = SimpleNamespace(status="completed", epochs_completed=0, steps=0, best_metric=None,
                               last_checkpoint=None, best_checkpoint=None, run_dir=tmp_path)
    report = SimpleNamespace(num_unlabelled=0, num_videos=0, to_dict=dict)
    timeline = SimpleNamespace(source="a.mp4", windows=[], error=None, to_dict=lambda *a: {},
                               stats=SimpleNamespace(summary=str))
    demo = SimpleNamespace(num_classes=2, num_pool_videos=1, num_train_videos=1, num_val_videos=1, verdict="",
                           seconds={})
    converted = SimpleNamespace(identity=SimpleNamespace(arch="resnet18", origin="vidfast", num_classes=2),
                                convention=SimpleNamespace(describe=str))
    for module, name, result in [  # modules by name: vidfast.models.identify is also a function
        ("vidfast.engine.trainer", "fit", finished),
        ("vidfast.engine.evaluate", "evaluate", report),
        ("vidfast.deploy.predict", "OnnxEnsemble", None),
        ("vidfast.deploy.predict", "open_scorer", None),
        ("vidfast.deploy.predict", "predict_videos", []),
        ("vidfast.deploy", "OnnxClassifier", None),
        ("vidfast.deploy.timeline", "OnnxClipScorer", SimpleNamespace(class_names=["a"])),
        ("vidfast.deploy.timeline", "run_timeline", timeline),
        ("vidfast.deploy.timeline", "write_timeline_csv", None),
        ("vidfast.export", "export_onnx", SimpleNamespace(summary=list)),
        ("vidfast.bench", "run_bench", []),
        ("vidfast.study.runner", "run_study", study),
        ("vidfast.demo", "run_demo", demo),
        ("vidfast.demo", "format_summary", []),
        ("vidfast", "info", {}),
        ("vidfast.data.manifest", "build_manifest", None),
        ("vidfast.data.manifest", "summarize", []),
        ("vidfast.data.synth", "synthesize_dataset", []),
        ("vidfast.data.transcode", "transcode_manifest", (None, 0)),
        ("vidfast.models", "list_models", []),
        ("vidfast.models.identify", "convert_checkpoint", converted),
    ]:
        monkeypatch.setattr(importlib.import_module(module), name, recorder(name, result))
    return calls


def _value_of(param: Any, tmp_path: Path, baseline: Any) -> tuple[list[str], Any]:
    """Arguments giving option ``param`` a valid value other than its default (``baseline``: the value the
    command uses without it), and that value as the command should pass it on."""
    flag, tp = param.opts[0], param.type_descriptor.annotation
    if param.is_flag:
        if param.secondary_opts and (baseline is True or param.default is True):
            return [param.secondary_opts[0]], False
        return [flag], True
    if get_origin(tp) is Literal:
        value = [v for v in get_args(tp) if v != baseline][-1]
        return [flag, value], value
    if param.multiple:
        if tp == list[int]:
            return [flag, "5", flag, "9"], [5, 9]
        paths = [tmp_path / "one.pt", tmp_path / "two.pt"]
        return [flag, str(paths[0]), flag, str(paths[1])], paths
    if param.callback is not None and param.callback.__name__ == "_numbers":
        return [flag, "0.4,0.5,0.6"], [0.4, 0.5, 0.6]
    if tp is int:
        value = (baseline if isinstance(baseline, int) else param.min or 0) + 2
        return [flag, str(value)], value
    if tp is float:
        return [flag, "0.5"], 0.5
    if flag in INPUTS or flag in OUTPUTS:
        path = tmp_path / {**INPUTS, **OUTPUTS}[flag]
        return [flag, str(path)], path
    return [flag, TEXT[flag]], PARSED.get(flag, TEXT[flag])


def _same(got: Any, expected: Any) -> bool:
    if isinstance(expected, Path) or isinstance(got, Path):
        return str(got) == str(expected)
    if isinstance(expected, list | tuple) and isinstance(got, list | tuple):
        return len(got) == len(expected) and all(_same(g, e) for g, e in zip(got, expected, strict=True))
    return got == expected


def _config_value(config: Any, param_name: str) -> tuple[bool, Any]:
    """(whether ``param_name`` names a field of the config dataclass ``config``, its value)."""
    value = config
    for part in param_name.split("__"):
        if not dataclasses.is_dataclass(value) or part not in {f.name for f in dataclasses.fields(value)}:
            return False, None
        value = getattr(value, part)
    return True, value


def _parts(value: Any) -> list[Any]:
    """``value`` and, if it is a dataclass, the dataclasses in its fields (an EvalConfig's convention)."""
    if not dataclasses.is_dataclass(value):
        return [value]
    return [value, *(p for f in dataclasses.fields(value) for p in _parts(getattr(value, f.name))
                     if dataclasses.is_dataclass(p))]


def _arrived(calls: list[tuple[str, tuple, dict]], param: Any, expected: Any) -> bool:
    """Whether the value of option ``param`` reached the library: in the config it was called with where the
    option is a config field, else as the keyword argument of its name or among the call's arguments (a
    switch of the command's own, such as --json, is not looked for)."""
    arguments = [a for _, args, kwargs in calls for a in (*args, *kwargs.values())]
    for config in (a for a in arguments if dataclasses.is_dataclass(a)):
        is_field, value = _config_value(config, param.name)
        if is_field:
            return _same(value, expected)
    named = [kwargs[param.name] for _, _, kwargs in calls if param.name in kwargs]
    named += [v for a in arguments for part in _parts(a) for is_field, v in [_config_value(part, param.name)]
              if is_field]  # e.g. the input convention's fields
    if named:
        return any(_same(value, expected) for value in named)
    return isinstance(expected, bool) or any(_same(a, expected) for a in arguments)


def walk_options(name: str, calls: list, tmp_path: Path) -> int:
    """Run command ``name`` with every option it lists at a valid value; assert that each is accepted and
    arrives. Returns the number of options walked."""
    command = _commands()[name]
    listed = [p for p in command.params if p.param_type_name == "option" and p.name != "help"]
    for path in [*INPUTS.values(), "model.pt"]:
        (tmp_path / path).write_text("")
    needed = [a if a.startswith("-") else str(tmp_path / a) for a in NEEDS.get(name, [])]
    base_args = [*name.split(), *ARGS[name]]
    result = runner.invoke(app, [*base_args, *needed])
    assert result.exit_code == 0, (name, result.stdout, result.stderr)
    arguments = [a for _, args, kwargs in calls for a in (*args, *kwargs.values())]
    baseline = [a for a in arguments if dataclasses.is_dataclass(a)]
    together, alone, timeline = [], [], []
    for param in listed:
        known = [v for is_field, v in (_config_value(c, param.name) for c in baseline) if is_field]
        if param.name == "config":
            config_file = tmp_path / "run.yaml"
            config_file.write_text("epochs: 3\n")
            alone.append((["--config", str(config_file)], SimpleNamespace(name="epochs"), 3))
            continue
        args, expected = _value_of(param, tmp_path, known[0] if known else param.default)
        entry = (args, param, expected)
        if param.opts[0] in ALONE:
            alone.append(entry)
        elif name == "predict" and param.opts[0] in TIMELINE:
            timeline.append(entry)
        else:
            together.append(entry)
    onnx = ["--onnx", str(tmp_path / "model.onnx")]
    groups = [(together, []), *[([one], []) for one in alone]] + ([(timeline, onnx)] if timeline else [])
    for group, extra in groups:
        args = [arg for option_args, _, _ in group for arg in option_args] + extra
        if not {needed[0] if needed else None, "--onnx", "--inflate-from"} & set(args):
            args += needed
        calls.clear()
        result = runner.invoke(app, [*base_args, *args])
        assert result.exit_code == 0, (name, args, result.stdout, result.stderr)
        for option_args, param, expected in group:
            assert _arrived(calls, param, expected), (name, option_args, calls)
    return len(listed)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_a_command_lists_is_accepted_at_a_valid_value_and_arrives(name, library, tmp_path,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    walked = walk_options(name, library, tmp_path)
    assert walked >= {"pretrain": 30, "train": 30, "finetune": 30, "eval": 20, "predict": 20, "bench": 10,
                      "study": 15, "demo": 10}.get(name, 0)


def test_the_walk_fails_on_an_option_whose_value_is_dropped(library, tmp_path, monkeypatch):
    """A command that loses a value (here: every ``clips``) fails the walk."""
    configured = opt.configured
    monkeypatch.setattr(opt, "configured", lambda cfg, overrides: configured(
        cfg, {k: v for k, v in overrides.items() if k != "clips"}))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AssertionError, match="--clips"):
        walk_options("eval", library, tmp_path)


@dataclass(frozen=True)
class _Sizes:
    frames: int = option(8, min=1, help="Frames per video (a field added in a test).")
    geometry: Geometry = Geometry()


def test_a_field_added_to_a_commands_config_is_an_option():
    """Commands other than training take their options from their config's fields the same way: a field
    with ``option(...)`` and the shared Geometry group appear, parsed, checked and applied."""
    seen = []
    sized = typer.Typer()

    @sized.command("run")
    @opt.with_config(_Sizes)
    def run(overrides: Any = None) -> None:
        seen.append(opt.configured(_Sizes(), overrides))

    sized.callback()(lambda: None)
    shown = runner.invoke(sized, ["run", "--help"], env={"COLUMNS": "200"}).stdout
    assert "Frames per video (a field added in a test)." in shown and "--batch-size" in shown
    assert runner.invoke(sized, ["run", "--frames", "3", "--arch", "resnet10"]).exit_code == 0
    assert seen[-1] == _Sizes(frames=3, geometry=Geometry(arch="resnet10"))
    assert runner.invoke(sized, ["run", "--frames", "0"]).exit_code == 2  # min=1


def test_help_text_flows_as_paragraphs():
    """A command's docstring is wrapped to the terminal, not at the source's line ends."""
    result = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "precision measured fastest among those whose convolutions pass" in result.stdout


def _hard_wraps(command: list[str], application: typer.Typer = app) -> list[str]:
    """The lines of ``vidfast COMMAND --help`` on a 1000-column terminal that break a sentence: a description
    line not ending a sentence, or a table row continuing the cell above (only a line break in the source
    makes one that wide)."""
    result = runner.invoke(application, [*command, "--help"], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    description = itertools.takewhile(lambda line: not line.startswith("╭"), lines[2:])
    text = [line.strip() for line in description]
    broken = [line for line in text if line and not re.search(r"[.:!?]$", line)]
    return broken + [line.strip("│ ") for line in lines if re.match(r"│\s{6,}\S", line)]


@pytest.mark.parametrize("command", [[], ["data"], ["models"], *(n.split() for n in sorted(_commands()))],
                         ids=lambda command: " ".join(command) or "vidfast")
def test_no_help_line_breaks_a_sentence(command):
    assert not _hard_wraps(command)


def test_the_wrap_check_finds_a_line_break_in_a_sentence():
    wrapped = typer.Typer()
    wrapped.command("report", help="Report the versions\nand the devices.")(lambda: None)
    wrapped.command("list", help="List the devices:\n\nthe first one\n\nand the others.")(lambda: None)
    assert _hard_wraps([], wrapped) == ["and the devices."]  # the command list keeps the line break
    assert _hard_wraps(["list"], wrapped) == ["the first one"]  # a paragraph ending mid-sentence

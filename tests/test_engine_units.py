"""Unit tests of the engine parts that need no model zoo or loader: config, optim/schedules, checkpoint,
logging."""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from vidfast.engine.checkpoint import atomic_save, capture_rng_state, restore_rng_state, seed_everything
from vidfast.engine.config import (
    ConfigError,
    OptimConfig,
    TrainConfig,
    config_from_dict,
    resolve_config,
    save_config,
)
from vidfast.engine.distributed import DistInfo, all_reduce_sum, any_rank
from vidfast.engine.optim import Schedule, build_optimizer
from vidfast.engine.runlog import RunLogger, read_metrics

# --- config -------------------------------------------------------------------------------------------------


def test_config_precedence_defaults_file_cli(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("epochs: 7\noptim:\n  lr: 0.05\n  milestones: [3, 5]\nmodel:\n  arch: resnet10\n")
    cfg = resolve_config("classify", yaml_file, {"optim": {"lr": 0.2}, "runtime": {"amp": False}})
    assert cfg.epochs == 7  # file over default
    assert cfg.optim.lr == 0.2  # CLI over file
    assert cfg.optim.milestones == [3, 5]
    assert cfg.model.arch == "resnet10"
    assert cfg.runtime.amp is False
    assert cfg.optim.momentum == 0.9 and cfg.optim.weight_decay == 1e-3  # CVPR 2018 defaults untouched

    toml_file = tmp_path / "run.toml"
    toml_file.write_text('epochs = 3\n[data]\nclip_len = 8\nsize = "32"\n[runtime]\nchannels_last = false\n')
    cfg = resolve_config("puzzle", toml_file)
    assert (cfg.task, cfg.epochs, cfg.data.clip_len, cfg.data.size) == ("puzzle", 3, 8, 32)
    assert cfg.runtime.channels_last is False


def test_config_roundtrip_through_yaml_and_dict(tmp_path):
    cfg = resolve_config("classify", None, {"model": {"widen_factor": 0.25, "kwargs": {"dropout": 0.1}}})
    save_config(cfg, tmp_path / "config.yaml")
    again = resolve_config("classify", tmp_path / "config.yaml")
    assert again == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.model.model_kwargs() == {"dropout": 0.1, "widen_factor": 0.25}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("optim:\n  lrr: 0.1\n", "optim.lrr"),
        ("epochs: many\n", "epochs"),
        ("runtime:\n  amp: maybe\n", "runtime.amp"),
        ("optim: 3\n", "optim"),
        ("optim:\n  optimizer: adagrad\n", "adagrad"),
        ("- a\n- b\n", "mapping"),
        ("optim: [unclosed\n", "cannot parse"),
    ],
)
def test_config_errors_name_the_key(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        resolve_config("classify", path)


def test_config_missing_and_unknown_suffix(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        resolve_config("classify", tmp_path / "nope.yaml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ConfigError, match="yaml"):
        resolve_config("classify", tmp_path / "c.json")


def test_the_puzzle_sampler_section_is_typed_and_the_geometry_is_the_data_sections(tmp_path):
    """``puzzle.sampler`` holds the sampler's choices, checked like every section (an unknown or moved key,
    a bad value or a contradiction is a ConfigError naming it); the cubes are ``data.clip_len`` frames
    ``data.frame_step`` apart, ``data.size`` square, derived by ``puzzle_config`` alone."""
    from vidfast.engine.build import puzzle_config
    from vidfast.puzzle import PuzzleConfig, PuzzleOptions

    cfg = resolve_config("puzzle", overrides={"data": {"clip_len": 4, "size": 24, "frame_step": 2},
                                              "puzzle": {"sampler": {"source_frames": "40", "jitter": "no"}}})
    assert cfg.puzzle.sampler == PuzzleOptions(source_frames=40, jitter=False)
    assert puzzle_config(cfg) == PuzzleConfig(source_frames=40, jitter=False, cube_len=4, out_size=24,
                                              frame_step=2)
    assert config_from_dict(cfg.to_dict()) == cfg
    for sampler, message in [
        ({"wobble": 1}, r"unknown config key 'puzzle.sampler.wobble'"),
        ({"cube_len": 8}, r"puzzle.sampler.cube_len'.*data.clip_len"),
        ({"out_size": 8}, r"puzzle.sampler.out_size'.*data.size"),
        ({"clip_len": 32}, r"puzzle.sampler.clip_len'.*renamed puzzle.sampler.source_frames"),
        ({"rotation": "sometimes"}, "puzzle.sampler.rotation"),
        ({"cube_size": 200}, r"puzzle.sampler: need 0 < cube_size"),
        ({"source_frames": 2}, r"puzzle.sampler: source_frames must be >= 4"),
    ]:
        path = tmp_path / "sampler.yaml"
        path.write_text(yaml.safe_dump({"puzzle": {"sampler": sampler}}))
        with pytest.raises(ConfigError, match=message):
            resolve_config("puzzle", path)


def test_an_older_puzzle_checkpoint_config_and_plan_are_read_as_this_vidfast_writes_them():
    """A checkpoint of an older vidfast records the cubes' geometry in ``puzzle.sampler`` (over the data
    section's) and ``source_frames`` as ``clip_len``, in its config and in its plan's options: both are read
    as the run they describe."""
    from vidfast.engine.build import puzzle_config
    from vidfast.engine.plan import RunPlan
    from vidfast.puzzle import PuzzleOptions

    old = resolve_config("puzzle").to_dict()
    old["data"].update(clip_len=16, size=48)
    old["puzzle"]["sampler"] = {"cube_len": 8, "out_size": 32, "clip_len": 40, "spatial_prob": 1.0}
    cfg = config_from_dict(old)
    assert (cfg.data.clip_len, cfg.data.size) == (8, 32)
    assert cfg.puzzle.sampler == PuzzleOptions(source_frames=40, spatial_prob=1.0)
    sampler = puzzle_config(cfg)
    assert (sampler.cube_len, sampler.out_size, sampler.source_frames) == (8, 32, 40)
    classify = resolve_config("classify").to_dict()
    classify["puzzle"]["sampler"] = {"cube_len": 8}  # not this task's: dropped, the clips stay
    assert config_from_dict(classify).data.clip_len == 16

    plan = {"task": "puzzle", "arch": "resnet18", "model_kwargs": {}, "num_classes": 0, "class_names": [],
            "convention": {}, "precision": "fp32", "clip_len": 8, "size": 32, "frame_step": 1,
            "sample_shape": [4, 3, 8, 32, 32], "loader": {},
            "options": {**dataclasses.asdict(sampler.options), "cube_len": 8, "out_size": 32,
                        "frame_step": 1}}
    plan["options"]["clip_len"] = plan["options"].pop("source_frames")
    assert RunPlan.from_dict(plan, "old.pt").options == dataclasses.asdict(sampler.options)


# --- optimizers and schedules -------------------------------------------------------------------------------


def _opt(**kw) -> tuple[torch.optim.Optimizer, OptimConfig]:
    cfg = OptimConfig(**kw)
    model = nn.Linear(3, 2)
    return build_optimizer(model.parameters(), cfg), cfg


def test_build_optimizer_sgd_and_adamw():
    opt, _ = _opt(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.1,
        0.9,
        True,
        1e-3,
    )
    opt, _ = _opt(optimizer="adamw", lr=1e-3, weight_decay=0.05, betas=[0.8, 0.99])
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["betas"] == (0.8, 0.99)


def test_build_optimizer_keeps_group_rates_and_drops_frozen():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    a.weight.requires_grad_(False)
    opt = build_optimizer(
        [{"params": list(a.parameters()), "lr": 0.01}, {"params": list(b.parameters())}], OptimConfig(lr=0.1)
    )
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]
    assert len(opt.param_groups[0]["params"]) == 1  # frozen weight dropped
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(frozen.parameters(), OptimConfig())


def _lrs(schedule: Schedule, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(schedule.lr)
        schedule.step()
    return out


def test_schedule_warmup_then_multistep():
    opt, cfg = _opt(
        lr=1.0, schedule="multistep", milestones=[2, 3], gamma=0.1, warmup_epochs=1, warmup_start_factor=0.0
    )
    lrs = _lrs(Schedule(opt, cfg, steps_per_epoch=4, epochs=4), 16)
    assert lrs[:4] == pytest.approx([0.0, 0.25, 0.5, 0.75])  # linear warmup over epoch 0
    assert lrs[4:8] == pytest.approx([1.0] * 4)
    assert lrs[8:12] == pytest.approx([0.1] * 4) and lrs[12:] == pytest.approx([0.01] * 4)


def test_schedule_step_and_cosine():
    opt, cfg = _opt(lr=1.0, schedule="step", step_size=2, gamma=0.5)
    assert _lrs(Schedule(opt, cfg, 1, 6), 6) == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    opt, cfg = _opt(lr=1.0, schedule="cosine", min_lr=0.1)
    lrs = _lrs(Schedule(opt, cfg, 2, 2), 5)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(0.1 + 0.9 * 0.5)  # half way
    assert lrs[4] == pytest.approx(0.1)  # floor at the end
    assert all(x >= y for x, y in zip(lrs, lrs[1:], strict=False))


def test_schedule_plateau_and_state_roundtrip():
    opt, cfg = _opt(lr=1.0, schedule="plateau", plateau_patience=1, gamma=0.1)
    sched = Schedule(opt, cfg, 1, 10)
    for metric in [1.0, 0.5, 0.6, 0.6]:  # improves, then 2 bad epochs > patience 1
        sched.epoch_end(metric)
    assert sched.lr == pytest.approx(0.1)
    state = sched.state_dict()
    opt2, _ = _opt(lr=1.0)
    restored = Schedule(opt2, cfg, 1, 10)
    restored.load_state_dict(state)
    assert restored.lr == pytest.approx(0.1) and restored.state_dict() == state
    restored.epoch_end(math.nan)  # ignored
    assert restored.state_dict() == state


# --- checkpoint ---------------------------------------------------------------------------------------------


def test_atomic_save_replaces_and_loads_weights_only(tmp_path):
    path = tmp_path / "sub" / "last.pt"
    atomic_save({"a": torch.arange(3), "epoch": 1, "names": ["x"]}, path)
    atomic_save({"a": torch.arange(4), "epoch": 2, "names": ["y"], "rng": capture_rng_state()}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 2 and loaded["a"].tolist() == [0, 1, 2, 3]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left


def test_atomic_save_failure_keeps_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled by torch.save
        atomic_save({"epoch": 2, "bad": lambda: 0}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_rng_state_roundtrip_through_file(tmp_path):
    seed_everything(123)
    state = capture_rng_state()
    atomic_save({"rng": state}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(2).tolist())
    seed_everything(7)  # scramble
    restore_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(2).tolist()) == expected


# --- distributed helpers (single process) -------------------------------------------------------------------


def test_single_process_reductions_are_identity():
    info = DistInfo()
    assert not info.enabled and info.is_main
    assert all_reduce_sum([1.0, 2.5], torch.device("cpu"), info) == [1.0, 2.5]
    assert any_rank([True, False], torch.device("cpu"), info) == [True, False]


def test_one_rank_notion_from_torchrun_environment(monkeypatch):
    """torchrun's variables, the process group and the engine's DistInfo all answer as a ``Rank``."""
    from vidfast.ranks import Rank, current_rank, launched_rank

    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert launched_rank() == Rank(2, 4) and launched_rank().enabled and not launched_rank().is_main
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert launched_rank() == Rank() == current_rank() and Rank().is_main
    assert isinstance(DistInfo(rank=1, world_size=2), Rank) and not DistInfo(rank=1, world_size=2).is_main


# --- logging ------------------------------------------------------------------------------------------------


def test_run_logger_csv_plain_progress_and_curves(tmp_path, capsys):
    logger = RunLogger(tmp_path, progress="plain", tensorboard=True, log_every=2)
    for epoch in (1, 2):
        bar = logger.epoch_progress(f"epoch {epoch}/2", total_steps=4)
        for _ in range(4):
            bar.update(8, loss=1.0 / epoch, acc=0.5)
        bar.close()
        logger.write_metrics(
            {
                "epoch": epoch,
                "step": 4 * epoch,
                "train_loss": 1.0 / epoch,
                "train_acc": 0.5,
                "val_acc": 0.4 + 0.1 * epoch,
            }
        )
    png = logger.close(plots=True)
    out = capsys.readouterr().out
    assert "epoch 1/2: 2/4 loss 1.0000 acc 0.500" in out and "clips/s" in out and "eta" in out
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1.0, 2.0] and rows[1]["val_acc"] == pytest.approx(0.6)
    assert rows[0]["val_loss"] is None
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())
    assert "epoch 2/2: 4/4" in (tmp_path / "train.log").read_text()
    # resuming appends to the CSV
    logger = RunLogger(tmp_path, progress="none", tensorboard=False, append=True)
    logger.write_metrics({"epoch": 3, "train_loss": 0.3})
    logger.close(plots=False)
    assert len(read_metrics(tmp_path / "metrics.csv")) == 3
    with pytest.raises(KeyError):
        RunLogger(tmp_path / "x", progress="none", tensorboard=False).write_metrics({"bogus": 1})


def test_inactive_logger_writes_nothing(tmp_path):
    logger = RunLogger(tmp_path / "run", active=False)
    logger.info("hello")
    logger.write_metrics({"epoch": 1})
    assert logger.close() is None
    assert not (tmp_path / "run").exists()


def test_stop_request_turns_signals_into_a_flag():
    from vidfast.engine.signals import StopRequest

    previous = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"
        os.kill(os.getpid(), signal.SIGTERM)  # repeated: still a graceful stop
        assert stop.requested == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C while already stopping aborts at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_train_config_defaults_are_the_cvpr2018_setup():
    cfg = TrainConfig()
    assert (cfg.optim.optimizer, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (
        "sgd",
        0.1,
        0.9,
        1e-3,
    )
    assert cfg.data.clip_len == 16 and cfg.data.size == 112
    assert cfg.runtime.amp is None and cfg.runtime.channels_last  # precision measured


def test_rich_progress_runs(tmp_path):
    logger = RunLogger(tmp_path, progress="rich", tensorboard=False)
    bar = logger.epoch_progress("epoch 1/1", total_steps=3, start_step=1)
    for _ in range(2):
        bar.update(4, loss=0.5, acc=1.0)
    bar.close()
    assert bar.done == 3 and bar.clips == 8 and bar.clips_per_s > 0
    logger.close(plots=False)


def test_blank_batches_fit_their_task_and_model():
    """The placeholder of a DDP idle step has the shapes and label keys its task's step needs."""
    from vidfast.engine.tasks import ClassifyTask, PuzzleTask
    from vidfast.models import PuzzleNet, create_model
    from vidfast.puzzle import PuzzleConfig

    cpu = torch.device("cpu")
    classifier = create_model("resnet10", num_classes=3, widen_factor=0.25).eval()
    classify = ClassifyTask(clip_len=8, size=32)
    assert classify.sample_shape == (3, 8, 32, 32)
    out = classify.step(classifier, classify.blank_batch(), cpu, True)
    assert out.count == 1 and torch.isfinite(out.loss)
    puzzle = PuzzleNet(create_model("resnet10", widen_factor=0.25), hidden=16).eval()
    task = PuzzleTask(puzzle=PuzzleConfig(cube_len=8, out_size=32))
    assert task.sample_shape == (4, 3, 8, 32, 32)
    out = task.step(puzzle, task.blank_batch(2), cpu, True)
    assert out.count == 2 and out.rot_count == 8 and torch.isfinite(out.loss)

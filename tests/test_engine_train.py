"""End-to-end tests of ``vidfast.engine.fit``: learning, exact resume, signals, NaN, DDP on 2 gloo ranks.

Data: tiny videos of a bar sweeping left or right over a random background (32x32, 16 frames), so a 3D CNN
must use time to tell the classes apart; models are ``resnet18`` at ``widen_factor=0.25`` on 8x32x32 clips.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from helpers import write_bar_videos

from vidfast.data.manifest import build_manifest
from vidfast.engine import TrainingDiverged, fit, resolve_config
from vidfast.engine.config import TrainConfig
from vidfast.engine.plan import PlanMismatch
from vidfast.engine.tasks import ClassifyTask
from vidfast.errors import DataError
from vidfast.models import read_checkpoint

CONTRACT_KEYS = {
    "arch",
    "model_kwargs",
    "task",
    "num_classes",
    "class_names",
    "state_dict",
    "data",
    "optimizer",
    "scheduler",
    "scaler",
    "epoch",
    "step",
    "rng",
    "config",
    "best_metric",
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bars")
    write_bar_videos(root / "videos")
    build_manifest("folder", root / "videos", root / "manifest.csv", val_fraction=0.25, progress=False)
    return root / "manifest.csv"


def tiny_config(manifest: Path, run_dir: Path, epochs: int = 2, **sections) -> TrainConfig:
    overrides = {
        "epochs": epochs,
        "data": {
            "manifest": str(manifest),
            "clip_len": 8,
            "size": 32,
            "batch_size": 8,
            "workers": 0,
            "clips": {"hflip": False},
        },
        "model": {"widen_factor": 0.25},
        "optim": {"optimizer": "adamw", "lr": 2e-3, "schedule": "cosine"},
        "runtime": {"run_dir": str(run_dir), "tensorboard": False, "progress": "none", "plots": False},
    }
    for section, values in sections.items():
        overrides.setdefault(section, {}).update(values)
    return resolve_config("classify", None, overrides)


@pytest.mark.slow
def test_train_learns_motion_and_writes_the_run_dir(manifest, tmp_path):
    cfg = tiny_config(manifest, tmp_path / "run", epochs=6, runtime={"plots": True, "tensorboard": True})
    result = fit(cfg)
    assert result.status == "completed" and result.epochs_completed == 6
    assert result.best_metric is not None and result.best_metric >= 0.75  # chance is 0.5 (12 val videos)
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.csv", "train.log", "curves.png"):
        assert (tmp_path / "run" / name).is_file(), name
    assert any((tmp_path / "run" / "tb").iterdir())
    ckpt = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert CONTRACT_KEYS <= set(ckpt)
    assert (ckpt["task"], ckpt["arch"], ckpt["num_classes"], ckpt["class_names"]) == (
        "classify",
        "resnet18",
        2,
        ["left", "right"],
    )
    assert ckpt["model_kwargs"] == {"widen_factor": 0.25} and ckpt["data"]["clip_len"] == 8
    assert ckpt["best_metric"] == pytest.approx(result.best_metric)
    assert len(result.history) == 6 and all("val_acc" in row for row in result.history)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def test_resume_and_a_fresh_run_from_the_plan_match_the_uninterrupted_run(manifest, tmp_path):
    """Under --deterministic, a run stopped by SIGTERM and resumed, and a fresh run from the first run's
    recorded plan (its measured precision reused, not measured again), end with the first run's weights."""
    det = {"deterministic": True}
    full = fit(tiny_config(manifest, tmp_path / "full", runtime=det))
    assert full.status == "completed"
    recorded = yaml.safe_load((tmp_path / "full" / "plan.yaml").read_text())
    assert recorded == read_checkpoint(tmp_path / "full" / "last.pt")["plan"]
    assert (recorded["arch"], recorded["model_kwargs"], recorded["sample_shape"]) == (
        "resnet18", {"widen_factor": 0.25}, [3, 8, 32, 32])
    assert recorded["precision"] in ("fp32", "bf16")
    from_plan = {**det, "plan": str(tmp_path / "full" / "plan.yaml")}
    again = fit(tiny_config(manifest, tmp_path / "again", runtime=from_plan))
    assert again.steps == full.steps
    assert yaml.safe_load((tmp_path / "again" / "plan.yaml").read_text()) == recorded

    def stop_at_step_3(event):
        if event.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    cfg = tiny_config(manifest, tmp_path / "split", runtime=det)
    part = fit(cfg, callbacks=[stop_at_step_3])
    assert part.status == "interrupted" and part.steps == 3
    saved = read_checkpoint(tmp_path / "split" / "last.pt")
    assert (saved["epoch"], saved["step"], saved["batch_in_epoch"]) == (0, 3, 3)
    resumed = fit(tiny_config(manifest, tmp_path / "split", runtime={**det, "resume": True}))
    assert resumed.status == "completed" and resumed.steps == full.steps
    a = _state(tmp_path / "full" / "last.pt")
    for other in ("split", "again"):
        b = _state(tmp_path / other / "last.pt")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (other, key)
    # the CSV of the resumed run holds every epoch once
    assert (tmp_path / "split" / "metrics.csv").read_text().count("\n") == 1 + 2


def test_the_config_is_unchanged_by_a_run_and_the_plan_records_what_it_used(manifest, tmp_path):
    """A run and a fine-tuning run leave their config objects as they were (the fine-tuning source's model
    goes into the plan, not into ``model.*``); a recorded plan that the config would not make is refused,
    naming what differs."""
    cfg = tiny_config(manifest, tmp_path / "run", epochs=1)
    before = copy.deepcopy(cfg)
    fit(cfg)
    assert cfg == before
    tune = tiny_config(manifest, tmp_path / "tune", epochs=1, model={"widen_factor": None},
                       finetune={"checkpoint": str(tmp_path / "run" / "last.pt")})
    before = copy.deepcopy(tune)
    fit(tune)
    assert tune == before and tune.model.widen_factor is None
    plan = yaml.safe_load((tmp_path / "tune" / "plan.yaml").read_text())
    assert (plan["arch"], plan["model_kwargs"]) == ("resnet18", {"widen_factor": 0.25})
    assert read_checkpoint(tmp_path / "tune" / "last.pt")["model_kwargs"] == {"widen_factor": 0.25}
    other = tiny_config(manifest, tmp_path / "other", epochs=1, data={"clip_len": 4},
                        runtime={"plan": str(tmp_path / "run" / "last.pt")})
    with pytest.raises(PlanMismatch, match="has clip_len 8 but this run has 4"):
        fit(other)


def test_an_older_puzzle_checkpoint_resumes_and_is_scored(manifest, tmp_path):
    """A puzzle checkpoint as an older vidfast wrote it (the cubes' geometry in ``puzzle.sampler`` of its
    config and in its plan's options, ``source_frames`` named ``clip_len``) resumes under today's config of
    the same run, and ``evaluate_puzzle`` reads its config."""
    from vidfast.engine.evaluate import PuzzleEvalConfig, evaluate_puzzle

    cfg = resolve_config("puzzle", overrides={
        "epochs": 1,
        "model": {"arch": "resnet10", "widen_factor": 0.25},
        "data": {"manifest": str(manifest), "clip_len": 4, "size": 16, "batch_size": 4, "workers": 0},
        "puzzle": {"sampler": {"source_frames": 16}},
        "runtime": {"run_dir": str(tmp_path / "run"), "progress": "none", "tensorboard": False,
                    "plots": False, "amp": False},
    })

    def stop_at_step_2(event):
        if event.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    assert fit(cfg, callbacks=[stop_at_step_2]).status == "interrupted"
    last = tmp_path / "run" / "last.pt"
    ckpt = read_checkpoint(last)
    plan, options = ckpt["plan"], ckpt["plan"]["options"]
    assert (plan["clip_len"], plan["size"], plan["sample_shape"]) == (4, 16, [4, 3, 4, 16, 16])
    assert options["source_frames"] == 16 and "cube_len" not in options  # the plan's clip_len, size
    assert yaml.safe_load((tmp_path / "run" / "plan.yaml").read_text()) == plan
    old_sampler = {"cube_len": 4, "out_size": 16, "frame_step": 1, "clip_len": options.pop("source_frames")}
    ckpt["plan"]["options"] = {**options, **old_sampler}
    ckpt["config"]["puzzle"]["sampler"] = {**ckpt["config"]["puzzle"]["sampler"], **old_sampler}
    del ckpt["config"]["puzzle"]["sampler"]["source_frames"]
    ckpt["config"]["data"].update(clip_len=16, size=80)  # overridden by the old sampler's
    torch.save(ckpt, last)
    resumed = fit(dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, resume=True)))
    assert resumed.status == "completed" and resumed.steps > 2
    scores = evaluate_puzzle(PuzzleEvalConfig(str(manifest), str(last), "val", puzzles=4, device="cpu"))
    kinds = ("spatial", "temporal")
    assert set(scores) == {f"val_{kind}_{what}" for kind in kinds for what in ("acc", "rot_acc")}


def test_sigint_saves_a_checkpoint_and_resume_checks_the_run(manifest, tmp_path):
    def ctrl_c(event):
        if event.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # ignored when the suite runs in a background job
    result = fit(tiny_config(manifest, tmp_path / "run", epochs=1), callbacks=[ctrl_c])
    assert result.status == "interrupted"
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch_in_epoch"]) == (0, 2)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    wrong = tiny_config(
        manifest, tmp_path / "run", epochs=1, model={"arch": "resnet10"}, runtime={"resume": True}
    )
    with pytest.raises(Exception, match="has arch 'resnet18' but this run has 'resnet10'"):
        fit(wrong)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(manifest, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_step = ClassifyTask.step

    def poisoned(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 6:  # second epoch (4 steps per epoch)
            out.loss = out.loss * math.nan
        return out

    monkeypatch.setattr(ClassifyTask, "step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2 .*last good checkpoint"):
        fit(tiny_config(manifest, tmp_path / "run", epochs=3, data={"val_split": "test"}))
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["batch_in_epoch"] == 0
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert (tmp_path / "run" / "best.pt").is_file()  # no val split: best by training accuracy


def _failing_first_opens(real_open, count: int = 8):
    """``real_open`` (the reader's ``open_video``), except that its first ``count`` calls fail to decode:
    with ``workers=0`` and batch 8, every video of the first batch."""
    calls = {"n": 0}

    def open_video(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= count:
            raise DataError("cannot decode: test")
        return real_open(*args, **kwargs)

    return open_video


def test_batch_with_no_decodable_video_is_skipped_and_counted(manifest, tmp_path, monkeypatch):
    from vidfast.data import reader

    monkeypatch.setattr(reader, "open_video", _failing_first_opens(reader.open_video))
    result = fit(tiny_config(manifest, tmp_path / "run", epochs=1, data={"val_split": "test"}))
    assert result.status == "completed" and result.steps == 3  # 4 batches, the first one all bad
    assert result.history[0]["clips_per_s"] * result.history[0]["seconds"] == pytest.approx(24)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(
    rank: int, world_size: int, port: int, manifest: str, out_dir: str, failing_rank: int | None = None,
    **config: dict,
) -> None:
    """One rank of a 1-epoch run; on ``failing_rank`` every video of the first batch fails to decode."""
    if rank == failing_rank:
        from vidfast.data import reader

        reader.open_video = _failing_first_opens(reader.open_video)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    sections = {"data": {"val_split": "test"}, **config}
    cfg = tiny_config(Path(manifest), Path(out_dir) / "run", epochs=1, **sections)
    result = fit(cfg)
    torch.save(
        {"state": result.model.state_dict(), "steps": result.steps, "history": result.history},
        Path(out_dir) / f"rank{rank}.pt",
    )


@pytest.mark.slow
def test_ddp_two_gloo_ranks_end_with_identical_weights(manifest, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(manifest), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 2  # 36 train clips / 2 ranks / batch 8, last partial batch dropped
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key
    saved = _state(tmp_path / "run" / "last.pt")  # rank 0 wrote the run directory
    assert all(torch.equal(saved[k], v) for k, v in r0["state"].items())


@pytest.mark.slow
def test_ddp_rank_whose_whole_batch_fails_to_decode_stays_in_step(manifest, tmp_path):
    """Rank 1 gets nothing decodable in its first batch: it takes an idle step instead of dropping the batch
    (which would leave rank 0 alone in the gradient all-reduce), and the ranks end identical."""
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(manifest), str(tmp_path), 1), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 2
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key
    assert r0["history"][0]["train_loss"] == pytest.approx(r1["history"][0]["train_loss"])
    # summed over ranks: 2 full batches on rank 0, the second batch on rank 1 (8 clips skipped)
    assert r0["history"][0]["clips_per_s"] * r0["history"][0]["seconds"] == pytest.approx(24)


def _ddp_worker_odd_val(rank: int, port: int, manifest: str, out_dir: str) -> None:
    _ddp_worker(rank, 2, port, manifest, out_dir, None, data={"val_split": "val", "batch_size": 4})


@pytest.mark.slow
def test_ddp_validation_counts_every_video_exactly_once(manifest, tmp_path):
    """5 validation videos on 2 ranks: the shards are not padded to 6, so the numbers are over exactly the 5
    (val_acc a multiple of 1/5) and both ranks report the same."""
    rows = list(csv.DictReader(manifest.open()))
    val_rows = [r for r in rows if r["split"] == "val"]
    for row in val_rows[5:]:
        row["split"] = "unused"
    odd = manifest.parent / "odd-val-split.csv"
    with odd.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    mp.spawn(_ddp_worker_odd_val, args=(_free_port(), str(odd), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for result in (r0, r1):
        row = result["history"][0]
        assert row["val_clips"] == 5
        assert row["val_acc"] * 5 == pytest.approx(round(row["val_acc"] * 5))
    assert r0["history"][0]["val_acc"] == r1["history"][0]["val_acc"]


def test_deterministic_default_runs_are_identical_and_record_their_precision(manifest, tmp_path):
    """The issue's reproduction (resnet10 x0.125 on 4x16x16 clips: stride-2 convolutions over 1x1 inputs,
    depth-2 inputs under 3-deep kernels), twice with the measured default and twice with bf16 forced: each
    pair ends bit-identical and finite, and plan.yaml records the precision."""
    settings = {"model": {"arch": "resnet10", "widen_factor": 0.125},
                "data": {"clip_len": 4, "size": 16, "batch_size": 2}}
    for amp in (None, True):
        states = []
        for i in range(2):
            run_dir = tmp_path / f"amp{amp}-{i}"
            cfg = tiny_config(manifest, run_dir, epochs=1, runtime={"deterministic": True, "amp": amp},
                              **settings)
            fit(cfg)
            states.append(_state(run_dir / "last.pt"))
            recorded = yaml.safe_load((run_dir / "plan.yaml").read_text())["precision"]
            assert recorded == "bf16" if amp else recorded in ("fp32", "bf16")
        for key, value in states[0].items():
            assert torch.equal(value, states[1][key]), key
            assert not value.is_floating_point() or bool(value.isfinite().all()), key


@pytest.mark.slow
def test_spatial_cubic_puzzle_is_learnt_end_to_end(tmp_path):
    """Sampler, cube op, shared-weight PuzzleNet and loss together solve the 24-way spatial puzzle on the
    synthetic set (its scene layout is the cue), far above chance (1/24) within a few seconds of training."""
    from vidfast.data import synthesize_dataset

    synthesize_dataset(tmp_path / "videos", classes=4, per_class=12, frames=8, size=(48, 48))
    build_manifest(
        "folder", tmp_path / "videos", tmp_path / "manifest.csv", val_fraction=0.25, progress=False
    )
    sampler = {"spatial_prob": 1.0, "rotation": False, "channel_prob": 0.0, "joint_label": False}
    cfg = resolve_config("puzzle", overrides={
        "epochs": 16,
        "model": {"arch": "resnet10", "widen_factor": 0.25},
        "data": {"manifest": str(tmp_path / "manifest.csv"), "batch_size": 12, "workers": 0, "clip_len": 4,
                 "size": 24},
        "optim": {"optimizer": "adamw", "lr": 3e-3, "schedule": "cosine"},
        "puzzle": {"sampler": sampler},
        "runtime": {"run_dir": str(tmp_path / "run"), "progress": "none", "tensorboard": False,
                    "plots": False},
    })
    history = fit(cfg).history
    assert history[-1]["train_acc"] >= 0.4  # chance: 0.042; measured 0.8-0.9 over 4 seeds
    assert max(row["val_acc"] for row in history) >= 0.5


def test_training_throughput_uses_the_run_setup_and_writes_no_checkpoint(manifest, tmp_path):
    """``measure_training_throughput`` (the bench helper) trains through the public ``Trainer`` API: the
    step alone and the whole pipeline both give clips/s, and no checkpoint is written."""
    from vidfast.engine import measure_training_throughput

    cfg = tiny_config(manifest, tmp_path / "run", runtime={"amp": False})
    step_alone = measure_training_throughput(cfg, steps=1, warmup=1, in_memory=True)
    pipeline = measure_training_throughput(cfg, steps=1, warmup=1, in_memory=False)
    assert step_alone > 0 and pipeline > 0 and math.isfinite(step_alone + pipeline)
    assert not list((tmp_path / "run").glob("*.pt"))
    with pytest.raises(ValueError, match="fewer than"):
        measure_training_throughput(cfg, steps=100, warmup=1)

"""Fault injection: training that survives its cluster (a rank SIGKILLed under ``torchrun --max-restarts``,
SIGTERM to the whole job, a full disk while checkpointing, a truncated newest checkpoint, a lost node).

The distributed runs are ``torchrun`` subprocesses on CPU with gloo, 2 ranks, running
``tests/cluster_worker.py`` (the ``vidfast`` command line plus hooks that SIGKILL a rank or hold every rank
at a step until the test has acted, and record each rank's exit code). Tests wait on those marker files,
never for a fixed time. Model: ``resnet10`` x0.125 on 4x16x16 clips of the bar videos (4 steps per epoch on
2 ranks of batch 4), ``--deterministic``, so every resumed run must end bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from helpers import descendants, write_bar_videos
from typer.testing import CliRunner
from vidfast_cli.app import app

import vidfast.engine
from vidfast.data.manifest import build_manifest
from vidfast.engine import fit, resolve_config
from vidfast.engine.checkpoint import CheckpointWriteError
from vidfast.engine.config import ConfigError, checkpoint_interval
from vidfast.models import read_checkpoint

TORCHRUN = Path(sys.executable).with_name("torchrun")
WORKER = Path(__file__).with_name("cluster_worker.py")
DEADLINE_S = 150.0
EXIT_PREEMPTED, EXIT_CHECKPOINT_WRITES = 75, 74
TINY = ["--arch", "resnet10", "--widen-factor", "0.125", "--clip-len", "4", "--size", "16", "--epochs", "2",
        "--batch-size", "4", "--deterministic", "--no-amp", "--optimizer", "adamw", "--lr", "0.002",
        "--schedule", "cosine"]


@pytest.fixture(scope="module")
def bars(tmp_path_factory) -> Path:
    """Folder with ``manifest.csv`` (bar videos) and ``quiet.yaml`` (no progress, TensorBoard or plots)."""
    root = tmp_path_factory.mktemp("faults")
    write_bar_videos(root / "videos")
    build_manifest("folder", root / "videos", root / "manifest.csv", val_fraction=0.25, progress=False)
    (root / "quiet.yaml").write_text("runtime: {tensorboard: false, plots: false, progress: none}\n")
    return root


def _train_args(bars: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["train", str(bars / "manifest.csv"), *TINY, "--config", str(bars / "quiet.yaml"),
            "--run-dir", str(run_dir), "--checkpoint-every", "2", *extra]


def _torchrun(bars: Path, run_dir: Path, markers: Path, launch: list[str], extra: tuple[str, ...] = (),
              name: str = "job", **hooks: str) -> subprocess.Popen:
    """``torchrun LAUNCH cluster_worker.py train ...`` in its own session, output to ``markers/NAME.out``."""
    markers.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VF_MARKERS": str(markers), "OMP_NUM_THREADS": "1", "VF_AGENT": name, **hooks}
    env.pop("VIDFAST_DEBUG", None)
    return subprocess.Popen(
        [str(TORCHRUN), *launch, str(WORKER), *_train_args(bars, run_dir, *extra)],
        start_new_session=True, env=env, stdout=(markers / f"{name}.out").open("w"), stderr=subprocess.STDOUT,
    )


def _finish(proc: subprocess.Popen, markers: Path, name: str = "job") -> int:
    try:
        return proc.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        below = descendants(proc.pid)  # the ranks run in sessions of their own: killpg alone orphans them
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise AssertionError(f"{name} still running after {DEADLINE_S} s; its output ends: "
                             + (markers / f"{name}.out").read_text()[-3000:]) from None


def _wait_for(paths: list[Path], procs: list[subprocess.Popen]) -> None:
    """Poll until every path exists (fails when a process ends first or at the deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while not all(p.exists() for p in paths):
        assert all(p.poll() is None for p in procs), "a job ended before reaching the marker"
        assert time.monotonic() < deadline, f"no {paths} after {DEADLINE_S} s"
        time.sleep(0.02)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _standalone(restarts: int = 0) -> list[str]:
    return ["--standalone", "--nproc-per-node", "2", "--max-restarts", str(restarts)]


@pytest.fixture(scope="module")
def reference(bars, tmp_path_factory) -> dict[str, torch.Tensor]:
    """Final weights of the uninterrupted 2-rank run."""
    root = tmp_path_factory.mktemp("reference")
    proc = _torchrun(bars, root / "run", root / "markers", _standalone(), ("--auto-resume",))
    assert _finish(proc, root / "markers") == 0, (root / "markers" / "job.out").read_text()[-3000:]
    log = (root / "run" / "train.log").read_text()
    assert log.count("auto-resume: no checkpoint in") == 1  # the fresh start says so, once
    return _weights(root / "run" / "last.pt")


@pytest.mark.slow
def test_rank_sigkilled_mid_epoch_restarts_and_ends_bit_identical(bars, tmp_path, reference):
    """(a) Rank 1 SIGKILLs itself after step 3 (a checkpoint at step 2); torchrun restarts the job once, the
    same command line resumes from step 2 and ends with the uninterrupted run's weights."""
    markers = tmp_path / "markers"
    proc = _torchrun(bars, tmp_path / "run", markers, _standalone(restarts=1), ("--auto-resume",),
                     VF_KILL="1:3")
    assert _finish(proc, markers) == 0, (markers / "job.out").read_text()[-3000:]
    assert (markers / "killed").exists()
    assert [(markers / f"exit-rank{r}-1").read_text() for r in (0, 1)] == ["0", "0"]  # the restart ended well
    log = (tmp_path / "run" / "train.log").read_text()
    assert "resumed from" in log and "step-000000002.pt at epoch 1 batch 2 (step 2)" in log
    _assert_same_weights(_weights(tmp_path / "run" / "last.pt"), reference)


@pytest.mark.slow
def test_sigterm_to_the_job_checkpoints_one_step_on_both_ranks_and_exits_75(bars, tmp_path, reference):
    """(b) SIGTERM to torchrun, which passes it to each rank's process group (DataLoader workers included):
    both ranks stop after the same step, rank 0 checkpoints it, both exit 75 without a worker's death; the
    same command line then finishes bit-identical to the uninterrupted run."""
    markers = tmp_path / "markers"
    proc = _torchrun(bars, tmp_path / "run", markers, _standalone(), ("--auto-resume", "--workers", "1"),
                     VF_HOLD="3")
    _wait_for([markers / f"at-3-rank{r}" for r in (0, 1)], [proc])
    os.killpg(proc.pid, signal.SIGTERM)
    assert _finish(proc, markers) != 0  # torchrun itself reports the signal
    out = (markers / "job.out").read_text()
    assert [(markers / f"exit-rank{r}-0").read_text() for r in (0, 1)] == [str(EXIT_PREEMPTED)] * 2, out
    assert out.count("interrupted by SIGTERM") == 2 and "killed by signal" not in out
    saved = read_checkpoint(tmp_path / "run" / "last.pt")
    assert (saved["epoch"], saved["batch_in_epoch"], saved["step"]) == (0, 3, 3)
    assert len(saved["rng_by_rank"]) == 2  # each rank continues its own generators
    assert "stopped by SIGTERM" in (tmp_path / "run" / "train.log").read_text()

    again = _torchrun(bars, tmp_path / "run", markers, _standalone(), ("--auto-resume", "--workers", "1"),
                      name="again")
    assert _finish(again, markers, "again") == 0, (markers / "again.out").read_text()[-3000:]
    _assert_same_weights(_weights(tmp_path / "run" / "last.pt"), reference)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_lost_node_of_two_agents_rejoins_and_the_job_resumes(bars, tmp_path, reference):
    """Two torchrun agents on localhost (``--nnodes 2``, c10d rendezvous on a store the test holds, as an
    etcd or a head node would): agent B and its rank are SIGKILLed at step 3 (a lost node); agent A restarts
    its rank, a new agent B joins, and the job resumes from the step-2 checkpoint to the reference weights."""
    import torch.distributed as dist

    port = _free_port()
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=DEADLINE_S))
    launch = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
              f"127.0.0.1:{port}", "--rdzv-id", "lost-node", "--max-restarts", "1",
              "--rdzv-conf", "keep_alive_interval=1,keep_alive_max_attempt=3"]  # the lost node expires in 3 s
    markers, run = tmp_path / "markers", tmp_path / "run"
    hooks = {"VF_HOLD": "3", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}  # see the README: torch 2.13's shared
    # store is not announced again when a replaced node joins a survivor that stays node rank 0
    agents = {name: _torchrun(bars, run, markers, launch, ("--auto-resume",), name=name, **hooks)
              for name in ("A", "B")}
    held = [markers / f"at-3-rank{r}" for r in (0, 1)]
    _wait_for(held, list(agents.values()))
    pid_b = next(int(pid) for pid, name in (p.read_text().split() for p in held) if name == "B")
    os.killpg(pid_b, signal.SIGKILL)  # the rank and its loader workers
    os.killpg(agents["B"].pid, signal.SIGKILL)
    agents["B"].wait()
    (markers / "release").write_text("")
    agents["B2"] = _torchrun(bars, run, markers, launch, ("--auto-resume",), name="B2", **hooks)
    for name in ("A", "B2"):
        assert _finish(agents[name], markers, name) == 0, (markers / f"{name}.out").read_text()[-3000:]
    del store
    log = (run / "train.log").read_text()
    assert "step-000000002.pt at epoch 1 batch 2 (step 2)" in log
    _assert_same_weights(_weights(run / "last.pt"), reference)


# --- in-process: one rank --------------------------------------------------------------------------------


def tiny_config(bars: Path, run_dir: Path, epochs: int = 2, **runtime):
    return resolve_config("classify", None, {
        "epochs": epochs,
        "model": {"arch": "resnet10", "widen_factor": 0.125},
        "data": {"manifest": str(bars / "manifest.csv"), "clip_len": 4, "size": 16, "batch_size": 8,
                 "workers": 0},
        "optim": {"optimizer": "adamw", "lr": 2e-3, "schedule": "cosine"},
        "runtime": {"run_dir": str(run_dir), "tensorboard": False, "progress": "none", "plots": False,
                    "deterministic": True, "amp": False, **runtime},
    })


def _full_disk_from(run_dir: Path, failing: set[int], seen: list[int]):
    """A ``torch.save`` whose calls numbered in ``failing`` write a little, then fail with ENOSPC (recording
    the step of the ``last.pt`` that still loads at that moment)."""
    real_save, calls = torch.save, {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] in failing:
            seen.append(read_checkpoint(run_dir / "last.pt")["step"])
            f.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    return save


def test_full_disk_keeps_the_previous_checkpoint_and_training_goes_on(bars, tmp_path, monkeypatch):
    """(c) The 2nd and 3rd checkpoint writes (steps 2 and 3) hit ENOSPC: each is one log line, the step-1
    checkpoint still loads, no partial file is left, and the run finishes."""
    run, seen = tmp_path / "run", []
    monkeypatch.setattr(torch, "save", _full_disk_from(run, {2, 3}, seen))
    result = fit(tiny_config(bars, run, epochs=1, checkpoint_every="1"))
    assert result.status == "completed" and result.steps == 4
    assert seen == [1, 1]
    log = (run / "train.log").read_text()
    assert log.count("not written (OSError: [Errno 28] No space left on device)") == 2
    assert "checkpoint of step 3 not written" in log and "2 failed in a row, it stops at 3" in log
    assert read_checkpoint(run / "last.pt")["step"] == 4
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]


def test_full_disk_stops_after_n_failures_in_a_row_with_exit_74(bars, tmp_path, monkeypatch):
    """With --checkpoint-failures 2, two failed writes in a row stop the run: one error line naming the
    cause and the newest checkpoint (which loads), exit code 74."""
    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", _full_disk_from(run, set(range(2, 100)), []))
    args = _train_args(bars, run, "--checkpoint-failures", "2", "--checkpoint-every", "1", "--workers", "0",
                       "--batch-size", "8")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_CHECKPOINT_WRITES, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "2 checkpoint writes in a row failed" in lines[0], lines
    assert "No space left on device" in lines[0] and "step 3" in lines[0]
    assert read_checkpoint(run / "last.pt")["step"] == 1
    with pytest.raises(CheckpointWriteError):  # the library raises its own error type
        fit(tiny_config(bars, tmp_path / "lib", epochs=1, checkpoint_every="1", checkpoint_failures=1))


def test_truncated_newest_checkpoint_auto_resume_falls_back_with_one_line(bars, tmp_path):
    """(d) A run stopped by SIGUSR1 at step 3 of 4 (checkpoints every step, 2 kept); its newest checkpoint is
    then cut in half and a killed writer's temporary is left: --auto-resume passes over the first with one
    line, ignores (and removes) the second, resumes from step 2 and ends bit-identical to an uninterrupted
    run."""
    full = fit(tiny_config(bars, tmp_path / "full", epochs=1, checkpoint_every="0"))
    run = tmp_path / "run"

    def stop_at_3(event):
        if event.step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)

    part = fit(tiny_config(bars, run, epochs=1, checkpoint_every="1"), callbacks=[stop_at_3])
    assert (part.status, part.stopped_by, part.steps) == ("interrupted", "SIGUSR1", 3)
    numbered = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert numbered == [f"step-00000000{s}.pt" for s in (2, 3)]  # --keep-checkpoints 2
    newest = run / "checkpoints" / numbered[-1]
    assert os.path.samefile(newest, run / "last.pt")
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    stale = run / "checkpoints" / ".step-000000007.pt.tmp-12345"
    stale.write_bytes(b"partial")

    resumed = fit(tiny_config(bars, run, epochs=1, auto_resume=True, checkpoint_every="1"))
    assert resumed.status == "completed" and resumed.steps == full.steps == 4
    log = (run / "train.log").read_text()
    assert log.count("auto-resume: passing over") == 1 and f"passing over {newest}" in log
    assert "step-000000002.pt at epoch 1 batch 2 (step 2)" in log
    assert not stale.exists()
    _assert_same_weights(_weights(run / "last.pt"), _weights(tmp_path / "full" / "last.pt"))


@pytest.mark.slow
def test_process_killed_while_writing_a_checkpoint_leaves_the_previous_one_newest(bars, tmp_path):
    """A grace period shorter than a checkpoint write: the process is SIGKILLed half-way through its 3rd
    write (step 3). last.pt is still step 2 and loads; the half-written temporary is no checkpoint, and
    --auto-resume continues from step 2 to the end of the epoch."""
    markers, run = tmp_path / "markers", tmp_path / "run"
    markers.mkdir()
    env = {**os.environ, "VF_MARKERS": str(markers), "VF_KILL_IN_WRITE": "3", "OMP_NUM_THREADS": "1"}
    args = _train_args(bars, run, "--checkpoint-every", "1", "--workers", "0", "--batch-size", "8",
                       "--epochs", "1")
    done = subprocess.run([sys.executable, str(WORKER), *args], env=env, capture_output=True,
                          timeout=DEADLINE_S)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert read_checkpoint(run / "last.pt")["step"] == 2
    assert [p.name for p in (run / "checkpoints").glob(".*.tmp-*")]  # the write under way when killed
    resumed = fit(tiny_config(bars, run, epochs=1, auto_resume=True, checkpoint_every="1"))
    assert resumed.status == "completed" and resumed.steps == 4
    log = (run / "train.log").read_text()
    assert "step-000000002.pt at epoch 1 batch 2 (step 2)" in log and "passing over" not in log


def test_preempt_signal_through_the_cli_exits_75_and_auto_resume_starts_fresh(bars, tmp_path, monkeypatch):
    """--preempt-signal SIGUSR2 is honoured like SIGTERM (exit 75, checkpoint of the step); --auto-resume on
    an empty run directory starts fresh; --resume and --auto-resume exclude each other."""
    real_fit = vidfast.engine.fit

    def usr2_at_step_1(cfg):
        return real_fit(cfg, callbacks=[lambda e: e.step == 1 and os.kill(os.getpid(), signal.SIGUSR2)])

    monkeypatch.setattr(vidfast.engine, "fit", usr2_at_step_1)
    run = tmp_path / "run"
    args = _train_args(bars, run, "--auto-resume", "--preempt-signal", "SIGUSR2", "--workers", "0",
                       "--epochs", "1", "--batch-size", "8")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == EXIT_PREEMPTED, (result.stdout, result.stderr)
    assert "interrupted by SIGUSR2" in result.stderr
    assert read_checkpoint(run / "last.pt")["step"] == 1
    assert "auto-resume: no checkpoint in" in (run / "train.log").read_text()
    both = CliRunner().invoke(app, [*args, "--resume"])
    assert both.exit_code == 1 and "exclude each other" in both.stderr


def test_checkpoint_every_minutes_follows_the_clock(bars, tmp_path, monkeypatch):
    """--checkpoint-every 10m: no mid-epoch checkpoint while the clock stands still, one at the first step
    after ten minutes have passed (the clock is the trainer's ``time.monotonic``, moved by the test)."""
    from types import SimpleNamespace

    from vidfast.engine import trainer

    clock = [1000.0]
    monkeypatch.setattr(trainer, "time", SimpleNamespace(monotonic=lambda: clock[0],
                                                         perf_counter=time.perf_counter))

    def ten_minutes_pass(event):
        if event.step == 2:
            clock[0] += 600.0

    fit(tiny_config(bars, tmp_path / "run", epochs=1, checkpoint_every="10m", keep_checkpoints=5),
        callbacks=[ten_minutes_pass])
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step-000000002.pt", "step-000000004.pt"]  # step 4: the epoch end


def test_checkpoint_interval_and_options_are_checked():
    assert checkpoint_interval("500") == (500, 0.0)
    assert checkpoint_interval("10m") == (0, 600.0)
    assert checkpoint_interval("90s") == (0, 90.0) and checkpoint_interval("2h") == (0, 7200.0)
    assert checkpoint_interval("0") == (0, 0.0)
    for bad in ("ten", "-5", "5x", ""):
        with pytest.raises(ConfigError, match="checkpoint_every"):
            checkpoint_interval(bad)
    with pytest.raises(ConfigError, match="preempt_signal"):
        resolve_config("classify", None, {"runtime": {"preempt_signal": "SIGKILL"}})
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        resolve_config("classify", None, {"runtime": {"keep_checkpoints": 0}})

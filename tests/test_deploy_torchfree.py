"""The deployment install for real: a fresh venv with ``pip install "<repo>[deploy]"`` only (torch not
importable there, the native extension not built) predicts with models exported here, and its scores equal
the PyTorch evaluation path's. The venv is made once per test session (about 20 s with pip's cache warm)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_checkpoint, make_dataset

import vidfast

pytestmark = pytest.mark.slow
REPO = Path(vidfast.__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def deploy_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bin/`` of a venv holding vidfast's deployment install, built from a copy of this checkout's sources
    (an in-tree build would leave build files in the checkout)."""
    root = tmp_path_factory.mktemp("torchfree")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")
    for name in ("vidfast", "cli"):
        shutil.copytree(REPO / name, src / name, ignore=skip)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                           f"{src}[deploy]"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin"


def _run(bin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=bin_dir.parent,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(bin_dir.parent)})


def test_deploy_install_has_no_torch(deploy_venv: Path) -> None:
    code = ("import importlib.util, sys, vidfast, vidfast.deploy, vidfast.deploy.predict; "
            "assert importlib.util.find_spec('torch') is None, 'torch is importable'; "
            "assert importlib.util.find_spec('vidfast._C') is None, 'the extension was built'; "
            "print(sorted(vidfast.info()['optional'].items()))")
    done = _run(deploy_venv, deploy_venv / "python", "-c", code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "('onnxruntime', True)" in done.stdout and "('pyav', True)" in done.stdout


def test_torch_free_predict_equals_the_torch_path(deploy_venv: Path, tmp_path: Path) -> None:
    from vidfast.deploy.predict import open_scorer
    from vidfast.export import export_onnx

    _, names, paths = make_dataset(tmp_path, classes=3, per_class=1)
    ckpt = make_checkpoint(tmp_path / "c.pt", names)
    torch_scorer = open_scorer([ckpt], device="cpu", autocast=False, channels_last=False)
    want = [np.asarray(torch_scorer.video_probs(p, clips=3)) for p in paths]
    for with_preprocess in (False, True):
        model = export_onnx(ckpt, tmp_path / f"m{int(with_preprocess)}.onnx",
                            with_preprocess=with_preprocess).path
        done = _run(deploy_venv, deploy_venv / "vidfast", "predict", *paths, "--onnx", model, "--json",
                    "--clips", 3, "--topk", 3)
        assert done.returncode == 0, done.stderr[-2000:]
        for entry, expected in zip(json.loads(done.stdout), want, strict=True):
            got = {label["label"]: label["score"] for label in entry["labels"]}
            np.testing.assert_allclose([got[n] for n in names], expected, rtol=0, atol=1e-5)


def test_training_commands_say_they_need_the_training_install(deploy_venv: Path, tmp_path: Path) -> None:
    done = _run(deploy_venv, deploy_venv / "vidfast", "predict", tmp_path / "v.mp4", "-c", tmp_path / "c.pt")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: this command needs the training install (No module named 'torch')")

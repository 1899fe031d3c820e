"""The native op is required: without ``vidfast._C`` the ops raise (unless the user opts in to the references)
and the test suite refuses to run, naming the import error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidfast import _ext
from vidfast.ops import cube_crop, cube_crop_reference, native_available

ROOT = Path(__file__).resolve().parents[1]


def test_the_cpu_kernel_is_native():
    assert _ext.native_module() is not None and native_available("cpu")


@pytest.fixture
def without_native(monkeypatch):
    module = sys.modules["vidfast.ops.cube_crop"]
    monkeypatch.setattr(_ext, "_native", None)
    monkeypatch.setattr(_ext, "_load_error", "ImportError: blocked by the test")
    monkeypatch.setitem(module._NATIVE, "cpu", False)
    monkeypatch.delenv(_ext.REFERENCE_OPS_ENV, raising=False)


def _args():
    g = torch.Generator().manual_seed(0)
    video = torch.randint(0, 256, (1, 4, 8, 8, 3), dtype=torch.uint8, generator=g)
    frame_idx = torch.arange(2).reshape(1, 1, 2)
    boxes = torch.tensor([[[0, 0, 8, 8]]])
    return video, frame_idx, boxes, (2, 4, 4)


def test_ops_raise_naming_the_import_error_without_the_extension(without_native):
    with pytest.raises(_ext.NativeExtensionError, match="blocked by the test.*VIDFAST_REFERENCE_OPS=1"):
        cube_crop(*_args())


def test_reference_ops_only_when_opted_in(without_native, monkeypatch):
    monkeypatch.setenv(_ext.REFERENCE_OPS_ENV, "1")
    with pytest.warns(RuntimeWarning, match="reference ops"):
        out = cube_crop(*_args())
    assert torch.equal(out, cube_crop_reference(*_args()))


@pytest.mark.slow
def test_suite_fails_naming_the_error_when_the_extension_cannot_load(tmp_path):
    """A sitecustomize makes ``import vidfast._C`` fail; pytest on the real conftest must exit non-zero."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'vidfast._C':\n"
        "            raise ImportError('vidfast._C blocked for the test')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    env.pop(_ext.REFERENCE_OPS_ENV, None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only",
         str(ROOT / "tests" / "test_samplers.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "vidfast._C failed to import" in output and "blocked for the test" in output, output

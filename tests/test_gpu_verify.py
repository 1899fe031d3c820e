"""bench/gpu_verify.sh on a machine without a CUDA GPU: one line saying so, exit status 0, no results file.

The GPU is taken away whatever this machine has: an ``nvidia-smi`` first on PATH that fails as it does without
a driver, or that finds no device; or no ``nvidia-smi`` at all.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_verify.sh"

NO_GPU = {
    "no driver": ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", 9),
    "no device": ("No devices were found", 6),
}


@pytest.mark.parametrize("case", list(NO_GPU))
def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path, case):
    shown, code = NO_GPU[case]
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "{shown}"\nexit {code}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "results.txt"
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "GPU_VERIFY_OUT": str(out)}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"gpu-verify: no CUDA GPU here (nvidia-smi -L: {shown}): nothing to "
                                        "verify"]
    assert not out.exists()


def test_without_nvidia_smi_it_says_so_in_one_line_and_exits_0(tmp_path):
    tools = tmp_path / "bin"  # bash and the tools the script needs before it looks for a GPU, nothing else
    tools.mkdir()
    for tool in ("bash", "dirname"):
        (tools / tool).symlink_to(shutil.which(tool))
    done = subprocess.run([str(tools / "bash"), str(SCRIPT)], env={"PATH": str(tools)}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "gpu-verify: no CUDA GPU here (nvidia-smi not found): nothing to verify"]

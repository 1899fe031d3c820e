"""Fixtures shared by several test modules, and two session rules: the native extension must load, and the
measurement caches (``vidfast.runtime``) live in a fresh directory of this session, never the user's."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    # set before any test imports vidfast, inherited by CLI subprocesses and DDP workers
    os.environ["VIDFAST_CACHE_DIR"] = tempfile.mkdtemp(prefix="vidfast-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.pop("VIDFAST_CACHE_DIR", ""), ignore_errors=True)


def pytest_sessionstart(session: pytest.Session) -> None:
    """No test may pass on the pure-PyTorch fallback: without ``vidfast._C`` the suite fails, naming why."""
    from vidfast import _ext

    if _ext.load_error() is not None:
        pytest.exit(f"the native extension vidfast._C failed to import: {_ext.load_error()} "
                    "(build it: make install)", returncode=1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny models: one intra-op thread is as fast and does not stall when other jobs load the
    CPU (OpenMP barriers with a descheduled thread made some exports 5x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

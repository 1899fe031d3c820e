"""Kinetics-scale manifests: read time and the private memory of forked DataLoader workers, at 10k, 100k and
300k rows.

For each size a manifest of Kinetics-like rows (relative paths of ~60 characters, 400 classes) is written
with its columns sidecar. Read time: ``read_manifest`` from the sidecar (memory-mapped) against parsing the
CSV (what every read cost before the sidecar), interleaved, best of ``REPEATS``; plus building the training
dataset (``ClipDataset``, what ``make_loader`` does before its workers start). Worker memory: a process
forked after the dataset is built (as DataLoader workers are) looks up every sample and builds every row
(``dataset.locate`` + ``dataset.rows[v]``), and reports the growth of its USS (``Private_Clean +
Private_Dirty``) and PSS from ``/proc/self/smaps_rollup``; the same for rows held as a list of
``ManifestRow`` objects with a per-sample tuple list (the layout before the columns).

Run: ``.venv/bin/python -m pytest bench/test_manifest.py -q -s``; figures go to
``bench/results/manifest.json``.
"""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from vidfast.data.columns import sidecar_path
from vidfast.data.dataset import ClipDataset
from vidfast.data.manifest import ManifestRow, read_manifest, write_manifest
from vidfast.data.policies import training_clips
from vidfast.runtime.cache import cpu_name

SIZES = [int(n) for n in os.environ.get("VIDFAST_BENCH_ROWS", "10000,100000,300000").split(",")]
REPEATS = int(os.environ.get("VIDFAST_BENCH_REPEATS", "3"))
RESULTS: dict[str, dict] = {}


def _rows(n: int, root: Path) -> list[ManifestRow]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 400, n)
    name = "{:011x}_{:06d}_{:06d}.mp4"
    return [ManifestRow(str(root / "train" / f"class_{c:03d}" / name.format(i, i % 300, i % 300 + 10)),
                        int(c), f"class_{c:03d}", "train" if i % 10 else "val", None, None, 250, 25.0,
                        340, 256, "ok", "")
            for i, c in enumerate(labels.tolist())]


def _smaps() -> dict[str, int]:
    """kB fields of ``/proc/self/smaps_rollup``."""
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0])
    return out


def _uss(m: dict[str, int]) -> int:
    return m["Private_Clean"] + m["Private_Dirty"]


def _worker_growth(touch) -> dict[str, float]:
    """MB of USS and PSS a forked child gains by running ``touch()`` (the parent stays alive, as the main
    process of a DataLoader does)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(read)
        gc.collect()
        before = _smaps()
        touch()
        gc.collect()
        after = _smaps()
        os.write(write, json.dumps({"uss_mb": (_uss(after) - _uss(before)) / 1024,
                                    "pss_mb": (after["Pss"] - before["Pss"]) / 1024}).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        result = json.loads(f.read())
    os.waitpid(pid, 0)
    return result


def _columns_growth(path: Path, policy) -> dict[str, float]:
    """Worker growth with the columnar rows of ``make_loader``'s dataset."""
    dataset = ClipDataset(read_manifest(path).table("train"), policy)

    def touch() -> None:
        for i in range(len(dataset)):
            v, _ = dataset.locate(i)
            assert dataset.rows[v].path

    return _worker_growth(touch)


def _objects_growth(path: Path) -> dict[str, float]:
    """Worker growth with rows as ``ManifestRow`` objects and a per-sample tuple list (before the columns)."""
    rows = read_manifest(path).select("train")
    items = [(v, 0) for v in range(len(rows))]

    def touch() -> None:
        for v, _ in items:
            assert rows[v].path

    return _worker_growth(touch)


@pytest.mark.parametrize("n", SIZES)
def test_manifest_read_and_worker_memory(n: int, tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "manifest.csv", _rows(n, tmp_path))
    side = sidecar_path(path)
    kept = side.read_bytes()
    sidecar_s, csv_s, dataset_s = [], [], []
    policy = training_clips()
    for _ in range(REPEATS):
        start = time.perf_counter()
        manifest = read_manifest(path)
        sidecar_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        ClipDataset(manifest.table("train"), policy)
        dataset_s.append(time.perf_counter() - start)
        side.unlink()
        start = time.perf_counter()
        read_manifest(path)  # parses the CSV (and writes the sidecar again)
        csv_s.append(time.perf_counter() - start)
        side.write_bytes(kept)
        os.utime(side)
    columnar = _columns_growth(path, policy)
    objects = _objects_growth(path)
    RESULTS[str(n)] = {
        "read_sidecar_s": min(sidecar_s), "read_csv_s": min(csv_s), "dataset_s": min(dataset_s),
        "sidecar_mb": side.stat().st_size / 2**20, "csv_mb": path.stat().st_size / 2**20,
        "worker_growth_columns": columnar, "worker_growth_row_objects": objects,
    }
    print(f"\n{n} rows: read {min(sidecar_s) * 1e3:.1f} ms from the sidecar, {min(csv_s):.2f} s from the CSV;"
          f" dataset {min(dataset_s) * 1e3:.1f} ms; worker growth after touching every row: columns USS "
          f"{columnar['uss_mb']:.1f} MB PSS {columnar['pss_mb']:.1f} MB, row objects USS "
          f"{objects['uss_mb']:.1f} MB PSS {objects['pss_mb']:.1f} MB")


def test_report() -> None:
    if not RESULTS:
        pytest.skip("run the whole file")
    out = Path(__file__).parent / "results" / "manifest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "cpu": cpu_name(), "cpu_cores": os.cpu_count(), "load_average": os.getloadavg(),
        "note": "shared machine: other jobs ran at the same time; times are the best of the repeats",
        "repeats": REPEATS, "results": RESULTS,
    }, indent=2))

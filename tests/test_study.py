"""``vidfast study``: both catalogues at --quick size end to end (every row, the rotation-only and supervised
pretrainings included), its resumption, model selection that never reads the test set, disjoint sets and
splits, and the paired interval against hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_dataset, run_cli, run_cli_fresh

from vidfast.data import read_manifest
from vidfast.errors import VidfastError
from vidfast.study import ROWS, StudyConfig, holdout_split, labelled_subset, paired_bootstrap, run_study
from vidfast.study.cache import Cache
from vidfast.study.runner import run_cells
from vidfast.study.sets import Sets, VideoBank


@pytest.mark.slow
def test_study_quick_both_catalogues_end_to_end_and_resumed(tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = run_cli_fresh("study", "--quick", "--out", out)
    assert result.exit_code == 0, result.stderr + result.stdout
    results = json.loads((out / "results.json").read_text())
    cfg = StudyConfig.quick()
    assert (out / "report.md").stat().st_size > 0
    assert set(results["catalogues"]) == {"aligned", "control"}
    for name, catalogue in results["catalogues"].items():
        assert (out / f"accuracy_vs_labels-{name}.png").stat().st_size > 0
        assert catalogue["ks"] == [2, 4]
        rows = {c["row"] for c in catalogue["cells"]}
        probes = {f"probe/{r.name}" for r in ROWS if r.name != "random_long"}
        assert rows == {r.name for r in ROWS} | probes
        for cell in catalogue["cells"]:  # every cell records the setting chosen on validation
            grid = cfg.probe_selection if cell["probe"] else cfg.selection
            selected = cell["selected"]
            assert selected["lr"] in grid.lrs and 0 < selected["steps"] <= selected["budget"], cell["row"]
            assert len(cell["correct"]) == catalogue["test_videos"] == 2 * 3
        long_budget = {c["selected"]["budget"] for c in catalogue["cells"] if c["row"] == "random_long"}
        assert min(long_budget) > cfg.selection.steps  # random init also gets the pretraining's compute
        for row in ("st_puzzle", "rotation_only", "supervised"):  # recipes piloted on seed 0, one used by all
            pretrain = catalogue["pretrain"][row]
            assert set(pretrain["recipe_val_loss"]) == {"sgd-lr0.02", "adamw-lr0.001"}
            assert len(pretrain["seeds"]) == cfg.seeds and all(s["recipe"] == pretrain["recipe"]
                                                                for s in pretrain["seeds"])
            assert [s["epochs"] for s in pretrain["seeds"]] == [cfg.pretrain_epochs] * cfg.seeds
            assert pretrain["runs"] == len(cfg.pretrain_recipes) + cfg.seeds  # the pilots are extra runs
        assert 0.0 <= catalogue["pretrain"]["rotation_only"]["seeds"][0]["val_rot_acc"] <= 1.0
        for row in ("st_puzzle", "rotation_only"):  # the engine's evaluate_puzzle, per puzzle kind
            for key in ("val_spatial_acc", "val_temporal_acc", "val_spatial_rot_acc", "val_temporal_rot_acc"):
                assert 0.0 <= catalogue["pretrain"][row]["seeds"][1][key] <= 1.0, (row, key)
        gaps = {(g["a"], g["b"], g["k"]) for g in catalogue["summary"]["gaps"]}
        assert ("st_puzzle", "random", 2) in gaps and ("probe/st_puzzle", "probe/random", 4) in gaps
        assert catalogue["summary"]["verdict"] in (out / "report.md").read_text()
        # the pool, labelled and test sets are disjoint videos
        sets = {s: {Path(r.path).resolve() for r in read_manifest(out / "data" / name / f"{s}.csv").select()}
                for s in ("pool", "labelled", "test")}
        pool, labelled, test = sets["pool"], sets["labelled"], sets["test"]
        assert not (pool & labelled or pool & test or labelled & test)
    control = results["catalogues"]["control"]["classes"]
    assert control == ["spin_ccw", "spin_cw"]  # the manifest sorts class names

    # a killed study continues: finished work is reused, a missing cell is redone
    cache = out / "cache" / "aligned"
    kept = cache / "pretrain" / "st_puzzle" / "sgd-lr0.02" / "seed0-epochs1.json"
    lost = cache / "cells" / "supervised" / "k4" / "seed1.json"
    stamp = kept.stat().st_mtime_ns
    lost.unlink()
    again = run_cli_fresh("study", "--quick", "--out", out, "--catalogues", "aligned")
    assert again.exit_code == 0, again.stderr + again.stdout
    assert kept.stat().st_mtime_ns == stamp and lost.exists()
    assert "[study] aligned: pretraining" not in again.stdout
    def timeless(cells: list[dict]) -> list[dict]:
        return [{k: v for k, v in c.items() if k != "seconds"} for c in cells]

    redone = json.loads((out / "results.json").read_text())["catalogues"]["aligned"]["cells"]
    assert timeless(redone) == timeless(results["catalogues"]["aligned"]["cells"])


def _bank(videos: int, classes: int, seed: int) -> VideoBank:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (videos, 8, 16, 16, 3), dtype=torch.uint8, generator=g)
    return VideoBank(frames, torch.arange(videos) % classes, [f"v{i}" for i in range(videos)])


def test_selection_never_reads_the_test_set(tmp_path: Path, one_torch_thread: None) -> None:
    """The same cells with the test labels poisoned (shuffled) choose the same settings; only the test scores
    move."""
    from vidfast.engine.config import Geometry
    from vidfast.study.learners import Selection

    cfg = StudyConfig.quick()
    cfg = StudyConfig(**{**cfg.__dict__, "geometry": Geometry(clip_len=4, size=16, batch_size=4, workers=0),
                         "selection": Selection(lrs=(0.01, 0.3), steps=4, val_every=2, warmup=1)})
    labelled, test = _bank(8, 2, 0), _bank(12, 2, 1)
    poisoned = test.with_labels(torch.tensor([1, 1, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0]))
    sets = Sets(Path("p"), Path("l"), Path("t"), ["a", "b"], 4)
    chosen = {}
    for name, bank in (("clean", test), ("poisoned", poisoned)):
        cells = run_cells(cfg, sets, labelled, bank, "x", 4, 0, lambda row: None, 6, Cache(tmp_path / name),
                          lambda line: None)
        chosen[name] = {c["row"]: (c["selected"], c["correct"]) for c in cells}
    assert chosen["clean"].keys() == chosen["poisoned"].keys()
    for row, (selected, _) in chosen["clean"].items():
        assert chosen["poisoned"][row][0] == selected, row
    assert any(chosen["poisoned"][row][1] != clean[1] for row, clean in chosen["clean"].items())


def test_subsets_and_splits_are_balanced_nested_and_disjoint() -> None:
    labels = [c for c in range(3) for _ in range(6)]
    small, large = labelled_subset(labels, 2, 0, 3), labelled_subset(labels, 4, 0, 3)
    assert sorted(labels[i] for i in small) == [0, 0, 1, 1, 2, 2] and set(small) <= set(large)
    assert set(labelled_subset(labels, 2, 1, 3)) != set(small)
    for subset, per_class in ((small, 1), (large, 2)):
        train, val = holdout_split(subset, labels, 0)
        assert not set(train) & set(val) and set(train) | set(val) == set(subset)
        assert sorted(labels[i] for i in val) == sorted(labels[i] for i in train) == [
            c for c in range(3) for _ in range(per_class)]
    with pytest.raises(VidfastError, match="selection needs 2"):
        holdout_split([0, 6], labels, 0)


def test_paired_bootstrap_against_hand_computed_cases() -> None:
    # one seed, two videos: a gets video 0 right where b misses it, both get video 1 wrong. The resampled
    # gap is 100 (video 0 twice, p 1/4), 50 (each once, p 1/2) or 0 (video 1 twice, p 1/4): the 2.5th and
    # 97.5th percentiles are 0 and 100 points, the gap 50
    gap = paired_bootstrap(np.array([[1, 0]]), np.array([[0, 0]]), draws=2000)
    assert (gap.gap, gap.low, gap.high) == (50.0, 0.0, 100.0) and not gap.excludes_zero
    # every seed and video differs the same way: no resample moves the gap
    same = paired_bootstrap(np.ones((3, 5)), np.zeros((3, 5)))
    assert (same.gap, same.low, same.high) == (100.0, 100.0, 100.0) and same.excludes_zero
    # two seeds that disagree (gap +100 on one, 0 on the other, one video): resampled seed means are 100
    # (p 1/4), 50 (p 1/2), 0 (p 1/4)
    seeds = paired_bootstrap(np.array([[1], [0]]), np.array([[0], [0]]), draws=2000)
    assert (seeds.gap, seeds.low, seeds.high) == (50.0, 0.0, 100.0)
    with pytest.raises(ValueError, match="one shape"):
        paired_bootstrap(np.ones((2, 3)), np.ones((3, 2)))


def test_sets_that_share_a_video_are_refused(tmp_path: Path) -> None:
    manifest, _, _ = make_dataset(tmp_path, classes=2, per_class=3, split="train")
    cfg = StudyConfig(out=str(tmp_path / "s"), pool=str(manifest), labelled=str(manifest), test=str(manifest))
    with pytest.raises(VidfastError, match="no usable video in split 'test'"):
        run_study(cfg)
    tested = tmp_path / "test.csv"
    tested.write_text(manifest.read_text().replace(",train,", ",test,"))
    with pytest.raises(VidfastError, match="is in both the pool and the labelled set"):
        run_study(StudyConfig(out=str(tmp_path / "s"), pool=str(manifest), labelled=str(manifest),
                              test=str(tested)))
    partial = run_cli("study", "--pool", manifest, "--out", tmp_path / "s")
    assert partial.exit_code != 0 and "go together" in partial.stderr
    for option, value, message in (("--catalogues", "tilted", "unknown catalogue"), ("--ks", "1", "k >= 2")):
        refused = run_cli("study", "--quick", option, value, "--out", tmp_path / "r")
        assert refused.exit_code != 0 and message in refused.stderr
        assert "Traceback" not in refused.stderr + refused.stdout

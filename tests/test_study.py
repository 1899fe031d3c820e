"""``vidfast study``: the label-efficiency study at --quick size end to end, its resumption, and the rule
that the pool, labelled and test sets never share a video."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import make_dataset, run_cli

from vidfast.data import read_manifest
from vidfast.errors import VidfastError
from vidfast.study import ENSEMBLES, INITS, TABLES, WEIGHTS, StudyConfig, labelled_subset, run_study


def test_study_quick_end_to_end_and_resumed(tmp_path: Path, one_torch_thread: None) -> None:
    out = tmp_path / "study"
    result = run_cli("study", "--quick", "--out", out)
    assert result.exit_code == 0, result.stderr + result.stdout
    for name in ("report.md", "results.json", "accuracy_vs_labels.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    cfg = StudyConfig.quick()
    assert results["ks"] == [1, 2] and results["labelled_per_class"] == 2
    assert results["sets"] == {"pool": 2 * 20, "labelled": 2 * 2, "test": 2 * 3}
    assert results["sets"]["pool"] >= 10 * results["sets"]["labelled"]
    assert len(results["cells"]) == 2 * 2 * cfg.seeds  # inits x ks x seeds
    for init in ("random", "st_puzzle"):
        for k in ("1", "2"):
            entry = results["summary"][init][k]
            assert entry["n"] == cfg.seeds and 0.0 <= entry["mean"] <= 100.0 and entry["std"] >= 0.0
    pretext = results["pretrain"]["st_puzzle"]
    for key in ("train_acc", "val_spatial_acc", "val_temporal_acc"):  # both kinds measured apart
        assert 0.0 <= pretext[key] <= 1.0, key
    report = (out / "report.md").read_text()
    assert "| random init |" in report and "| ST-puzzle (full) |" in report and "## Verdict" in report
    assert results["verdict"] in report and results["verdict"].startswith(("Shown", "Not shown"))
    assert results["verdict"] in result.stdout

    # the three sets are disjoint videos
    sets = {
        name: {Path(r.path).resolve() for r in read_manifest(out / "data" / f"{name}.csv").select()}
        for name in ("pool", "labelled", "test")
    }
    assert not (
        sets["pool"] & sets["labelled"] or sets["pool"] & sets["test"] or sets["labelled"] & sets["test"]
    )
    # every fine-tune drew its videos from the labelled set only
    for cell_manifest in (out / "finetune").rglob("labelled.csv"):
        assert {Path(r.path).resolve() for r in read_manifest(cell_manifest).select()} <= sets["labelled"]

    # a killed study continues: finished cells and the pretraining are reused, a missing cell is redone
    pretrain_marker = out / "pretrain" / "st_puzzle" / "pretrain.json"
    kept = out / "finetune" / "random" / "k1" / "seed0" / "cell.json"
    lost = out / "finetune" / "st_puzzle" / "k2" / "seed1" / "cell.json"
    stamps = pretrain_marker.stat().st_mtime_ns, kept.stat().st_mtime_ns
    lost.unlink()
    (out / "results.json").unlink()
    again = run_cli("study", "--quick", "--out", out)
    assert again.exit_code == 0, again.stderr + again.stdout
    assert (pretrain_marker.stat().st_mtime_ns, kept.stat().st_mtime_ns) == stamps
    assert "[study] pretraining" not in again.stdout and lost.exists()
    assert json.loads((out / "results.json").read_text())["cells"][:-1] == results["cells"][:-1]

    # --ablation adds the rows of Kim's Tables 2 and 4 to the same study, each pretrained with its own
    # options, and the S + T score ensemble of the fine-tuned spatial and temporal cells
    wider = run_cli("study", "--quick", "--out", out, "--ablation", "--ks", "1", "--seeds", "1")
    assert wider.exit_code == 0, wider.stderr + wider.stdout
    assert "[study] pretraining st_puzzle" not in wider.stdout  # reused
    ablated = json.loads((out / "results.json").read_text())
    cells = sorted((c["init"], c["k"], c["seed"]) for c in ablated["cells"])
    assert cells == sorted((init, 1, 0) for init in [*INITS, *ENSEMBLES])
    ensemble = next(c for c in ablated["cells"] if c["init"] == "st_ensemble")
    members = [out / "finetune" / init / "k1" / "seed0" for init in ENSEMBLES["st_ensemble"]]
    assert ensemble["members"] == [str(m) for m in members]
    ensemble_eval = out / "finetune" / "st_ensemble" / "k1" / "seed0" / "eval" / "report.json"
    scored = json.loads(ensemble_eval.read_text())
    assert scored["checkpoints"] == [str(m / WEIGHTS) for m in members]
    assert not any((m / WEIGHTS).exists() for m in members)  # deleted once the ensemble is scored
    checkpoints = set()
    for init, options in INITS.items():
        if options is None:
            continue
        sampler = yaml.safe_load((out / "pretrain" / init / "config.yaml").read_text())["puzzle"]["sampler"]
        assert {key: sampler[key] for key in options} == options, init
        one_kind = options.get("spatial_prob") in (0.0, 1.0)
        assert ablated["pretrain"][init]["chance"] == pytest.approx(1 / 24 if one_kind else 1 / 48)
        checkpoints.add(ablated["pretrain"][init]["checkpoint"])
    assert len(checkpoints) == len(INITS) - 1  # one pretraining per row
    report = (out / "report.md").read_text()
    for title, rows in TABLES:
        assert f"## {title}" in report
        for label, init, paper in rows:
            mean = ablated["summary"][init]["1"]["mean"]
            assert f"| {label} | {mean:.1f}" in report and f"| {paper} |" in report, (label, init)


def test_sets_that_share_a_video_are_refused(tmp_path: Path) -> None:
    manifest, _, _ = make_dataset(tmp_path, classes=2, per_class=3, split="train")
    cfg = StudyConfig(out=str(tmp_path / "s"), pool=str(manifest), labelled=str(manifest), test=str(manifest))
    with pytest.raises(VidfastError, match="no usable video in split 'test'"):
        run_study(cfg)
    tested = tmp_path / "test.csv"
    tested.write_text(manifest.read_text().replace(",train,", ",test,"))
    with pytest.raises(VidfastError, match="is in both the pool and the labelled set"):
        run_study(
            StudyConfig(out=str(tmp_path / "s"), pool=str(manifest), labelled=str(manifest), test=str(tested))
        )
    partial = run_cli("study", "--pool", manifest, "--out", tmp_path / "s")
    assert partial.exit_code != 0 and "go together" in partial.stderr
    for option, value in (("--pretrain-optimizer", "adam"), ("--pretrain-lr", "0")):
        refused = run_cli("study", "--quick", option, value, "--out", tmp_path / "r")
        assert refused.exit_code != 0 and "--pretrain-optimizer must be sgd or adamw" in refused.stderr
        assert "Traceback" not in refused.stderr + refused.stdout
    assert "Traceback" not in partial.stderr + partial.stdout


def test_labelled_subsets_are_balanced_nested_and_seeded(tmp_path: Path) -> None:
    manifest, _, _ = make_dataset(tmp_path, classes=3, per_class=5, split="train")
    rows = read_manifest(manifest).select()
    small, large = labelled_subset(rows, 2, 0, 3), labelled_subset(rows, 4, 0, 3)
    assert sorted(r.label for r in small) == [0, 0, 1, 1, 2, 2]
    assert {r.path for r in small} <= {r.path for r in large}
    assert {r.path for r in labelled_subset(rows, 2, 1, 3)} != {r.path for r in small}

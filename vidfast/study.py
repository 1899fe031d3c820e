"""A label-efficiency study: Kim et al.'s comparison (random init vs Space-Time Cubic Puzzle pretraining) in
miniature, with the paper's setting and error bars.

Three disjoint sets of videos: a large *unlabelled pool* (puzzle pretraining never reads its labels), a
*labelled* set from which ``k`` videos per class are drawn for each fine-tune, and a held-out *test* set.
Every initialisation (random, the full ST-puzzle, and with ``ablation`` the rows of Kim's Tables 2 and 4) is
pretrained once on the pool and fine-tuned for every ``k`` and seed with the same step budget; each
fine-tuned network is scored by video top-1 on the test set. The study writes ``report.md`` (tables laid
out like the paper's), ``results.json``, ``accuracy_vs_labels.png`` and a verdict. It is resumable:
finished cells are read back from their ``cell.json``, an interrupted pretraining resumes from its
``last.pt``.

The data is the synthetic motion set (:mod:`vidfast.data.synth`), or the user's own manifests (``pool``,
``labelled``, ``test``).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vidfast.errors import VidfastError

#: puzzle-sampler options of every pretrained initialisation (None: random initialisation, no pretraining)
INITS: dict[str, dict[str, Any] | None] = {
    "random": None,
    "st_puzzle": {},
    "spatial_puzzle": {"spatial_prob": 1.0},
    "temporal_puzzle": {"spatial_prob": 0.0},
    "no_regularisation": {"jitter": False, "channel_prob": 0.0, "rotation": False},
    "channel_replication": {"jitter": False, "channel_prob": 0.5, "rotation": False},
    "channel_jitter": {"jitter": True, "channel_prob": 0.5, "rotation": False},
}
MAIN_INITS = ("random", "st_puzzle")
#: score ensembles of fine-tuned initialisations (Kim et al.'s "ST score ensemble": softmax scores of the
#: S-puzzle and T-puzzle networks averaged per video), run with ``ablation``
ENSEMBLES: dict[str, tuple[str, ...]] = {"st_ensemble": ("spatial_puzzle", "temporal_puzzle")}
#: the paper's tables: (title, [(row label, init name, paper's UCF-101 top-1)])
TABLES: tuple[tuple[str, list[tuple[str, str, float]]], ...] = (
    (
        "Table 1: initialisation (Kim et al. Table 1)",
        [("random init", "random", 42.4), ("ST-puzzle (full)", "st_puzzle", 65.8)],
    ),
    (
        "Table 2: puzzle kinds (Kim et al. Table 2)",
        [
            ("S-puzzle", "spatial_puzzle", 58.5),
            ("T-puzzle", "temporal_puzzle", 59.3),
            ("ST score ensemble", "st_ensemble", 61.3),
            ("ST-puzzle (full)", "st_puzzle", 65.8),
        ],
    ),
    (
        "Table 4: regularisation (Kim et al. Table 4)",
        [
            ("no regularisation", "no_regularisation", 58.7),
            ("+ channel replication", "channel_replication", 61.5),
            ("+ random jittering", "channel_jitter", 63.9),
            ("+ rotation classification", "st_puzzle", 65.8),
        ],
    ),
)
RESULTS, REPORT, PLOT = "results.json", "report.md", "accuracy_vs_labels.png"
#: the pretext accuracies of the report's table, in its column order
PRETEXT_COLUMNS = ("val_acc", "train_acc", "val_spatial_acc", "val_temporal_acc", "val_rot_acc", "chance")
#: a fine-tuned cell's weights, kept until the score ensembles it belongs to are scored
WEIGHTS = "weights.pt"


@dataclass
class StudyConfig:
    """Sizes of the study. Defaults: 5.7 minutes measured on 2 quiet CPU cores (AMD EPYC, bf16 measured
    faster), 38-58 minutes on shared, loaded ones;
    :meth:`quick` for tests.

    ``ks``: labelled videos per class of each fine-tune (0: all of the labelled set); ``seeds``: fine-tunes
    per (init, k), each with its own labelled subset and training seed; ``pool`` / ``labelled`` / ``test``:
    manifests of the user's own data (their ``train`` rows, ``train`` rows and ``test`` rows; all three or
    none) instead of the synthetic set of ``classes`` x (``pool_per_class``, ``labelled_per_class``,
    ``test_per_class``) videos. Fine-tunes all take ``finetune_steps`` optimizer steps whatever ``k``,
    pretraining ``pretrain_epochs`` epochs of the pool with ``pretrain_optimizer`` (``"sgd"``, momentum 0.9,
    or ``"adamw"``) at peak rate ``pretrain_lr`` (SGD is the default: AdamW learnt more of the puzzles here
    and transferred worse, ``bench/results/study-cpu-2core-2026-12-02-streaks/``). ``probe``: also fit a
    linear classifier on frozen features (``finetune.begin_module="fc"``).
    """

    out: str = "study_runs"
    pool: str | None = None
    labelled: str | None = None
    test: str | None = None
    classes: int = 4
    pool_per_class: int = 100
    labelled_per_class: int = 8
    test_per_class: int = 25
    frames: int = 32
    video_size: int = 48
    ks: tuple[int, ...] = (2, 4, 8, 0)
    seeds: int = 3
    ablation: bool = False
    probe: bool = False
    arch: str = "resnet18"
    widen_factor: float = 0.25
    clip_len: int = 16
    size: int = 48
    cube_len: int = 8
    cube_size: int = 32
    batch_size: int = 8
    pretrain_epochs: int = 12
    pretrain_optimizer: str = "sgd"
    pretrain_lr: float = 0.02
    finetune_steps: int = 60
    lr: float = 0.01
    eval_clips: int = 3
    workers: int = 1
    device: str = "auto"
    seed: int = 0

    @classmethod
    def quick(cls, out: str = "study_runs") -> StudyConfig:
        """Seconds per run: 2 classes, tiny videos, 2 seeds, 1 epoch of pretraining (a smoke test)."""
        return cls(
            out=out,
            classes=2,
            pool_per_class=20,
            labelled_per_class=2,
            test_per_class=3,
            frames=16,
            video_size=32,
            ks=(1, 0),
            seeds=2,
            clip_len=8,
            size=32,
            cube_len=4,
            cube_size=32,
            batch_size=4,
            pretrain_epochs=1,
            finetune_steps=2,
            eval_clips=1,
            workers=0,
        )

    def inits(self) -> list[str]:
        """The initialisations (and score ensembles, after their members) this study runs, in table order."""
        return [*INITS, *ENSEMBLES] if self.ablation else list(MAIN_INITS)


@dataclass
class Sets:
    """The study's three manifests, the classes, and how many labelled videos every class has."""

    pool: Path
    labelled: Path
    test: Path
    class_names: list[str]
    labelled_per_class: int
    sizes: dict[str, int] = field(default_factory=dict)


def synthesize_sets(
    folder: Path,
    classes: int,
    per_class: dict[str, int],
    frames: int,
    video_size: int,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> Sets:
    """Write the synthetic ``labelled``, ``test`` and ``pool`` sets of ``per_class`` videos per class
    (disjoint video numbers of one seed, so no video is in two sets) and their manifests ``folder/<set>.csv``
    (labelled: ``train`` rows; test: ``test`` rows; pool: ``train`` rows and 10 % ``val`` rows to measure
    the pretext task on); a set whose manifest exists is reused."""
    from vidfast.data import build_manifest, read_manifest, synthesize_dataset, write_manifest
    from vidfast.data.manifest import cache_path_for

    first = 0
    manifests: dict[str, Path] = {}
    for name in ("labelled", "test", "pool"):
        manifest = folder / f"{name}.csv"
        if not manifest.exists():
            say(f"[data] synthesizing the {name} set: {classes} classes x {per_class[name]} videos")
            videos = folder / name
            synthesize_dataset(videos, classes=classes, per_class=per_class[name], frames=frames,
                               size=(video_size, video_size), seed=seed, first=first)
            part = folder / f"{name}.partial.csv"
            build_manifest("folder", videos, part, val_fraction=0.1 if name == "pool" else 0.0, seed=seed,
                           progress=False)
            rows = read_manifest(part).rows
            if name == "test":
                rows = [replace(r, split="test") for r in rows]
            write_manifest(manifest, rows)
            part.unlink()
            cache_path_for(part).unlink(missing_ok=True)
        manifests[name] = manifest
        first += per_class[name]
    return read_sets(manifests["pool"], manifests["labelled"], manifests["test"])


def read_sets(pool: Path, labelled: Path, test: Path) -> Sets:
    """Check three manifests for a study (classes agree, no video in two sets) and describe them."""
    from vidfast.data import read_manifest

    manifests = {
        name: read_manifest(p) for name, p in (("pool", pool), ("labelled", labelled), ("test", test))
    }
    rows = {
        "pool": manifests["pool"].select(),
        "labelled": manifests["labelled"].select("train"),
        "test": manifests["test"].select("test"),
    }
    for name, chosen in rows.items():
        if not chosen:
            split = {"pool": "any", "labelled": "train", "test": "test"}[name]
            raise VidfastError(f"the {name} manifest has no usable video in split {split!r}")
    names = manifests["labelled"].class_names
    if manifests["test"].class_names != names:
        raise VidfastError("the labelled and test manifests have different classes")
    seen: dict[str, str] = {}
    for name, chosen in rows.items():
        for row in chosen:
            key = str(Path(row.path).resolve())
            if seen.setdefault(key, name) != name:
                raise VidfastError(f"{row.path} is in both the {seen[key]} and the {name} set")
    per_class = min(sum(r.label == c for r in rows["labelled"]) for c in range(len(names)))
    if per_class < 1:
        raise VidfastError("every class needs at least one labelled video")
    return Sets(pool, labelled, test, names, per_class, {k: len(v) for k, v in rows.items()})


def labelled_subset(rows: list[Any], k: int, seed: int, num_classes: int) -> list[Any]:
    """``k`` rows per class drawn with ``seed``; subsets of one seed are nested (k=2 is inside k=4)."""
    rng = np.random.default_rng([seed, 1234])
    chosen = []
    for c in range(num_classes):
        of_class = [r for r in rows if r.label == c]
        chosen += [of_class[i] for i in rng.permutation(len(of_class))[:k]]
    return chosen


def train_config(
    cfg: Any,
    task: str,
    manifest: Path,
    run_dir: Path,
    epochs: int,
    lr: float,
    seed: int,
    init: Path | None = None,
    sampler: dict[str, Any] | None = None,
    batch_size: int | None = None,
    begin_module: str | None = None,
    runtime: dict[str, Any] | None = None,
    optimizer: str = "sgd",
) -> Any:
    """The training config of one study (or demo) run: ``cfg`` gives the geometry (``arch``, ``widen_factor``,
    ``clip_len``, ``size``, ``cube_len``, ``cube_size``, ``batch_size``, ``workers``, ``device``: a
    :class:`StudyConfig` or a ``DemoConfig``); ``optimizer`` (SGD with momentum 0.9, or AdamW) with warmup
    and a cosine schedule; ``sampler`` overrides puzzle-sampler options, ``runtime`` the runtime section
    (quiet, no plots by default)."""
    from vidfast.engine.config import resolve_config

    data: dict[str, Any] = {
        "manifest": str(manifest),
        "clip_len": cfg.clip_len,
        "size": cfg.size,
        "batch_size": batch_size or cfg.batch_size,
        "workers": cfg.workers,
    }
    overrides: dict[str, Any] = {
        "epochs": epochs,
        "model": {"arch": cfg.arch, "widen_factor": cfg.widen_factor},
        "data": data,
        "optim": {
            "optimizer": optimizer,
            "lr": lr,
            "momentum": 0.9,
            "weight_decay": 1e-4,
            "schedule": "cosine",
            "warmup_epochs": min(1.0, epochs / 4),
        },
        "runtime": {
            "device": cfg.device,
            "channels_last": True,
            "seed": seed,
            "run_dir": str(run_dir),
            "progress": "none",
            "tensorboard": False,
            "plots": False,
            **(runtime or {}),
        },
        "finetune": {"checkpoint": None if init is None else str(init), "begin_module": begin_module},
    }
    if task == "puzzle":
        overrides["puzzle"] = {
            "sampler": {"cube_len": cfg.cube_len, "out_size": cfg.cube_size, **(sampler or {})}
        }
    else:  # the synthetic classes are directions and rotation senses: a horizontal flip changes the label
        data["loader"] = {"hflip": False}
    return resolve_config(task, overrides=overrides)


def _pretrain(
    cfg: StudyConfig, sets: Sets, init: str, folder: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Pretrain ``init`` on the pool once (resuming an interrupted run); its summary is cached in
    ``pretrain.json``."""
    from vidfast.engine.trainer import fit

    marker = folder / "pretrain.json"
    if marker.exists():
        return json.loads(marker.read_text())
    say(
        f"[study] pretraining {init} on the {sets.sizes['pool']}-video pool for {cfg.pretrain_epochs} epochs "
        "(no labels)"
    )
    start = time.perf_counter()
    train_cfg = train_config(
        cfg,
        "puzzle",
        sets.pool,
        folder,
        cfg.pretrain_epochs,
        cfg.pretrain_lr,
        cfg.seed,
        sampler=INITS[init],
        runtime={"resume": (folder / "last.pt").exists()},
        optimizer=cfg.pretrain_optimizer,
    )
    result = fit(train_cfg)
    if result.status != "completed" or result.last_checkpoint is None:
        raise VidfastError(f"pretraining {init} was interrupted; run the study again to continue it")
    last = result.history[-1] if result.history else {}
    one_kind = (INITS[init] or {}).get("spatial_prob") in (0.0, 1.0)
    by_kind = {} if one_kind else pretext_by_kind(result.last_checkpoint, sets.pool, cfg.workers, cfg.device)
    summary = {
        "checkpoint": str(result.last_checkpoint),
        "epochs": result.epochs_completed,
        "seconds": round(time.perf_counter() - start, 1),
        "chance": 1 / (24 if one_kind else 48),
        **{k: last.get(k) for k in ("train_acc", "val_acc", "train_rot_acc", "val_rot_acc")},
        **by_kind,
    }
    marker.write_text(json.dumps(summary, indent=2))
    return summary


def pretext_by_kind(checkpoint: Path, manifest: Path, workers: int, device: str = "auto",
                    puzzles: int = 200) -> dict[str, float]:
    """Puzzle accuracy of a pretrained network per puzzle kind: ``{"val_spatial_acc", "val_temporal_acc"}``
    over at least ``puzzles`` puzzles of each kind, as many from every ``val`` video of ``manifest`` (a
    network that solves only one kind shows it here, where the mixed accuracy hides it); empty without
    ``val`` videos."""
    import torch

    from vidfast.data import read_manifest
    from vidfast.data.loader import LoaderConfig, make_loader
    from vidfast.data.policies import ClipOutput, CubicPuzzle
    from vidfast.devices import resolve_device
    from vidfast.engine.build import puzzle_config, run_convention
    from vidfast.engine.config import config_from_dict
    from vidfast.engine.tasks import PuzzleTask
    from vidfast.models import read_checkpoint

    pool = read_manifest(manifest)
    videos = len(pool.select("val"))
    if not videos:
        return {}
    ckpt = read_checkpoint(checkpoint)
    cfg = config_from_dict(ckpt["config"])
    model = PuzzleTask.from_config(cfg).build(cfg, []).model
    model.load_state_dict(ckpt["state_dict"])
    target = resolve_device(device)
    model.to(target).eval()
    convention = run_convention(cfg)
    output = ClipOutput(convention.unit_mean, convention.unit_std, torch.float32, False)
    accuracy = {}
    for kind, spatial_prob in (("spatial", 1.0), ("temporal", 0.0)):
        policy = CubicPuzzle(replace(puzzle_config(cfg), spatial_prob=spatial_prob), output)
        correct = count = 0
        for draw in range(-(-puzzles // videos)):
            config = LoaderConfig(batch_size=cfg.data.batch_size, workers=workers, seed=draw, shuffle=False)
            with torch.no_grad():
                for batch in make_loader(pool, policy, config, split="val"):
                    if "video" in batch:
                        predicted = model(batch["video"].to(target)).perm.argmax(1).cpu()
                        correct += int((predicted == batch["perm_label"]).sum())
                        count += len(predicted)
        if count:
            accuracy[f"val_{kind}_acc"] = correct / count
    return accuracy


def _finetune(
    cfg: StudyConfig,
    sets: Sets,
    init: str,
    checkpoint: str | None,
    k: int,
    seed: int,
    folder: Path,
    begin_module: str | None,
    keep: bool = False,
) -> dict[str, Any]:
    """Fine-tune one cell (init, k, seed) for ``finetune_steps`` steps and score it on the test set; cached in
    ``cell.json``. ``keep``: the cell's weights are needed by a score ensemble, so they stay in
    ``WEIGHTS`` (a finished cell without them is fine-tuned again)."""
    from vidfast.data import read_manifest, write_manifest
    from vidfast.engine.evaluate import evaluate
    from vidfast.engine.trainer import fit

    marker = folder / "cell.json"
    if marker.exists() and (not keep or (folder / WEIGHTS).exists()):
        return json.loads(marker.read_text())
    labelled = read_manifest(sets.labelled)
    rows = labelled_subset(labelled.select("train"), k, seed, len(sets.class_names))
    manifest = write_manifest(folder / "labelled.csv", rows)
    batch = min(cfg.batch_size, len(rows))
    epochs = math.ceil(cfg.finetune_steps / (len(rows) // batch))
    start = time.perf_counter()
    result = fit(
        train_config(
            cfg,
            "classify",
            manifest,
            folder / "run",
            epochs,
            cfg.lr,
            seed,
            init=None if checkpoint is None else Path(checkpoint),
            batch_size=batch,
            begin_module=begin_module,
        )
    )
    if result.last_checkpoint is None or result.status != "completed":
        raise VidfastError(f"fine-tuning {folder} was interrupted; run the study again to continue")
    report = evaluate(_test_config(cfg, sets, [result.last_checkpoint], folder / "eval"))
    if keep:
        result.last_checkpoint.replace(folder / WEIGHTS)
    last = result.history[-1] if result.history else {}
    cell = {
        "init": init,
        "k": k,
        "seed": seed,
        "probe": begin_module is not None,
        "videos": len(rows),
        "epochs": epochs,
        "video_top1": report.video_top1,
        "clip_top1": report.clip_top1,
        "train_acc": last.get("train_acc"),
        "seconds": round(time.perf_counter() - start, 1),
    }
    for weights in (folder / "run").glob("*.pt"):  # a study keeps numbers, not hundreds of checkpoints
        weights.unlink()
    marker.write_text(json.dumps(cell, indent=2))
    return cell


def _test_config(cfg: StudyConfig, sets: Sets, checkpoints: list[Path], run_dir: Path) -> Any:
    """Scoring on the test set; several checkpoints are a score ensemble (softmax averaged per video)."""
    from vidfast.engine.evaluate import EvalConfig

    return EvalConfig(manifest=str(sets.test), checkpoints=[str(c) for c in checkpoints], split="test",
                      clips=cfg.eval_clips, workers=cfg.workers, device=cfg.device, run_dir=str(run_dir))


def _ensemble(cfg: StudyConfig, sets: Sets, name: str, members: list[Path], k: int, seed: int,
              folder: Path) -> dict[str, Any]:
    """Score the ensemble ``name`` of the fine-tuned cells in ``members`` (their kept weights) on the test
    set; cached in ``cell.json``, after which the members' weights are deleted."""
    from vidfast.engine.evaluate import evaluate

    marker = folder / "cell.json"
    if not marker.exists():
        start = time.perf_counter()
        report = evaluate(_test_config(cfg, sets, [m / WEIGHTS for m in members], folder / "eval"))
        cell = {
            "init": name,
            "k": k,
            "seed": seed,
            "probe": False,
            "members": [str(m) for m in members],
            "video_top1": report.video_top1,
            "clip_top1": report.clip_top1,
            "seconds": round(time.perf_counter() - start, 1),
        }
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(cell, indent=2))
    for member in members:
        (member / WEIGHTS).unlink(missing_ok=True)
    return json.loads(marker.read_text())


def run_study(cfg: StudyConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) the whole study and write its outputs under ``cfg.out``; returns ``results.json``."""
    given = [cfg.pool, cfg.labelled, cfg.test]
    if any(given) and not all(given):
        raise VidfastError("--pool, --labelled and --test go together (your own data), or none of them")
    if cfg.seeds < 1 or not cfg.ks or any(k < 0 for k in cfg.ks):
        raise VidfastError("need seeds >= 1 and labelled counts k >= 0 (0: all)")
    if cfg.pretrain_optimizer not in ("sgd", "adamw") or not cfg.pretrain_lr > 0:
        raise VidfastError(
            "--pretrain-optimizer must be sgd or adamw and --pretrain-lr > 0, got "
            f"{cfg.pretrain_optimizer!r} and {cfg.pretrain_lr}"
        )
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "study.json"
    extendable = ("out", "ablation", "probe", "ks", "seeds")  # more rows, columns or seeds reuse the rest
    mine = {k: v for k, v in asdict(cfg).items() if k not in extendable}
    if settings.exists() and json.loads(settings.read_text()) != json.loads(json.dumps(mine)):
        raise VidfastError(f"--out {out} holds a study with other settings; choose another folder")
    clock = time.perf_counter()
    if cfg.pool and cfg.labelled and cfg.test:
        sets = read_sets(Path(cfg.pool), Path(cfg.labelled), Path(cfg.test))
    else:
        per_class = {"labelled": cfg.labelled_per_class, "test": cfg.test_per_class,
                     "pool": cfg.pool_per_class}
        sets = synthesize_sets(out / "data", cfg.classes, per_class, cfg.frames, cfg.video_size, cfg.seed,
                               say)
    settings.write_text(json.dumps(mine, indent=2))
    ks = sorted({min(k or sets.labelled_per_class, sets.labelled_per_class) for k in cfg.ks})
    if min(ks) * len(sets.class_names) < 2:
        raise VidfastError("a fine-tune needs at least 2 labelled videos")
    short = _count_short(cfg, sets)
    if short:
        say(
            f"[study] {short} of {sets.sizes['pool']} pool videos are too short for four disjoint temporal "
            "cubes of this geometry: they get spatial puzzles only"
        )
    pretrained: dict[str, dict[str, Any]] = {}
    for init in cfg.inits():
        if INITS.get(init) is not None:
            pretrained[init] = _pretrain(cfg, sets, init, out / "pretrain" / init, say)
    cells = []
    modes = [None, "fc"] if cfg.probe else [None]
    for begin_module in modes:
        kind = "probe" if begin_module else "finetune"
        for k in ks:  # k-major, so that an interrupted study already compares every init at the first k
            for init in cfg.inits():
                if init in ENSEMBLES and begin_module:
                    continue
                for seed in range(cfg.seeds):
                    cell = _cell(cfg, sets, pretrained, out / kind, init, k, seed, begin_module)
                    say(
                        f"[study] {kind} {init} k={k} seed={seed}: "
                        f"video top-1 {100 * cell['video_top1']:.1f} %"
                    )
                    cells.append(cell)
    results = {
        "config": asdict(cfg),
        "sets": sets.sizes,
        "classes": sets.class_names,
        "ks": ks,
        "labelled_per_class": sets.labelled_per_class,
        "short_pool_videos": short,
        "pretrain": pretrained,
        "cells": cells,
        "summary": summarize(cells),
        "seconds": round(time.perf_counter() - clock, 1),
    }
    results["verdict"] = verdict(results)
    (out / RESULTS).write_text(json.dumps(results, indent=2))
    plot(results, out / PLOT)
    (out / REPORT).write_text(format_report(results))
    return results


def _cell(cfg: StudyConfig, sets: Sets, pretrained: dict[str, dict[str, Any]], root: Path, init: str, k: int,
          seed: int, begin_module: str | None) -> dict[str, Any]:
    """One cell of the table: fine-tune ``init`` (or score the ensemble ``init``) for ``k`` labelled videos
    per class with seed number ``seed``, in ``root/<init>/k<k>/seed<seed>``."""
    def folder(name: str) -> Path:
        return root / name / f"k{k}" / f"seed{seed}"

    if init in ENSEMBLES:
        members = [folder(member) for member in ENSEMBLES[init]]
        return _ensemble(cfg, sets, init, members, k, cfg.seed + seed, folder(init))
    wanted_by = [name for name, members in ENSEMBLES.items() if init in members]
    keep = cfg.ablation and not begin_module and not all(
        (folder(name) / "cell.json").exists() for name in wanted_by
    )
    checkpoint = pretrained[init]["checkpoint"] if init in pretrained else None
    return _finetune(cfg, sets, init, checkpoint, k, cfg.seed + seed, folder(init), begin_module, keep)


def _count_short(cfg: StudyConfig, sets: Sets) -> int:
    """Pool videos too short for a temporal puzzle (they fall back to spatial ones)."""
    from vidfast.data import read_manifest
    from vidfast.puzzle import PuzzleConfig, temporal_fits

    puzzle = PuzzleConfig(cube_len=cfg.cube_len, out_size=cfg.cube_size)
    return sum(not temporal_fits(r.num_frames, puzzle) for r in read_manifest(sets.pool).select())


def summarize(cells: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and std (over seeds) of video top-1 in percent: ``{mode/init: {k: {mean, std, n}}}``."""
    groups: dict[tuple[str, int], list[float]] = {}
    for cell in cells:
        name = ("probe/" if cell["probe"] else "") + cell["init"]
        groups.setdefault((name, cell["k"]), []).append(100 * cell["video_top1"])
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for (name, k), values in groups.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.setdefault(name, {})[str(k)] = {
            "mean": statistics.fmean(values),
            "std": std,
            "n": len(values),
        }
    return summary


def gaps(results: dict[str, Any]) -> list[dict[str, Any]]:
    """ST-puzzle minus random (mean video top-1, points) per k, with the seeds' spread (sum of the stds)."""
    summary = results["summary"]
    rows = []
    for k in results["ks"]:
        st, rnd = summary["st_puzzle"][str(k)], summary["random"][str(k)]
        gap, spread = st["mean"] - rnd["mean"], st["std"] + rnd["std"]
        rows.append({"k": k, "gap": gap, "spread": spread, "met": gap >= 5.0 and gap > spread})
    return rows


def verdict(results: dict[str, Any]) -> str:
    """One paragraph: was the claim (ST-puzzle beats random by >= 5 points at k <= 4, beyond the seeds'
    spread) shown here, and what the study does not show."""
    rows = gaps(results)
    scarce = [r for r in rows if r["k"] <= 4]
    per_k = "; ".join(f"k={r['k']}: {r['gap']:+.1f} points (spread {r['spread']:.1f})" for r in rows)
    seeds = results["config"]["seeds"]
    if scarce and all(r["met"] for r in scarce):
        outcome = (
            f"Shown: ST-puzzle pretraining beat random initialisation by at least 5 points of video top-1 "
            f"at every k <= 4 labelled videos per class, by more than the seeds' spread ({seeds} seeds)"
        )
    elif scarce:
        outcome = (
            f"Not shown: ST-puzzle pretraining did not beat random initialisation by 5 points beyond the "
            f"seeds' spread at every k <= 4 ({seeds} seeds)"
        )
    else:
        outcome = "Not tested: no labelled count k <= 4 was run"
    pretext = results["pretrain"].get("st_puzzle", {})
    return (
        f"{outcome}. Gap (ST-puzzle - random, mean video top-1) per labelled videos per class: {per_k}. "
        f"The pretext task reached {_pct(pretext.get('val_acc'))} (48-way, held-out pool videos; chance "
        f"2.1 %), rotation {_pct(pretext.get('val_rot_acc'))}. Not shown: anything about natural video or "
        f"the paper's scale - this is {results['sets']['pool']} pool, {results['sets']['labelled']} labelled "
        f"and {results['sets']['test']} test videos, a network of a few hundred thousand weights and "
        f"minutes of training; one test video is {100 / max(results['sets']['test'], 1):.1f} points."
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _cell_text(summary: dict[str, Any], name: str, k: int) -> str:
    entry = summary.get(name, {}).get(str(k))
    return "-" if entry is None else f"{entry['mean']:.1f} ± {entry['std']:.1f}"


def format_report(results: dict[str, Any]) -> str:
    """``report.md``: the set-up, the paper's tables (one column per k), pretext accuracies, the verdict."""
    cfg, summary, ks = results["config"], results["summary"], results["ks"]
    heads = [f"k={k}" + (" (all)" if k == results["labelled_per_class"] else "") for k in ks]
    lines = [
        "# Label-efficiency study: random init vs Space-Time Cubic Puzzle pretraining",
        "",
        f"Video top-1 (%) on {results['sets']['test']} held-out test videos, mean ± std over {cfg['seeds']} "
        f"seeds (labelled subset and fine-tuning seed), after pretraining on an unlabelled pool of "
        f"{results['sets']['pool']} videos and fine-tuning on k labelled videos per class "
        f"({len(results['classes'])} classes). Network {cfg['arch']} x{cfg['widen_factor']:g}, clips "
        f"{cfg['clip_len']}x{cfg['size']}x{cfg['size']}, puzzle cubes {cfg['cube_len']}x{cfg['cube_size']}x"
        f"{cfg['cube_size']}, {cfg['pretrain_epochs']} pretraining epochs, {cfg['finetune_steps']} "
        f"fine-tuning steps per run, {results['seconds'] / 60:.1f} min.",
        "",
    ]
    names = {init for init in summary}
    for title, rows in TABLES:
        present = [row for row in rows if row[1] in names]
        if len(present) < len(rows):
            continue
        lines += [
            f"## {title}",
            "",
            "| | " + " | ".join(heads) + " | paper (UCF-101) |",
            "|---|" + "---:|" * (len(ks) + 1),
        ]
        lines += [
            f"| {label} | " + " | ".join(_cell_text(summary, init, k) for k in ks) + f" | {paper} |"
            for label, init, paper in present
        ]
        lines.append("")
    probes = [name for name in summary if name.startswith("probe/")]
    if probes:
        lines += [
            "## Linear probe on frozen features (only the classifier trains)",
            "",
            "| | " + " | ".join(heads) + " |",
            "|---|" + "---:|" * len(ks),
        ]
        lines += [
            f"| {name[6:]} | " + " | ".join(_cell_text(summary, name, k) for k in ks) + " |"
            for name in probes
        ]
        lines.append("")
    lines += [
        "## Pretext tasks (last epoch)",
        "",
        "| init | puzzle val | puzzle train | spatial val | temporal val | rotation val | chance |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {init} | " + " | ".join(_pct(p.get(key)) for key in PRETEXT_COLUMNS) + " |"
        for init, p in results["pretrain"].items()
    ]
    lines += [
        "",
        "## ST-puzzle minus random",
        "",
        "| k | gap (points) | spread (std sum) | >= 5 and > spread |",
        "|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['k']} | {r['gap']:+.1f} | {r['spread']:.1f} | {'yes' if r['met'] else 'no'} |"
        for r in gaps(results)
    ]
    lines += ["", "## Verdict", "", results["verdict"], "", f"![accuracy vs labels]({PLOT})", ""]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Video top-1 against labelled videos per class, one line (mean, std error bars) per initialisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_k in results["summary"].items():
        ks = sorted(int(k) for k in by_k)
        ax.errorbar(
            ks,
            [by_k[str(k)]["mean"] for k in ks],
            yerr=[by_k[str(k)]["std"] for k in ks],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(results["ks"], [str(k) for k in results["ks"]])
    ax.set_xlabel("labelled videos per class")
    ax.set_ylabel("video top-1 (%), test")
    ax.axhline(100 / max(len(results["classes"]), 1), color="grey", linestyle=":", label="chance")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""``run_study``: the rows, their pretrainings and the cells of the study, per data catalogue.

For each catalogue (``aligned``: the synthetic classes are drifts right/left/down/up, the four 90-degree
rotations of one motion, and particles always fall down the frame; ``control``: spins, slides and swings in
any direction, none mapped onto another by a rotation, and gravity drawn per video; or the user's own
manifests):
every pretrained row is pretrained once per seed on the pool (the recipe chosen on seed 0 by the pretext's
validation loss), and every row is fine-tuned per labelled count ``k`` and seed by the selection procedure of
:mod:`vidfast.study.learners`. Every piece of work is cached (:class:`vidfast.study.cache.Cache`).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vidfast.engine.config import Recipe
from vidfast.errors import VidfastError
from vidfast.study.cache import Cache
from vidfast.study.config import Selection, StudyConfig
from vidfast.study.learners import NetworkLearner, ProbeLearner, curves, select
from vidfast.study.rows import ENSEMBLES, LONG, Row
from vidfast.study.sets import Sets, holdout_split, labelled_subset, load_bank, read_sets, synthesize_sets


def _check(cfg: StudyConfig) -> None:
    from vidfast.data.synth import CATALOGUES

    if cfg.jobs < 0 or cfg.recipe_epochs < 1 or cfg.pretrain_epochs < 1:
        raise VidfastError("need jobs >= 0 (0: automatic) and at least 1 pilot and 1 pretraining epoch")
    if cfg.seeds < 1 or not cfg.ks or any(k < 2 for k in cfg.ks):
        raise VidfastError(
            "need seeds >= 1 and labelled counts k >= 2 (one video per class trains, one validates)"
        )
    unknown = [c for c in cfg.catalogues if c not in CATALOGUES]
    if unknown or not cfg.catalogues:
        raise VidfastError(
            f"unknown catalogue(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(CATALOGUES)}"
        )
    for recipe in cfg.pretrain_recipes:
        if recipe.optimizer not in ("sgd", "adamw") or not recipe.lr > 0:
            raise VidfastError(f"a pretraining recipe needs optimizer sgd or adamw and lr > 0, got {recipe}")
    for name, selection in (("selection", cfg.selection), ("probe selection", cfg.probe_selection)):
        if (
            not 1 <= len(selection.lrs) <= 3
            or min(selection.lrs) <= 0
            or selection.steps < selection.val_every
        ):
            raise VidfastError(f"the {name} needs 1-3 rates > 0 and a budget of at least one validation")


def run_study(cfg: StudyConfig, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) the study on every catalogue; writes ``results.json``, ``report.md`` and one plot
    per catalogue under ``cfg.out``; returns the results."""
    from vidfast.study.report import format_report, plot, summarize

    _check(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "study.json"
    extendable = (
        "out",
        "ablation",
        "ks",
        "seeds",
        "catalogues",
        "bootstrap",
        "jobs",
    )  # more rows/cells reuse the rest
    mine = {k: v for k, v in asdict(cfg).items() if k not in extendable}
    if settings.exists() and json.loads(settings.read_text()) != json.loads(json.dumps(mine)):
        raise VidfastError(f"--out {out} holds a study with other settings; choose another folder")
    if cfg.own_data():  # checked before the folder becomes this study's
        read_sets(Path(cfg.pool or ""), Path(cfg.labelled or ""), Path(cfg.test or ""))
    settings.write_text(json.dumps(mine, indent=2))
    clock = time.perf_counter()
    catalogues = ("own",) if cfg.own_data() else cfg.catalogues
    jobs = min(len(catalogues), cfg.jobs or os.cpu_count() or 1)
    if jobs > 1:
        say(f"[study] {len(catalogues)} catalogues, {jobs} at once (one process each)")
        threads = max(1, (os.cpu_count() or 1) // jobs)
        context = multiprocessing.get_context("spawn")  # no forked copy of this process's torch threads
        with ProcessPoolExecutor(jobs, context, torch.set_num_threads, (threads,)) as workers:
            runs = [workers.submit(_timed_catalogue, cfg, c, out) for c in catalogues]
            done = [run.result() for run in runs]
    else:
        done = [_timed_catalogue(cfg, c, out, say) for c in catalogues]
    results: dict[str, Any] = {"config": asdict(cfg), "catalogues": {}}
    for catalogue, result in zip(catalogues, done, strict=True):
        result["summary"] = summarize(result, cfg)
        results["catalogues"][catalogue] = result
        plot(result, out / f"accuracy_vs_labels-{catalogue}.png")
    results["seconds"] = round(time.perf_counter() - clock, 1)
    (out / "results.json").write_text(json.dumps(_without_probabilities(results), indent=1))
    (out / "report.md").write_text(format_report(results))
    return results


def _timed_catalogue(
    cfg: StudyConfig, catalogue: str, out: Path, say: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """:func:`run_catalogue` with the seconds it took (a worker process of ``run_study`` prints)."""
    start = time.perf_counter()
    result = run_catalogue(cfg, catalogue, out, Cache(out / "cache"), say or _print)
    return result | {"seconds": round(time.perf_counter() - start, 1)}


def _print(line: str) -> None:
    print(line, flush=True)


def _without_probabilities(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` for ``results.json``: the cells keep which test videos they got right, not their class
    probabilities (those stay in the cache)."""
    catalogues = {
        name: {**result, "cells": [{k: v for k, v in c.items() if k != "probs"} for c in result["cells"]]}
        for name, result in results["catalogues"].items()
    }
    return {**results, "catalogues": catalogues}


def run_catalogue(
    cfg: StudyConfig, catalogue: str, out: Path, cache: Cache, say: Callable[[str], None]
) -> dict[str, Any]:
    """Pretrain every row of one catalogue, then run every cell: the catalogue's part of ``results.json``."""
    from vidfast.data import read_manifest

    if catalogue == "own":
        sets = read_sets(Path(cfg.pool or ""), Path(cfg.labelled or ""), Path(cfg.test or ""))
    else:
        per_class = {
            "labelled": cfg.labelled_per_class,
            "test": cfg.test_per_class,
            "pool": cfg.pool_per_class,
        }
        gravity = "down" if catalogue == "aligned" else "random"
        sets = synthesize_sets(
            out / "data" / catalogue,
            cfg.classes,
            per_class,
            cfg.frames,
            cfg.video_size,
            cfg.seed,
            catalogue,
            gravity,
            say,
        )
    ks = sorted({k for k in cfg.ks if k <= sets.labelled_per_class})
    if not ks:
        raise VidfastError(f"every k is above the {sets.labelled_per_class} labelled videos per class")
    pretrained = {
        row.name: pretrain_row(cfg, sets, row, catalogue, out, cache, say)
        for row in cfg.rows()
        if row.pretext
    }
    say(f"[study] {catalogue}: loading the labelled and test videos into memory")
    labelled_rows = read_manifest(sets.labelled).select("train")
    test_rows = read_manifest(sets.test).select("test")
    labelled = load_bank(labelled_rows, cfg.frames, cfg.geometry.size)
    test = load_bank(test_rows, cfg.frames, cfg.geometry.size)
    long_steps = {k: _long_steps(cfg, sets, pretrained, k) for k in ks}
    cells: list[dict[str, Any]] = []
    for k in ks:  # k-major: an interrupted study already compares every row at the first k
        for seed in range(cfg.seeds):

            def checkpoint(name: str, seed: int = seed) -> str | None:
                return pretrained[name]["seeds"][seed]["checkpoint"] if name in pretrained else None

            cells += run_cells(
                cfg, sets, labelled, test, catalogue, k, seed, checkpoint, long_steps[k], cache, say
            )
    return {
        "catalogue": catalogue,
        "sets": sets.sizes,
        "classes": sets.class_names,
        "ks": ks,
        "test_videos": len(test_rows),
        "pretrain": pretrained,
        "long_steps": {str(k): v for k, v in long_steps.items()},
        "cells": cells,
    }


def pretrain_row(
    cfg: StudyConfig,
    sets: Sets,
    row: Row,
    catalogue: str,
    out: Path,
    cache: Cache,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Pretrain ``row`` once per seed with the recipe whose pilot (``recipe_epochs`` on seed 0; every
    candidate recipe) ends with the lowest validation loss of the pretext (held-out pool videos). Returns
    the recipe choice, the summaries of the pretrainings used, by seed, and the seconds all of them took,
    pilots included."""
    pilot_epochs = min(cfg.recipe_epochs, cfg.pretrain_epochs)
    pilots = {
        _recipe_name(r): pretrain(cfg, sets, row, r, 0, pilot_epochs, catalogue, out, cache, say)
        for r in cfg.pretrain_recipes
    }
    chosen_name = min(pilots, key=lambda name: pilots[name]["val_loss"])
    chosen = next(r for r in cfg.pretrain_recipes if _recipe_name(r) == chosen_name)
    if pilot_epochs == cfg.pretrain_epochs:  # the pilot is seed 0's pretraining
        seeds = [pilots[chosen_name]]
    else:
        seeds = [pretrain(cfg, sets, row, chosen, 0, cfg.pretrain_epochs, catalogue, out, cache, say)]
    seeds += [
        pretrain(cfg, sets, row, chosen, s, cfg.pretrain_epochs, catalogue, out, cache, say)
        for s in range(1, cfg.seeds)
    ]
    runs = list(pilots.values()) + [s for s in seeds if s not in pilots.values()]
    return {
        "recipe": chosen_name,
        "recipe_val_loss": {n: t["val_loss"] for n, t in pilots.items()},
        "seeds": seeds,
        "seconds": sum(r["seconds"] for r in runs),
        "runs": len(runs),
    }


def _recipe_name(recipe: Recipe) -> str:
    return f"{recipe.optimizer}-lr{recipe.lr:g}"


def pretrain(
    cfg: StudyConfig,
    sets: Sets,
    row: Row,
    recipe: Recipe,
    seed: int,
    epochs: int,
    catalogue: str,
    out: Path,
    cache: Cache,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """One pretraining of ``row`` with ``recipe`` and ``seed`` for ``epochs`` on the pool (an interrupted
    one resumes from its newest checkpoint: ``runtime.auto_resume``); its summary is cached."""
    from vidfast.engine.config import small_run_config
    from vidfast.engine.evaluate import PuzzleEvalConfig, evaluate_puzzle
    from vidfast.engine.trainer import fit

    name = f"{row.name}/{_recipe_name(recipe)}/seed{seed}-epochs{epochs}"
    folder = out / "runs" / catalogue / "pretrain" / name

    def run() -> dict[str, Any]:
        uses = "its labels" if row.pretext == "classify" else "no labels"
        say(
            f"[study] {catalogue}: pretraining {row.name} ({_recipe_name(recipe)}, seed {seed}) on the "
            f"{sets.sizes['pool']}-video pool for {epochs} epochs ({uses})"
        )
        start = time.perf_counter()
        train_cfg = small_run_config(
            cfg.geometry,
            recipe,
            row.pretext or "puzzle",
            sets.pool,
            folder,
            epochs,
            cfg.seed + seed,
            puzzle=row.puzzle,
            runtime={"auto_resume": True, "amp": False},
        )
        result = fit(train_cfg)
        if result.status != "completed" or result.last_checkpoint is None:
            raise VidfastError(f"pretraining {name} was interrupted; run the study again to continue it")
        last = result.history[-1] if result.history else {}
        summary = {
            "recipe": _recipe_name(recipe),
            "seed": seed,
            "checkpoint": str(result.last_checkpoint),
            "epochs": result.epochs_completed,
            "steps": result.epochs_completed * _steps_per_epoch(sets, cfg),
            "seconds": round(time.perf_counter() - start, 1),
            **{k: last.get(k) for k in ("train_acc", "val_acc", "val_loss", "train_rot_acc", "val_rot_acc")},
        }
        if row.pretext == "puzzle":
            summary |= evaluate_puzzle(
                PuzzleEvalConfig(
                    str(sets.pool),
                    str(result.last_checkpoint),
                    "val",
                    cfg.pretext_puzzles,
                    0,
                    cfg.geometry.device,
                )
            )
        return summary

    return cache.get(f"{catalogue}/pretrain/{name}", run)


def _steps_per_epoch(sets: Sets, cfg: StudyConfig) -> int:
    """Optimizer steps of one pretraining epoch (the loader drops the last partial batch)."""
    from vidfast.data import read_manifest

    train = len(read_manifest(sets.pool).select("train"))
    return max(1, train // cfg.geometry.batch_size)


def _long_steps(cfg: StudyConfig, sets: Sets, pretrained: dict[str, Any], k: int) -> int:
    """The step budget of random_long's selection runs at ``k``: the fine-tuning budget plus the ST-puzzle
    pretraining's compute (voxels through the network: puzzles of 4 cubes vs clips) spread over the grid's
    runs, so that its cell costs what a pretraining plus a pretrained cell cost."""
    g = cfg.geometry
    if "st_puzzle" not in pretrained:
        return cfg.selection.steps
    steps = max(s["steps"] for s in pretrained["st_puzzle"]["seeds"])
    pretrain_voxels = steps * g.batch_size * 4 * g.cube_len * g.cube_size**2
    batch = min(g.batch_size, max(1, k // 2) * len(sets.class_names))
    per_step = batch * g.clip_len * g.size**2
    return cfg.selection.steps + math.ceil(pretrain_voxels / (len(cfg.selection.lrs) * per_step))


def run_cells(
    cfg: StudyConfig,
    sets: Sets,
    labelled: Any,
    test: Any,
    catalogue: str,
    k: int,
    seed: int,
    checkpoint: Callable[[str], str | None],
    long_steps: int,
    cache: Cache,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every row's cell (and its linear probe) at ``k`` labelled videos per class and ``seed``."""
    labels = labelled.labels.tolist()
    subset = labelled_subset(labels, k, cfg.seed + seed, len(sets.class_names))
    train, val = holdout_split(subset, labels, cfg.seed + seed)
    train_seed = cfg.seed + 1000 * seed + k
    cells = []
    for row in cfg.rows():
        source = "random" if row.name == LONG else row.name
        network = NetworkLearner(
            cfg.geometry, checkpoint(source), labelled, test, sets.class_names, cfg.eval_clips, cfg.selection
        )
        runs = long_steps if source == "random" else cfg.selection.steps  # random_long's runs hold random's
        budget = long_steps if row.name == LONG else cfg.selection.steps
        cell = _cell(
            cache,
            f"{catalogue}/cells/{row.name}/k{k}/seed{seed}",
            network,
            cfg.selection,
            subset,
            train,
            val,
            runs,
            budget,
            train_seed,
            f"{catalogue}/{{}}/{source}/k{k}/seed{seed}",
        )
        cells.append(_scored(cell, row.name, k, seed, test))
        say(
            f"[study] {catalogue} k={k} seed={seed} {row.name}: test top-1 "
            f"{100 * cells[-1]['test_top1']:.1f} % "
            f"(selected lr {cell['selected']['lr']:g}, {cell['selected']['steps']} steps)"
        )
        if row.name == LONG:
            continue
        probe_name = f"{catalogue}/cells/probe/{row.name}/k{k}/seed{seed}"
        probe = None if cache.has(probe_name) else ProbeLearner(network, train_seed)
        steps = cfg.probe_selection.steps
        cell = _cell(
            cache,
            probe_name,
            probe,
            cfg.probe_selection,
            subset,
            train,
            val,
            steps,
            steps,
            train_seed,
            f"{catalogue}/{{}}/probe/{row.name}/k{k}/seed{seed}",
        )
        cells.append(_scored(cell, f"probe/{row.name}", k, seed, test))
    if cfg.ablation:
        for name, members in ENSEMBLES.items():
            probs = torch.stack([torch.tensor(c["probs"]) for c in cells if c["row"] in members]).mean(0)
            ensemble = {"selected": {"members": list(members)}, "probs": probs.tolist()}
            cells.append(_scored(ensemble, name, k, seed, test))
    return cells


def _scored(cell: dict[str, Any], row: str, k: int, seed: int, test: Any) -> dict[str, Any]:
    """A cell with its test scores: which test videos it got right, and its video top-1."""
    correct = (torch.tensor(cell["probs"]).argmax(1) == test.labels).int()
    return {
        **cell,
        "row": row,
        "probe": row.startswith("probe/"),
        "k": k,
        "seed": seed,
        "correct": correct.tolist(),
        "test_top1": float(correct.float().mean()),
    }


def _cell(
    cache: Cache,
    name: str,
    learner: Any,
    selection: Selection,
    subset: list[int],
    train: list[int],
    val: list[int],
    runs: int,
    budget: int,
    seed: int,
    kind: str,
) -> dict[str, Any]:
    """One cell, cached: the selection runs (``runs`` steps; shared by the rows of one source), the choice
    within ``budget`` steps, the final fit on the whole subset, the test set's probabilities. ``kind``
    names the cached pieces (``{}`` is replaced by ``curves`` or ``finals``)."""

    def compute() -> dict[str, Any]:
        start = time.perf_counter()
        found = cache.get(
            kind.format("curves") + f"-{runs}", lambda: curves(learner, selection, train, val, runs, seed)
        )
        chosen = select(found, budget)
        final = cache.get(
            kind.format("finals") + f"/lr{chosen['lr']:g}-steps{chosen['steps']}",
            lambda: {"probs": learner.final(chosen["lr"], chosen["steps"], subset, seed).tolist()},
        )
        return {
            "selected": {**chosen, "budget": budget},
            "videos": len(subset),
            "train_videos": len(train),
            "val_videos": len(val),
            "probs": final["probs"],
            "seconds": round(time.perf_counter() - start, 1),
        }

    return cache.get(name, compute)

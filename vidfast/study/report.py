"""The study's numbers and words: per-row accuracies with intervals, paired gaps with intervals, the verdict
per catalogue and k, ``report.md`` and the plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vidfast.study.rows import LABELS
from vidfast.study.stats import Gap, paired_bootstrap

#: the paired comparisons of the report: (a, b, what a - b tells)
COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("st_puzzle", "random", "does the puzzle pretraining help?"),
    ("rotation_only", "random", "does rotation prediction alone help?"),
    ("st_puzzle", "rotation_only", "does the puzzle add to rotation?"),
    ("st_puzzle", "random_long", "beyond the compute it costs?"),
    ("random_long", "random", "does random init gain from more steps?"),
    ("supervised", "random", "the upper bound: pretraining with the pool's labels"),
    ("probe/st_puzzle", "probe/random", "linear probe: puzzle features vs random features"),
    ("probe/rotation_only", "probe/random", "linear probe: rotation features vs random features"),
    ("probe/supervised", "probe/random", "linear probe: supervised features vs random features"),
)
CATALOGUE_NOTES = {
    "aligned": "classes move right / left / down / up (the four 90-degree rotations of one drift), particles "
    "always fall down the frame",
    "control": "classes spin clockwise / spin counter-clockwise / slide / swing, in any direction (no "
    "90-degree "
    "rotation maps one class onto another), gravity drawn per video",
    "own": "the user's own manifests",
}


def _label(row: str) -> str:
    if row.startswith("probe/"):
        return f"probe: {LABELS.get(row[6:], row[6:])}"
    return LABELS.get(row, row)


def correct_matrix(cells: list[dict[str, Any]], row: str, k: int) -> np.ndarray:
    """``[seeds, test videos]`` 0/1 of ``row``'s cells at ``k``, by seed."""
    chosen = sorted((c for c in cells if c["row"] == row and c["k"] == k), key=lambda c: c["seed"])
    return np.array([c["correct"] for c in chosen])


def summarize(result: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """Per row and k: mean video top-1 (%) over seeds and its 95 % interval (bootstrap over seeds and test
    videos); per comparison and k: the paired gap and its interval."""
    cells, ks = result["cells"], result["ks"]
    rows = list(dict.fromkeys(c["row"] for c in cells))
    accuracy: dict[str, dict[str, Any]] = {}
    for row in rows:
        for k in ks:
            matrix = correct_matrix(cells, row, k)
            if matrix.size:
                gap = paired_bootstrap(matrix, np.zeros_like(matrix), cfg.bootstrap, cfg.seed)
                accuracy.setdefault(row, {})[str(k)] = {
                    "mean": gap.gap,
                    "low": gap.low,
                    "high": gap.high,
                    "n": gap.seeds,
                }
    gaps: list[dict[str, Any]] = []
    for a, b, question in COMPARISONS:
        for k in ks:
            ma, mb = correct_matrix(cells, a, k), correct_matrix(cells, b, k)
            if ma.size and ma.shape == mb.shape:
                gap = paired_bootstrap(ma, mb, cfg.bootstrap, cfg.seed)
                gaps.append(
                    {
                        "a": a,
                        "b": b,
                        "question": question,
                        "k": k,
                        "gap": gap.gap,
                        "low": gap.low,
                        "high": gap.high,
                        "seeds": gap.seeds,
                        "videos": gap.videos,
                        "excludes_zero": gap.excludes_zero,
                    }
                )
    return {"accuracy": accuracy, "gaps": gaps, "verdict": verdict(gaps, result, accuracy)}


def _gap(entry: dict[str, Any]) -> Gap:
    return Gap(entry["gap"], entry["low"], entry["high"], entry["seeds"], entry["videos"])


def _reading(entry: dict[str, Any]) -> str:
    if entry["low"] > 0:
        return "better"
    if entry["high"] < 0:
        return "worse"
    return "no measurable difference"


def verdict(gaps: list[dict[str, Any]], result: dict[str, Any], accuracy: dict[str, dict[str, Any]]) -> str:
    """Per k: does the ST-puzzle beat random init (the 95 % interval of the paired gap excludes 0), and what
    do rotation alone and the puzzle beyond rotation do."""

    def line(a: str, b: str) -> str:
        found = [g for g in gaps if g["a"] == a and g["b"] == b]
        return "; ".join(f"k={g['k']}: {_gap(g).text()} ({_reading(g)})" for g in found) or "not run"

    main = [g for g in gaps if g["a"] == "st_puzzle" and g["b"] == "random"]
    shown = [g["k"] for g in main if g["low"] > 0]
    worse = [g["k"] for g in main if g["high"] < 0]
    if main and len(shown) == len(main):
        outcome = "The ST-puzzle init beat random init at every k (the 95 % intervals exclude 0)"
    elif shown:
        outcome = f"The ST-puzzle init beat random init at k={', '.join(map(str, shown))} only"
    elif worse:
        outcome = f"The ST-puzzle init was worse than random init at k={', '.join(map(str, worse))}"
    else:
        outcome = "No measurable difference between the ST-puzzle init and random init at any k"
    videos = result["test_videos"]
    return (
        f"{outcome}. ST-puzzle - random, points of video top-1 [95 % interval]: "
        f"{line('st_puzzle', 'random')}. "
        f"Rotation only - random: {line('rotation_only', 'random')}. ST-puzzle - rotation only: "
        f"{line('st_puzzle', 'rotation_only')}. ST-puzzle - random init with the pretraining's compute: "
        f"{line('st_puzzle', 'random_long')}. One test video is {100 / max(videos, 1):.2f} points of one "
        f"network's accuracy.{_near_chance(accuracy, len(result['classes']))}"
    )


def _near_chance(accuracy: dict[str, dict[str, Any]], classes: int) -> str:
    """A warning when no fine-tuned row got 10 points above chance: the study then has no power."""
    chance = 100 / max(classes, 1)
    best = max((v["mean"] for row, by_k in accuracy.items() if not row.startswith("probe/")
                for v in by_k.values()), default=chance)
    if best >= chance + 10:
        return ""
    return (f" Every fine-tuned row stayed within 10 points of chance ({chance:.0f} %; best {best:.1f} %), "
            "the supervised upper bound included: at this size no initialisation learns much of the classes, "
            "so the study cannot show a gain either way.")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _selected(cells: list[dict[str, Any]], row: str, k: int) -> str:
    chosen = sorted((c for c in cells if c["row"] == row and c["k"] == k), key=lambda c: c["seed"])
    return ", ".join(
        f"{c['selected']['lr']:g}/{c['selected']['steps']}" for c in chosen if "lr" in c["selected"]
    )


def format_report(results: dict[str, Any]) -> str:
    """``report.md``: the protocol, then per catalogue the accuracies, the paired gaps, the selected
    settings, the pretrainings and the verdict."""
    cfg = results["config"]
    g, sel, probe = cfg["geometry"], cfg["selection"], cfg["probe_selection"]
    lines = [
        "# Label-efficiency study: random init vs Space-Time Cubic Puzzle pretraining",
        "",
        f"Protocol. Every row is pretrained (where it is) once per seed on an unlabelled pool, then "
        "fine-tuned "
        f"on k labelled videos per class for {cfg['seeds']} seeds (a seed: its pretraining, its labelled "
        "subset "
        f"and its training order; the same for every row, so rows are compared paired). Model selection, the "
        f"same for every row: half of each class's k labelled videos validates; for every rate of "
        f"{list(sel['lrs'])} a network trains on the other half at that constant rate for {sel['steps']} "
        "steps "
        f"(random init + pretraining's compute: more, see below), validated every {sel['val_every']} steps; "
        "the "
        f"best (rate, steps) by validation accuracy (ties: validation loss) is trained again on all k "
        "videos and "
        f"the test set is scored once. Linear probes (a linear classifier on frozen features) select their "
        "rate "
        f"from {list(probe['lrs'])} and steps up to {probe['steps']} the same way. The pretraining recipe of "
        f"every pretrained row is chosen among {len(cfg['pretrain_recipes'])} candidates by the pretext's "
        f"validation loss on held-out pool videos after a pilot of "
        f"{min(cfg['recipe_epochs'], cfg['pretrain_epochs'])} epochs on seed 0 with each, never by "
        "transfer. Intervals: 95 %, paired "
        f"bootstrap over seeds and test videos ({cfg['bootstrap']} resamples). Network {g['arch']} "
        f"x{g['widen_factor']:g}, clips {g['clip_len']}x{g['size']}x{g['size']}, puzzle cubes "
        f"{g['cube_len']}x{g['cube_size']}x{g['cube_size']}, {cfg['pretrain_epochs']} pretraining epochs, "
        f"{cfg['eval_clips']} clips per video at validation and test. This invocation took "
        f"{results['seconds'] / 60:.1f} min (work found in the cache is read, not redone).",
        "",
    ]
    for name, result in results["catalogues"].items():
        lines += _catalogue_section(name, result)
    return "\n".join(lines)


def _catalogue_section(name: str, result: dict[str, Any]) -> list[str]:
    summary, ks, cells = result["summary"], result["ks"], result["cells"]
    heads = " | ".join(f"k={k}" for k in ks)
    sets = result["sets"]
    lines = [
        f"## Catalogue `{name}`: {CATALOGUE_NOTES.get(name, name)}",
        "",
        f"{len(result['classes'])} classes ({', '.join(result['classes'])}); pool {sets['pool']}, labelled "
        f"{sets['labelled']}, test {sets['test']} videos. Compute (seconds of each piece of work when it was "
        f"done): {sum(p['seconds'] for p in result['pretrain'].values()) / 60:.1f} min in "
        f"{sum(p['runs'] for p in result['pretrain'].values())} pretrainings, "
        f"{sum(c.get('seconds', 0.0) for c in cells) / 60:.1f} min in the {len(cells)} cells (selection "
        "runs, final fits, test scoring; not the linear probes' feature extraction).",
        "",
        "Video top-1 (%) on the test videos, mean over seeds [95 % interval]:",
        "",
        f"| | {heads} |",
        "|---|" + "---:|" * len(ks),
    ]
    for row, by_k in summary["accuracy"].items():
        values = " | ".join(
            f"{by_k[str(k)]['mean']:.1f} [{by_k[str(k)]['low']:.1f}, {by_k[str(k)]['high']:.1f}]"
            if str(k) in by_k
            else "-"
            for k in ks
        )
        lines.append(f"| {_label(row)} | {values} |")
    lines += [
        "",
        "Paired gaps (points of video top-1, a - b) [95 % interval]:",
        "",
        f"| a - b | question | {heads} |",
        "|---|---|" + "---:|" * len(ks),
    ]
    for a, b, question in COMPARISONS:
        found = {g["k"]: g for g in summary["gaps"] if g["a"] == a and g["b"] == b}
        if found:
            values = " | ".join(
                f"{_gap(found[k]).text()}" + (" *" if found[k]["excludes_zero"] else "")
                if k in found
                else "-"
                for k in ks
            )
            lines.append(f"| {_label(a)} - {_label(b)} | {question} | {values} |")
    lines += [
        "",
        "\\* the interval excludes 0.",
        "",
        "Selected fine-tuning settings (rate/steps, one per seed; random init + compute: budget "
        + ", ".join(f"{result['long_steps'][str(k)]} steps at k={k}" for k in ks)
        + "):",
        "",
        f"| | {heads} |",
        "|---|" + "---|" * len(ks),
    ]
    for row in summary["accuracy"]:
        if row != "st_ensemble":
            lines.append(f"| {_label(row)} | " + " | ".join(_selected(cells, row, k) for k in ks) + " |")
    lines += [
        "",
        "Pretraining (recipe chosen by the pretext validation loss of its seed-0 pilot; accuracies on "
        "held-out pool videos, mean over seeds):",
        "",
        "| row | recipe (val loss of each) | pretext val acc | rotation val | spatial val | temporal val | "
        "s per pretraining |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row, p in result["pretrain"].items():
        losses = ", ".join(f"{n}: {v:.3f}" for n, v in p["recipe_val_loss"].items())

        def mean(key: str, seeds: list[dict[str, Any]] = p["seeds"]) -> float | None:
            values = [s[key] for s in seeds if s.get(key) is not None]
            return sum(values) / len(values) if values else None

        seconds = mean("seconds")
        lines.append(
            f"| {_label(row)} | {p['recipe']} ({losses}) | {_pct(mean('val_acc'))} | "
            f"{_pct(mean('val_rot_acc'))} "
            f"| {_pct(mean('val_spatial_acc'))} | {_pct(mean('val_temporal_acc'))} | "
            f"{'n/a' if seconds is None else f'{seconds:.0f}'} |"
        )
    lines += [
        "",
        "### Verdict",
        "",
        summary["verdict"],
        "",
        f"![accuracy vs labels, {name}](accuracy_vs_labels-{name}.png)",
        "",
    ]
    return lines


def plot(result: dict[str, Any], path: Path) -> None:
    """Video top-1 against labelled videos per class, one line per row, error bars = the 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    accuracy = result["summary"]["accuracy"]
    for i, (row, by_k) in enumerate(accuracy.items()):
        ks = sorted(int(k) for k in by_k)
        means = np.array([by_k[str(k)]["mean"] for k in ks])
        low = means - np.array([by_k[str(k)]["low"] for k in ks])
        high = np.array([by_k[str(k)]["high"] for k in ks]) - means
        shift = 1 + 0.02 * (i - len(accuracy) / 2)  # side by side, so the bars do not hide each other
        ax.errorbar(
            np.array(ks) * shift,
            means,
            yerr=[low, high],
            marker="o",
            capsize=3,
            label=_label(row),
            linestyle="--" if row.startswith("probe/") else "-",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(result["ks"], [str(k) for k in result["ks"]])
    ax.set_xlabel("labelled videos per class")
    ax.set_ylabel("video top-1 (%), test")
    ax.set_title(f"catalogue: {result['catalogue']}")
    ax.axhline(100 / max(len(result["classes"]), 1), color="grey", linestyle=":", label="chance")
    ax.legend(fontsize=6, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Figures and tables from ``experiments/results``.

    PYTHONPATH=. python experiments/plot.py

* ``lenet_controls.png``: early-stopping iteration and test accuracy at early
  stop vs percent of weights remaining (log x, reversed), one line per
  strategy, mean and min/max over seeds;
* ``lenet_variants.png``: the same for iterative rewind vs one-shot,
  continue (Han et al.) and late rewinding;
* ``lenet_full_length.png``: the same at the paper's 50,000 iterations per
  round: rewind vs reinit, and early-bird rounds;
* ``lenet_early_bird_cost.png``: test accuracy of the final ticket vs the
  search's total training iterations (full IMP and early-bird, per seed);
* ``lenet_retrain.png``: rewind to θ0 vs learning-rate rewinding vs fine-tuning,
  5,000 iterations per round;
* ``xor_success.png``: success rate per XOR configuration (± 1 s.e.);
* ``lenet_table.csv``: every round of every run, flat.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from common import RESULTS  # noqa: E402

LABELS = {
    "rewind": "winning ticket (rewind to θ0)",
    "reinit": "random reinit (same mask)",
    "random_prune": "random pruning",
    "rearrange": "random rearrange",
    "continue": "continue training (Han et al.)",
    "finetune": "fine-tune",
    "lr_rewind": "learning-rate rewinding (Renda et al.)",
}


def load_runs(steps: int = 3000) -> list[dict]:
    """Every LeNet run trained ``steps`` iterations per round."""
    runs = []
    for path in sorted(RESULTS.glob("lenet_*.json")):
        run = json.loads(path.read_text())
        if run["args"].get("steps", 3000) == steps:
            runs.append(run)
    return runs


def tolerance(run) -> float | None:
    """The early-bird tolerance of a run, ``None`` without early-bird."""
    a = run["args"]
    return a.get("early_bird_tolerance", 0.1) if a.get("early_bird") else None


def label(run) -> str:
    a = run["args"]
    if tolerance(run) is not None:
        return f"early-bird rounds, tolerance {tolerance(run):g} (rewind to θ0)"
    if a["one_shot"]:
        return "one-shot (rewind to θ0)"
    if a["rewind_to"] != "init":
        return f"late rewind to iteration {a['rewind_to']}"
    return LABELS[a["strategy"]]


def grouped(runs):
    """label -> percent remaining (rounded) -> list of (es_iter, es_acc) over seeds."""
    groups: dict[str, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        rows = run["rows"][-1:] if run["args"]["one_shot"] else run["rows"]
        for row in rows:
            pm = round(row["percent_remaining"], 1)
            groups[label(run)][pm].append(
                (row["early_stop_iteration"], 100 * row["early_stop_test_accuracy"])
            )
    if "one-shot (rewind to θ0)" in groups:  # one-shot round 0 is the dense net
        dense = groups.get(LABELS["rewind"], {}).get(100.0)
        if dense:
            groups["one-shot (rewind to θ0)"][100.0] = dense
    return groups


def panel(groups, names, path, title):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in names:
        if name not in groups:
            continue
        pms = sorted(groups[name], reverse=True)
        for ax, i in zip(axes, (0, 1)):
            vals = [np.array([v[i] for v in groups[name][pm]], float) for pm in pms]
            mean = np.array([v.mean() for v in vals])
            lo = mean - np.array([v.min() for v in vals])
            hi = np.array([v.max() for v in vals]) - mean
            style = "o" if name.startswith("one-shot") else "o-"
            ax.errorbar(pms, mean, yerr=[lo, hi], fmt=style, ms=4, capsize=3, label=name)
    for ax, ylab in zip(axes, ("early-stopping iteration", "test accuracy at early stop (%)")):
        ax.set_xscale("log")
        ax.set_xlim(110, 2.5)
        ax.set_xticks([100, 51.3, 21.1, 7.0, 3.6])
        ax.set_xticklabels(["100", "51.3", "21.1", "7.0", "3.6"])
        ax.set_xlabel("percent of weights remaining (Pm)")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def cost_plot(runs, path):
    """Final ticket accuracy vs total training iterations of the search, per seed."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points = defaultdict(list)
    for run in runs:
        if run["args"]["strategy"] != "rewind":
            continue
        tol = tolerance(run)
        name = "full IMP" if tol is None else f"early-bird, tolerance {tol:g}"
        total = sum(row["iterations"] for row in run["rows"]) / 1000
        points[name].append((total, 100 * run["rows"][-1]["final_test_accuracy"]))
    for name, xy in sorted(points.items()):
        ax.plot(*zip(*xy), "o", ms=7, label=name)
    ax.set_xlabel("training iterations of the whole search (thousands)")
    ax.set_ylabel("final ticket test accuracy (%), Pm 3.6")
    ax.set_title("LeNet-300-100, 50,000 iterations per round, seeds 0 and 1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_table(runs):
    path = RESULTS / "lenet_table.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "round", "pct_remaining", "es_iteration", "es_test_acc", "final_acc"])
        for run in runs:
            for row in run["rows"]:
                w.writerow(
                    [
                        run["name"],
                        row["round"],
                        f"{row['percent_remaining']:.2f}",
                        row["early_stop_iteration"],
                        f"{row['early_stop_test_accuracy']:.4f}",
                        f"{row['final_test_accuracy']:.4f}",
                    ]
                )


def xor_plot():
    path = RESULTS / "xor_trials.jsonl"
    if not path.exists():
        return None
    trials = [json.loads(line) for line in path.read_text().splitlines()]
    keys = [k for k in trials[0] if isinstance(trials[0][k], dict)]
    order = ["scratch2", "scratch4", "scratch10"] + sorted(
        (k for k in keys if not k.startswith("scratch")), key=lambda k: (k[-1], k)
    )
    rates = {k: np.mean([t[k]["ok"] for t in trials]) for k in order}
    err = {k: np.sqrt(rates[k] * (1 - rates[k]) / len(trials)) for k in order}
    fig, ax = plt.subplots(figsize=(11, 4.5))
    colors = ["tab:gray" if k.startswith("scratch") else "tab:blue" for k in order]
    colors = ["tab:orange" if k.startswith("oneshot") else c for k, c in zip(order, colors)]
    ax.bar(
        range(len(order)),
        [100 * rates[k] for k in order],
        yerr=[100 * err[k] for k in order],
        color=colors,
        capsize=3,
    )
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("success rate (%)")
    ax.set_title(
        f"XOR, {len(trials)} seeds: scratch (gray), iterative unit pruning (blue), one-shot "
        "(orange); suffix = hidden units left"
    )
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "xor_success.png", dpi=90)
    plt.close(fig)
    return {k: (float(rates[k]), len(trials)) for k in order}


def main():
    runs = load_runs()
    if runs:
        groups = grouped(runs)
        main_names = [LABELS[s] for s in ("rewind", "reinit", "random_prune", "rearrange")]
        panel(groups, main_names, RESULTS / "lenet_controls.png", "LeNet-300-100 on MNIST")
        variants = [LABELS["rewind"], "one-shot (rewind to θ0)", LABELS["continue"]]
        variants += sorted(k for k in groups if k.startswith("late rewind"))
        panel(groups, variants, RESULTS / "lenet_variants.png", "LeNet-300-100: variants")
    full = load_runs(steps=50000)
    if full:
        groups = grouped(full)
        panel(
            groups,
            sorted(groups),
            RESULTS / "lenet_full_length.png",
            "LeNet-300-100 on MNIST, 50,000 iterations per round",
        )
        cost_plot(full, RESULTS / "lenet_early_bird_cost.png")
    retrain = load_runs(steps=5000)
    if retrain:
        groups = grouped(retrain)
        panel(
            groups,
            sorted(groups),
            RESULTS / "lenet_retrain.png",
            "LeNet-300-100: rewind vs lr_rewind vs finetune, 5,000 iterations per round",
        )
    if runs or full or retrain:
        write_table(runs + full + retrain)
    print(xor_plot())


if __name__ == "__main__":
    main()

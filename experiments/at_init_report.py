"""Tables and plot of the pruning-at-initialization experiment (``at_init.py``).

    PYTHONPATH=. python experiments/at_init_report.py          # prints the markdown tables
    PYTHONPATH=. python experiments/at_init_report.py --plot   # and results/at_init.png

Reads ``results/at_init.jsonl`` and the IMP searches ``results/lenet_rewind_s<seed>_r24.json``
(same protocol, ``run_j.sh``).  Metric: test accuracy (%) at the iteration of minimum
validation loss, mean over seeds (min–max).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from statistics import median

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("snip", "grasp", "synflow", "magnitude", "random")
NOMINAL = (20.0, 5.0, 1.4, 0.5)
CHECKS = ("rearrange", "reinit", "invert")


def load(path=RESULTS / "at_init.jsonl") -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def imp_rows(seeds=(0, 1)) -> dict[float, list[tuple[float, float]]]:
    """Per nominal Pm, the IMP round closest to it: [(actual Pm, accuracy %)] per seed."""
    out = defaultdict(list)
    for seed in seeds:
        path = RESULTS / f"lenet_rewind_s{seed}_r24.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())["rows"]
        for pm in NOMINAL:
            row = min(rows, key=lambda r: abs(r["percent_remaining"] - pm))
            out[pm].append((row["percent_remaining"], 100 * row["early_stop_test_accuracy"]))
    return out


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.2f} [n=1]"
    return f"{mean:.2f} ({min(values):.2f}–{max(values):.2f})"


def accuracies(rows, method: str, check: str | None, sparsity: float) -> list[float]:
    """Test accuracies (%) at early stop of the runs of one method, check and sparsity."""
    return [
        100 * r["early_stop_test_accuracy"]
        for r in rows
        if r["method"] == method and r["check"] == check and r["sparsity"] == sparsity
    ]


def accuracy_table(rows) -> str:
    imp = imp_rows()
    head = "| Pm % | IMP ticket (Pm %) | " + " | ".join(METHODS) + " |"
    lines = [head, "|---:|---:|" + "---:|" * len(METHODS)]
    for pm in NOMINAL:
        sparsity = round(1 - pm / 100, 3)
        cells = [cell(accuracies(rows, m, None, sparsity)) for m in METHODS]
        found = imp.get(pm, [])
        imp_cell = cell([a for _, a in found])
        if found:
            imp_cell += f" ({sum(p for p, _ in found) / len(found):.1f})"
        lines.append(f"| {pm:g} | {imp_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checks_table(rows, sparsity=0.95) -> str:
    lines = [
        "| method | as scored | rearrange | reinit | invert |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in METHODS[:4]:
        cells = [cell(accuracies(rows, m, check, sparsity)) for check in (None, *CHECKS)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def layers_table(rows, sparsity=0.995) -> str:
    """Per layer, % of its weights kept (mean over seeds), and the test accuracy."""
    lines = [
        "| method | 784×300 | 300×100 | 100×10 (output) | test accuracy % |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in METHODS:
        picked = [
            r for r in rows if r["method"] == m and r["check"] is None and r["sparsity"] == sparsity
        ]
        if not picked:
            continue
        per_layer = [list(r["layer_remaining"].values()) for r in picked]
        means = [100 * sum(v) / len(v) for v in zip(*per_layer)]
        acc = cell([100 * r["early_stop_test_accuracy"] for r in picked])
        lines.append(f"| {m} | " + " | ".join(f"{v:.2f}" for v in means) + f" | {acc} |")
    return "\n".join(lines)


def time_table(rows) -> str:
    lines = ["| method | pruning (s), median | range | training 3,000 it. (s), median |"]
    lines.append("|---|---:|---:|---:|")
    for m in METHODS:
        picked = [r for r in rows if r["method"] == m and r["check"] is None]
        if not picked:
            continue
        p = [r["prune_seconds"] for r in picked]
        t = [r["train_seconds"] for r in picked]
        lines.append(f"| {m} | {median(p):.2f} | {min(p):.2f}–{max(p):.2f} | {median(t):.0f} |")
    return "\n".join(lines)


def plot(rows, path=RESULTS / "at_init.png") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in METHODS:
        xs, ys = [], []
        for pm in NOMINAL:
            sparsity = round(1 - pm / 100, 3)
            acc = [
                100 * r["early_stop_test_accuracy"]
                for r in rows
                if r["method"] == m and r["check"] is None and r["sparsity"] == sparsity
            ]
            if acc:
                xs.append(pm)
                ys.append(sum(acc) / len(acc))
        ax.plot(xs, ys, marker="o", label=m)
    imp = imp_rows()
    if imp:
        pts = sorted(
            (sum(p for p, _ in v) / len(v), sum(a for _, a in v) / len(v)) for v in imp.values()
        )
        ax.plot(*zip(*pts), marker="s", color="black", label="IMP ticket (rewind θ0)")
    ax.set_xscale("log")
    ax.set_xticks([20, 5, 1.4, 0.5], ["20", "5", "1.4", "0.5"])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy at early stop (%)")
    ax.set_ylim(bottom=max(0, ax.get_ylim()[0]))
    ax.set_title("LeNet-300-100, MNIST: pruning at initialization vs IMP (3,000 it.)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--plot", action="store_true")
    args = p.parse_args(argv)
    rows = load()
    tables = (accuracy_table, checks_table, layers_table, time_table)
    print(*(table(rows) for table in tables), sep="\n\n")
    if args.plot:
        print("wrote", plot(rows))


if __name__ == "__main__":
    main()

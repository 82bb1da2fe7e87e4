"""Markdown tables for experiments/README.md from ``experiments/results``.

PYTHONPATH=. python experiments/tables.py            # print them
PYTHONPATH=. python experiments/tables.py --readme   # rewrite them in README.md
"""

from __future__ import annotations

import argparse
import json
import re

from common import RESULTS, ROOT

README = ROOT / "README.md"

#: seeds of the main comparison (rewind / reinit / random_prune / rearrange)
SEEDS = (0, 1, 2)
#: seeds of the one-shot runs
ONE_SHOT_SEEDS = (0, 1)


def load(name):
    path = RESULTS / f"lenet_{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def by_pm(run):
    return {round(r["percent_remaining"], 1): r for r in run["rows"]} if run else {}


def fmt(row):
    if row is None:
        return "–"
    return f"{100 * row['early_stop_test_accuracy']:.2f} @ {row['early_stop_iteration']}"


def lenet_table(names, titles):
    runs = [by_pm(load(n)) for n in names]
    pms = sorted({pm for run in runs for pm in run}, reverse=True)
    lines = [
        "| Pm % | " + " | ".join(titles) + " |",
        "|---:|" + "---:|" * len(titles),
    ]
    for pm in pms:
        lines.append(f"| {pm} | " + " | ".join(fmt(run.get(pm)) for run in runs) + " |")
    return "\n".join(lines)


def summary_table(pms=(100.0, 51.3, 21.1, 7.0, 3.6)):
    """Mean over the seeds present (n in brackets): accuracy % and iteration."""
    strategies = ("rewind", "reinit", "random_prune", "rearrange")
    lines = [
        "| Pm % | " + " | ".join(strategies) + " |",
        "|---:|" + "---:|" * len(strategies),
    ]
    for pm in pms:
        cells = []
        for st in strategies:
            rows = [by_pm(load(f"{st}_s{seed}_r15")).get(pm) for seed in SEEDS]
            rows = [r for r in rows if r is not None]
            if not rows:
                cells.append("–")
                continue
            acc = [100 * r["early_stop_test_accuracy"] for r in rows]
            it = [r["early_stop_iteration"] for r in rows]
            cells.append(
                f"{sum(acc) / len(acc):.2f} ({min(acc):.2f}–{max(acc):.2f}) @ "
                f"{sum(it) / len(it):.0f} [n={len(rows)}]"
            )
        lines.append(f"| {pm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def one_shot_table():
    head = "| Pm % | " + " | ".join(
        f"iterative s{seed} | one-shot s{seed}" for seed in ONE_SHOT_SEEDS
    )
    lines = [head + " |", "|---:|" + "---:|---:|" * len(ONE_SHOT_SEEDS)]
    for r in (3, 7, 11):
        cells, pm = [], None
        for seed in ONE_SHOT_SEEDS:
            run = load(f"rewind_s{seed}_r{r}_oneshot")
            row = run["rows"][-1] if run else None
            pm = pm or (row and round(row["percent_remaining"], 1))
            cells += [fmt(by_pm(load(f"rewind_s{seed}_r15")).get(pm)), fmt(row)]
        if pm is not None:
            lines.append(f"| {pm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: seeds of the full-length (50,000 iterations per round) runs
FULL_SEEDS = (0, 1)


def mean_cell(rows, key="early_stop_test_accuracy"):
    """``mean (min–max) @ mean early-stopping iteration`` over the rows present."""
    rows = [r for r in rows if r is not None]
    if not rows:
        return "–"
    acc = [100 * r[key] for r in rows]
    it = [r["early_stop_iteration"] for r in rows]
    return f"{sum(acc) / len(acc):.2f} ({min(acc):.2f}–{max(acc):.2f}) @ {sum(it) / len(it):.0f}"


def pm_table(names, titles, length):
    """Per Pm, each strategy at early stop (mean over seeds) and at the end of the round."""
    runs = {k: [by_pm(load(n.format(seed))) for seed in FULL_SEEDS] for k, n in names.items()}
    pms = sorted({pm for rs in runs.values() for run in rs for pm in run}, reverse=True)
    head = " | ".join(f"{title} at early stop | at {length}" for title in titles)
    lines = [f"| Pm % | {head} |", "|---:|" + "---:|" * (2 * len(names))]
    for pm in pms:
        cells = []
        for k in names:
            rows = [run.get(pm) for run in runs[k]]
            cells.append(mean_cell(rows))
            final = [100 * r["final_test_accuracy"] for r in rows if r is not None]
            cells.append(f"{sum(final) / len(final):.2f}" if final else "–")
        lines.append(f"| {pm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def full_length_table():
    """Rewind vs reinit at 50,000 iterations per round: at early stop and at the end."""
    names = {"rewind": "rewind_s{}_r15_n50000", "reinit": "reinit_s{}_r15_n50000"}
    return pm_table(names, ["winning ticket", "reinit"], "50,000")


def retrain_table():
    """Rewind to θ0 vs learning-rate rewinding vs fine-tuning, 5,000 iterations per round."""
    names = {
        "rewind": "rewind_s{}_r10_n5000",
        "lr_rewind": "lr_rewind_s{}_r10_n5000",
        "finetune": "finetune_s{}_r10_n5000",
    }
    return pm_table(names, list(names), "5,000")


def early_bird_table():
    """Cost and final ticket of full IMP vs early-bird rounds, per seed and mean."""
    variants = (
        ("full IMP (rewind θ0)", "rewind_s{}_r15_n50000"),
        ("early-bird, tolerance 0.1", "rewind_s{}_r15_eb_n50000"),
        ("early-bird, tolerance 0.2", "rewind_s{}_r15_eb0.2_n50000"),
    )
    lines = [
        "| search | iterations (s0, s1) | × full IMP | rounds stopped early "
        "| final ticket at 50,000 (s0, s1) | mean | − full IMP | at early stop, mean "
        "| wall s (s0, s1) | stops before half the round | × full IMP, those moved to half |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    full_total = full_acc = None
    for title, name in variants:
        runs = [load(name.format(seed)) for seed in FULL_SEEDS]
        if any(run is None for run in runs):
            continue
        totals = [sum(r["iterations"] for r in run["rows"]) for run in runs]
        final = [100 * run["rows"][-1]["final_test_accuracy"] for run in runs]
        at_es = [100 * run["rows"][-1]["early_stop_test_accuracy"] for run in runs]
        stopped = [sum(r["iterations"] < run["args"]["steps"] for r in run["rows"]) for run in runs]
        # What min_fraction=0.5 (the default since these runs) changes: a stop before half the
        # round moves to half of it at least; the other rounds are taken as recorded.
        half = [run["args"]["steps"] // 2 for run in runs]
        early = [sum(r["iterations"] < h for r in run["rows"]) for h, run in zip(half, runs)]
        moved = [sum(max(r["iterations"], h) for r in run["rows"]) for h, run in zip(half, runs)]
        total, acc = sum(totals) / len(totals), sum(final) / len(final)
        full_total = full_total or total
        full_acc = full_acc if full_acc is not None else acc
        stops = ", ".join(f"{n}/{len(run['rows'])}" for n, run in zip(stopped, runs))
        walls = ", ".join(f"{run['wall_seconds_this_call']:.0f}" for run in runs)
        lines.append(
            f"| {title} | {', '.join(f'{t:,}' for t in totals)} | {total / full_total:.2f}× "
            f"| {stops} | {', '.join(f'{a:.2f}' for a in final)} | {acc:.2f} "
            f"| {acc - full_acc:+.2f} | {sum(at_es) / len(at_es):.2f} | {walls} "
            f"| {', '.join(map(str, early))} | {sum(moved) / len(moved) / full_total:.2f}× |"
        )
    return "\n".join(lines)


def xor_table():
    path = RESULTS / "xor_trials.jsonl"
    if not path.exists():
        return ""
    trials = [json.loads(line) for line in path.read_text().splitlines()]
    n = len(trials)

    def rate(k):
        ok = sum(t[k]["ok"] for t in trials)
        return f"{ok}/{n} ({100 * ok / n:.0f}%)"

    lines = [
        f"From scratch: 2 units {rate('scratch2')}, 4 units {rate('scratch4')}, "
        f"10 units {rate('scratch10')}.",
        "",
        "| pruned 10 → | criterion | iterative | one-shot |",
        "|---|---|---:|---:|",
    ]
    for units in (2, 4):
        for c in ("input", "output", "product"):
            lines.append(
                f"| {units} units | {c} | {rate(f'iter_{c}_{units}')} | "
                f"{rate(f'oneshot_{c}_{units}')} |"
            )
    return "\n".join(lines)


def movement_tables():
    path = RESULTS / "weight_movement.json"
    if not path.exists():
        return "", ""
    d = json.loads(path.read_text())
    mv = [
        "| mask of | layer | kept | move kept | move pruned | ratio | abs θ0 kept "
        "| abs θ0 pruned |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, layers in d["movement"].items():
        for name, x in layers.items():
            mv.append(
                f"| {key} | {name} | {x['kept_fraction']:.3f} | {x['mean_move_kept']:.4f} | "
                f"{x['mean_move_pruned']:.4f} | {x['move_ratio_kept_over_pruned']:.2f} | "
                f"{x['mean_abs_theta0_kept']:.4f} | {x['mean_abs_theta0_pruned']:.4f} |"
            )
    cn = [
        "| mask of | layer | inputs per unit mean (min–max) | no input | no output "
        "| dead (either) | unused pixels |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, rows in d["connectivity"].items():
        for row, name in zip(rows, d["layers"]):
            cn.append(
                f"| {key} | {name} | {row['in_per_unit_mean']:.1f} "
                f"({row['in_per_unit_min']}–{row['in_per_unit_max']}) | {row['units_no_input']} | "
                f"{row.get('units_no_output', '–')} | {row.get('units_dead_either_side', '–')} | "
                f"{row.get('inputs_unused', '–')} |"
            )
    return "\n".join(mv), "\n".join(cn)


def tables() -> dict[str, str]:
    """Every table, by the name of its ``<!-- table:NAME -->`` block in README.md."""
    out = {"summary": summary_table()}
    for seed in SEEDS:
        out[f"seed{seed}"] = lenet_table(
            [f"{s}_s{seed}_r15" for s in ("rewind", "reinit", "random_prune", "rearrange")],
            ["winning ticket (rewind θ0)", "reinit", "random prune", "rearrange"],
        )
    out["one-shot"] = one_shot_table()
    out["reset"] = lenet_table(
        ["rewind_s0_r15", "continue_s0_r10", "rewind_s0_r10_k100"],
        ["rewind θ0", "continue (Han et al.)", "late rewind k=100"],
    )
    out["full-length"] = full_length_table()
    out["early-bird"] = early_bird_table()
    out["retrain"] = retrain_table()
    out["movement"], out["connectivity"] = movement_tables()
    out["xor"] = xor_table()
    return out


def update_readme(path=README) -> list[str]:
    """Replace each ``<!-- table:NAME -->`` ... ``<!-- /table -->`` block; return the names."""
    text, done = path.read_text(), []
    for name, table in tables().items():
        pattern = re.compile(rf"(<!-- table:{re.escape(name)} -->\n).*?(<!-- /table -->)", re.S)
        text, n = pattern.subn(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), text)
        if n:
            done.append(name)
    path.write_text(text)
    return done


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readme", action="store_true", help="rewrite the tables in README.md")
    args = ap.parse_args(argv)
    if args.readme:
        print("updated:", ", ".join(update_readme()))
        return
    for name, table in tables().items():
        print(f"## {name}\n\n{table}\n")


if __name__ == "__main__":
    main()

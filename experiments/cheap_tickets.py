"""Cheap tickets: accuracy against cost (training-equivalents) on real MNIST.

    KERAS_BACKEND=jax PYTHONPATH=. nice -n 10 python experiments/cheap_tickets.py --seeds 0 1 2
    PYTHONPATH=. python experiments/cheap_tickets.py --report --plot

Every way to a ticket that keras-lottery offers, at 7.0 %, 3.6 % and 1.4 % of
LeNet-300-100's weights (rounds 12, 15 and 19 of IMP at 20 % per round, 10 % for
the output layer), with the paper's optimizer (Adam 1.2e-3, batch 60),
55k / 5k / 10k images, every training ``--steps`` iterations long:

* ``imp``: one IMP search of 19 rounds with rewinding to θ0; the ticket at round
  r costs r + 1 trainings;
* ``early_bird``: IMP whose pruning rounds stop once the mask settles
  (``early_bird=True``), one search per sparsity;
* ``one_shot``: one training, one pruning to the target, the ticket's training;
* ``learned``: ``method="learned"`` (gates learned in one training, same
  per-layer counts as IMP's round r); ``learned_half`` and ``learned_long`` with
  ``mask_phase`` 0.5 and 3 (1.5 and 4 trainings in all);
* ``subset``: IMP whose pruning rounds train on 10 % of the examples
  (``prune_subset=0.1``, the critical rule), round 0 and the ticket on all;
  ``subset_random`` the same on a random 10 % (the control of the critical rule);
* ``snip``, ``synflow``: pruning at initialization (global scope) to the same
  overall sparsity, then one training.

Cost: training iterations from a random network to the trained ticket, in
training-equivalents (iterations / ``--steps``).  Accuracy: test accuracy at the
iteration of minimum validation loss, evaluated every ``--eval-every``.  With
``--conv`` the same for a Conv-2-shaped network (zoo ``conv2``, Adam 2e-4) at
``--conv-rounds`` rounds of IMP (conv layers 10 %, dense 20 %, output 10 % per
round, as the paper's Conv-2).  One JSON line per ticket goes to
``results/cheap_tickets.jsonl``; a ticket already there is skipped (resumes).
"""

from __future__ import annotations

import argparse
import json
import re

from common import RESULTS, Timer, keras, kl, lenet, mnist_splits, np

OUT = RESULTS / "cheap_tickets.jsonl"
#: IMP rounds of 20 % whose tickets keep 7.0 %, 3.6 % and 1.4 % of LeNet's weights.
ROUNDS = (12, 15, 19)
METHODS = (
    "imp",
    "early_bird",
    "one_shot",
    "learned",
    "learned_half",
    "learned_long",
    "subset",
    "subset_random",
    "snip",
    "synflow",
)


def _conv2(seed: int, spe: int) -> keras.Model:
    from keras_lottery.zoo import conv2

    keras.utils.set_random_seed(seed)
    model = conv2((28, 28), 10, seed=seed)
    if spe > 1:
        config = model.get_compile_config()
        config["steps_per_execution"] = spe
        model.compile_from_config(config)
    return model


def _net(net: str, seed: int, spe: int) -> keras.Model:
    return lenet(seed, spe) if net == "lenet" else _conv2(seed, spe)


def _rates(net: str) -> dict:
    """The paper's per-round rates: 20 % (conv layers 10 %), output 10 %."""
    if net == "lenet":
        return {"rate": 0.2, "output_rate": 0.1}
    return {"rate": 0.2, "output_rate": 0.1, "layer_rates": {"conv_1": 0.1, "conv_2": 0.1}}


def _row(net, method, rounds, seed, args, record, upto, seconds, **extra):
    """One ticket: the final round ``upto`` of ``record`` and what it cost."""
    final = record.rounds[upto]
    iterations = sum(r.iterations for r in record.rounds[: upto + 1])
    return {
        "net": net,
        "method": method,
        "rounds": rounds,
        "seed": seed,
        "steps": args.steps,
        "percent_remaining": final.percent_remaining,
        "layer_remaining": {k: 1 - v for k, v in final.layer_sparsity.items()},
        "early_stop_test_accuracy": final.early_stop_test_accuracy,
        "final_test_accuracy": final.test_accuracy,
        # round 0 (the dense net, or the mask phase of learned masks)
        "round0_early_stop_test_accuracy": record.rounds[0].early_stop_test_accuracy,
        "iterations": iterations,
        "training_equivalents": iterations / args.steps,
        "seconds": seconds,
        **extra,
    }


def _search(net, seed, splits, args, **options):
    train, val, test = splits
    with Timer() as t:
        ticket = kl.find_ticket(
            _net(net, seed, args.spe),
            train,
            validation_data=val,
            test_data=test,
            steps=args.steps,
            eval_every=args.eval_every,
            batch_size=60,
            seed=seed,
            verbose=0,
            **_rates(net),
            **options,
        )
    return ticket.lottery, t.seconds


def run(net, method, rounds, seed, splits, args, imp_rounds=()) -> list[dict]:
    """The ticket(s) of one method; IMP gives one for each of ``imp_rounds``."""
    if method == "imp":
        record, seconds = _search(net, seed, splits, args, rounds=max(imp_rounds))
        return [_row(net, method, r, seed, args, record, r, seconds) for r in imp_rounds]
    if method in ("snip", "synflow"):
        return [_at_init(net, method, rounds, seed, splits, args)]
    options = {
        "early_bird": {"early_bird": True},
        "one_shot": {"one_shot": True},
        "learned": {"method": "learned"},
        "learned_half": {"method": "learned", "mask_phase": 0.5},
        "learned_long": {"method": "learned", "mask_phase": 3.0},
        "subset": {"prune_subset": 0.1},
        "subset_random": {"prune_subset": 0.1, "subset_rule": "random"},
    }[method]
    record, seconds = _search(net, seed, splits, args, rounds=rounds, **options)
    return [_row(net, method, rounds, seed, args, record, len(record.rounds) - 1, seconds)]


def stored_imp(seed: int, args) -> list[dict]:
    """IMP's tickets at ``args.rounds`` from a stored ``lenet_mnist.py`` search of 24 rounds.

    Same network, θ0, data, optimizer and evaluation as this script's own IMP
    searches; refused unless its training length and evaluation match ``args``.
    """
    path = RESULTS / f"lenet_rewind_s{seed}_r24.json"
    stored = json.loads(path.read_text())
    setup = stored["args"]
    if (setup["steps"], setup["eval_every"]) != (args.steps, args.eval_every):
        raise ValueError(
            f"{path.name} trained {setup['steps']} iterations per round, evaluated every "
            f"{setup['eval_every']}: run with --steps {setup['steps']} --eval-every "
            f"{setup['eval_every']}."
        )
    rows = stored["rows"]
    out = []
    for r in args.rounds:
        final = rows[r]
        iterations = sum(row["iterations"] for row in rows[: r + 1])
        out.append(
            {
                "net": "lenet",
                "method": "imp",
                "rounds": r,
                "seed": seed,
                "steps": args.steps,
                "percent_remaining": final["percent_remaining"],
                "layer_remaining": final["layer_remaining"],
                "early_stop_test_accuracy": final["early_stop_test_accuracy"],
                "final_test_accuracy": final["final_test_accuracy"],
                "iterations": iterations,
                "training_equivalents": iterations / args.steps,
                "seconds": sum(row["seconds"] for row in rows[: r + 1]),
                "source": path.name,
            }
        )
    return out


def _at_init(net, method, rounds, seed, splits, args) -> dict:
    """Prune at θ0 (global) to IMP's overall sparsity at ``rounds``, then train once."""
    from keras_lottery.callbacks import EvaluationCurve, Evaluator
    from keras_lottery.data.datasets import numpy_batches

    train, val, test = splits
    model = _net(net, seed, args.spe)
    target = _imp_sparsity(model, rounds, net)
    with Timer() as t:
        ticket = kl.prune_at_init(model, train, sparsity=target, method=method, seed=seed)
        curve = EvaluationCurve(Evaluator(ticket, *val), Evaluator(ticket, *test), args.eval_every)
        ticket.fit(
            numpy_batches(*train, 60, seed),
            epochs=1,
            steps_per_epoch=args.steps,
            callbacks=[curve],
            shuffle=False,
            verbose=0,
        )
    best = curve.early_stop()
    return {
        "net": net,
        "method": method,
        "rounds": rounds,
        "seed": seed,
        "steps": args.steps,
        "percent_remaining": 100 * ticket.at_init["remaining"],
        "layer_remaining": ticket.at_init["layer_remaining"],
        "early_stop_test_accuracy": best["test_accuracy"],
        "final_test_accuracy": curve.curve[-1]["test_accuracy"],
        "iterations": args.steps,
        "training_equivalents": 1.0,
        "seconds": t.seconds,
    }


def _imp_sparsity(model, rounds, net) -> float:
    """IMP's overall sparsity after ``rounds`` prunings at the paper's rates."""
    rates = _rates(net)
    kept = total = 0
    kernels = [w for w in model.weights if len(w.shape) >= 2]
    for i, w in enumerate(kernels):
        size = int(np.prod(w.shape))
        rate = rates["output_rate"] if i == len(kernels) - 1 else rates["rate"]
        name = w.path.split("/")[0]
        rate = rates.get("layer_rates", {}).get(name, rate)
        kept += round(size * (1 - rate) ** rounds)
        total += size
    return 1 - kept / total


def plan(args):
    for seed in args.seeds:
        for method in args.methods:
            if method == "imp":
                yield "lenet", method, max(args.rounds), seed
                continue
            for rounds in args.rounds if method != "early_bird" else args.early_bird_rounds:
                yield "lenet", method, rounds, seed
        if args.conv:
            for method in args.conv_methods:
                yield "conv2", method, args.conv_rounds, seed


def _done(path) -> set:
    done = set()
    try:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                done.add((r["net"], r["method"], r["rounds"], r["seed"], r["steps"]))
    except FileNotFoundError:
        pass
    return done


def report(path, plot: bool) -> str:
    """The table (mean over seeds, min-max) and, with ``plot``, results/cheap_tickets.png."""
    rows = [json.loads(line) for line in open(path)]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["net"], r["steps"], r["rounds"], r["method"]), []).append(r)
    lines = [
        "| net | iterations per training | Pm % | method | test acc. % (min-max) | "
        "− IMP | training-equivalents | × IMP | seeds |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for (net, steps, rounds, method), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], METHODS.index(kv[0][3]))
    ):
        acc = [100 * r["early_stop_test_accuracy"] for r in rs]
        te = float(np.mean([r["training_equivalents"] for r in rs]))
        imp = groups.get((net, steps, rounds, "imp"))
        gap = cost = ""
        if imp:
            seeds = {r["seed"] for r in rs} & {r["seed"] for r in imp}
            if seeds:
                gap = f"{_mean_accuracy(rs, seeds) - _mean_accuracy(imp, seeds):+.2f}"
            cost = f"{te / np.mean([r['training_equivalents'] for r in imp]):.3f}"
        pm = np.mean([r["percent_remaining"] for r in rs])
        lines.append(
            f"| {net} | {steps} | {pm:.1f} | {method} | {np.mean(acc):.2f} "
            f"({min(acc):.2f}–{max(acc):.2f}) | {gap} | {te:.2f} | {cost} | {len(rs)} |"
        )
    if plot:
        _plot(groups)
    return "\n".join(lines)


#: Pages holding the table between ``<!-- table:cheap-tickets -->`` and ``<!-- /table -->``.
PAGES = (RESULTS.parent / "README.md", RESULTS.parent.parent / "docs/guides/lottery-tickets.md")


def _replace_table(page, table: str) -> None:
    text = page.read_text()
    pattern = re.compile(r"(<!-- table:cheap-tickets -->\n).*?(<!-- /table -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"{page} has no <!-- table:cheap-tickets --> block.")
    tmp = page.with_suffix(".md.tmp")
    tmp.write_text(pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text))
    tmp.replace(page)


def _mean_accuracy(rows, seeds) -> float:
    return float(np.mean([100 * r["early_stop_test_accuracy"] for r in rows if r["seed"] in seeds]))


def _plot(groups) -> None:
    """One panel per (training length, sparsity) of LeNet: accuracy against cost, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = {(k[1], k[2]) for k in groups if k[0] == "lenet"}
    lengths, rounds = sorted({k[0] for k in keys}), sorted({k[1] for k in keys})
    fig, axes = plt.subplots(
        len(lengths), len(rounds), figsize=(4.2 * len(rounds), 3.8 * len(lengths)), squeeze=False
    )
    colors = dict(zip(METHODS, plt.get_cmap("tab10").colors))
    for (i, steps), (j, r) in ((a, b) for a in enumerate(lengths) for b in enumerate(rounds)):
        ax = axes[i][j]
        found = {m: groups.get(("lenet", steps, r, m)) for m in METHODS}
        found = {m: rs for m, rs in found.items() if rs}
        if not found:
            ax.axis("off")
            continue
        for method, rs in found.items():
            x = np.mean([row["training_equivalents"] for row in rs])
            y = np.mean([100 * row["early_stop_test_accuracy"] for row in rs])
            ax.scatter([x], [y], color=colors[method])
            ax.annotate(method, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        pm = np.mean([row["percent_remaining"] for rs in found.values() for row in rs])
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 4, 8, 16])
        ax.set_xticklabels(["1", "2", "4", "8", "16"])
        ax.set_title(f"LeNet-300-100, {pm:.1f}% of weights,\n{steps:,} iterations a training")
        ax.set_xlabel("cost (training-equivalents, log)")
        ax.set_ylabel("test accuracy % (early stop)")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / "cheap_tickets.png.tmp"
    fig.savefig(tmp, dpi=100, format="png")
    tmp.replace(RESULTS / "cheap_tickets.png")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=50000, help="iterations per training (paper)")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--rounds", type=int, nargs="+", default=list(ROUNDS))
    p.add_argument("--early-bird-rounds", type=int, nargs="+", default=list(ROUNDS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--conv", action="store_true", help="also the Conv-2-shaped network")
    p.add_argument("--conv-rounds", type=int, default=15)
    p.add_argument("--conv-steps", type=int, default=None, help="default: --steps")
    p.add_argument("--conv-eval-every", type=int, default=None, help="default: --eval-every")
    p.add_argument("--conv-methods", nargs="+", default=["imp", "learned"], choices=METHODS)
    p.add_argument("--spe", type=int, default=50, help="steps per compiled call (same results)")
    p.add_argument("--train-size", type=int, default=None, help="cut the 55k set (tests)")
    p.add_argument(
        "--imp-from-section-8",
        action="store_true",
        help="take IMP's tickets from results/lenet_rewind_s<seed>_r24.json (section 8's "
        "searches: 3,000 iterations, evaluation every 150) instead of running IMP",
    )
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--report", action="store_true", help="print the table of --out and stop")
    p.add_argument("--plot", action="store_true", help="with --report: results/cheap_tickets.png")
    p.add_argument(
        "--readme", action="store_true", help="with --report: rewrite the tables in the docs"
    )
    args = p.parse_args(argv)
    if args.report:
        table = report(args.out, args.plot)
        print(table)
        if args.readme:
            for page in PAGES:
                _replace_table(page, table)
        return
    splits = mnist_splits(args.train_size)
    done = _done(args.out)
    conv_args = argparse.Namespace(**vars(args))
    conv_args.steps = args.conv_steps or args.steps
    conv_args.eval_every = args.conv_eval_every or args.eval_every
    if args.imp_from_section_8:
        for seed in args.seeds:
            with open(args.out, "a") as f:
                for row in stored_imp(seed, args):
                    if ("lenet", "imp", row["rounds"], seed, args.steps) not in done:
                        f.write(json.dumps(row) + "\n")
        done = _done(args.out)
    for net, method, rounds, seed in plan(args):
        net_args = args if net == "lenet" else conv_args
        if (net, method, rounds, seed, net_args.steps) in done:
            continue
        imp_rounds = args.rounds if net == "lenet" else [rounds]
        rows = run(net, method, rounds, seed, splits, net_args, imp_rounds)
        with open(args.out, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        for row in rows:
            print(
                f"{net} {method:12s} r={row['rounds']:2d} seed={seed} "
                f"Pm={row['percent_remaining']:.2f}% acc={row['early_stop_test_accuracy']:.4f} "
                f"cost={row['training_equivalents']:.2f} te {row['seconds']:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()

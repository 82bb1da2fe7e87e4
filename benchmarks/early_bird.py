"""Early-bird rounds vs full IMP: training iterations of the search and the ticket's accuracy.

LeNet-300-100 (``keras_lottery.zoo``, Adam 1.2e-3, batch 60) on the real MNIST
training digits, ``--rounds`` prunings at 20% (10% for the output layer),
``--steps`` iterations per round.  For each seed, the same search runs with full
rounds and with ``early_bird=EarlyBird(window, tolerance)`` for every
``--tolerances`` value; all prune to the same final sparsity.  Reported per
setting, mean over seeds: total training iterations of the search (pruning
rounds + final ticket) relative to full IMP, the final ticket's test accuracy
on the 10,000 test digits (``--test-size``: the first that many), and wall time.
``--train-size`` trains on the first that many digits; ``--epochs`` sets the
round length in epochs instead of ``--steps``.  ``--settings`` compares named
``EarlyBird`` settings instead of ``--tolerances``, e.g.
``"old:min_fraction=0;new:"`` (``name:field=value,field=value``; empty: defaults).

    PYTHONPATH=. python benchmarks/early_bird.py --rounds 5 --steps 1500 --seeds 0,1
    PYTHONPATH=. KERAS_BACKEND=jax python benchmarks/early_bird.py --rounds 3 --epochs 4 \
        --train-size 8000 --test-size 5000 --seeds 0,1 \
        --settings "early_bird=True (min_fraction 0):min_fraction=0;early_bird=True:"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench  # noqa: E402


def search(data, rounds: int, steps, seed: int, early_bird=None, epochs=None) -> dict:
    import keras_lottery as kl
    from keras_lottery.zoo import lenet_300_100

    t0 = time.perf_counter()
    length = {"steps": steps} if epochs is None else {"epochs": epochs}
    ticket = kl.find_ticket(
        lenet_300_100(seed=seed),
        (data.x_train, data.y_train),
        test_data=(data.x_test, data.y_test),
        rounds=rounds,
        **length,
        batch_size=60,
        seed=seed,
        verbose=0,
        early_bird=early_bird,
    )
    record = ticket.lottery
    return {
        "iterations": sum(r.iterations for r in record.rounds),
        "round_iterations": [r.iterations for r in record.rounds],
        "stops": [r.early_bird_iteration for r in record.rounds[:-1]],
        "reasons": [r.early_bird_reason for r in record.rounds[:-1]],
        "percent_remaining": record.final.percent_remaining,
        "test_accuracy": record.final.test_accuracy,
        "seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--tolerances", default="0.1,0.03", help="early-bird tolerances to compare")
    ap.add_argument("--settings", help="named EarlyBird settings: 'name:k=v,k=v;name2:...'")
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--epochs", type=int, help="round length in epochs (instead of --steps)")
    ap.add_argument("--train-size", type=int, help="train on the first this many digits")
    ap.add_argument("--test-size", type=int, help="test on the first this many digits")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    _bench.set_threads(args.threads)
    import keras_lottery as kl
    from keras_lottery.data.datasets import load_dataset

    data = load_dataset(str(_bench.MNIST)).subset(args.train_size, args.test_size)
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = {"full IMP": None}
    if args.settings:
        for entry in args.settings.split(";"):
            name, _, fields = entry.partition(":")
            kw = dict(f.split("=") for f in fields.split(",") if f)
            ints = ("window", "check_every")
            kw = {k: (int(v) if k in ints else float(v)) for k, v in kw.items()}
            settings[name] = kl.EarlyBird(**kw)
    else:
        for tol in (float(t) for t in args.tolerances.split(",")):
            settings[f"early-bird tol {tol:g}"] = kl.EarlyBird(window=args.window, tolerance=tol)
    results = {name: [] for name in settings}
    for seed in seeds:  # settings side by side within each seed
        for name, eb in settings.items():
            res = search(data, args.rounds, args.steps, seed, eb, args.epochs)
            results[name].append(res)
            print(name, seed, json.dumps(res), flush=True)

    full = statistics.mean(r["iterations"] for r in results["full IMP"])
    full_acc = statistics.mean(r["test_accuracy"] for r in results["full IMP"])
    length = f"{args.steps} steps" if args.epochs is None else f"{args.epochs} epochs"
    print(f"\n{_bench.versions()}; seeds {seeds}; {args.rounds} rounds x {length}\n")
    print(
        "| search | weights remaining | iterations | vs full IMP | test acc % (per seed) "
        "| Δ acc (points) | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        its = statistics.mean(r["iterations"] for r in runs)
        acc = statistics.mean(r["test_accuracy"] for r in runs)
        per_seed = ", ".join(f"{100 * r['test_accuracy']:.2f}" for r in runs)
        print(
            f"| {name} | {runs[0]['percent_remaining']:.1f}% | {its:,.0f} | {its / full:.2f}× "
            f"| {100 * acc:.2f} ({per_seed}) | {100 * (acc - full_acc):+.2f} "
            f"| {statistics.mean(r['seconds'] for r in runs):.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()

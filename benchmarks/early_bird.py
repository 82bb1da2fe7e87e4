"""Early-bird rounds vs full IMP: training iterations of the search and the ticket's accuracy.

LeNet-300-100 (``keras_lottery.zoo``, Adam 1.2e-3, batch 60) on the real MNIST
training digits, ``--rounds`` prunings at 20% (10% for the output layer),
``--steps`` iterations per round.  For each seed, the same search runs with full
rounds and with ``early_bird=EarlyBird(window, tolerance)`` for every
``--tolerances`` value; all prune to the same final sparsity.  ``--train-size``
trains on the first that many digits, ``--test-size`` tests on the first that
many of the 10,000 test digits; ``--epochs`` sets the round length in epochs
instead of ``--steps``.  ``--settings`` compares named ``EarlyBird`` settings
instead of ``--tolerances``, e.g. ``"old:min_fraction=0;new:"``
(``name:field=value,field=value``; empty: defaults).

Printed (and written to ``--out``, Markdown): one row per setting with the
total training iterations of the search (pruning rounds + final ticket), mean
over seeds and relative to full IMP; how many pruning rounds stopped early and
where (iteration, and % of the round's full length, min–max over seeds and
rounds); the final ticket's test accuracy, mean (min–max over seeds); its
difference to full IMP, mean (min–max of the per-seed differences); wall time.
Then one row per seed and setting: iterations, each round's stop, accuracy, Δ.

    PYTHONPATH=. python benchmarks/early_bird.py --rounds 5 --steps 1500 --seeds 0,1
    PYTHONPATH=. KERAS_BACKEND=jax python benchmarks/early_bird.py --rounds 3 --epochs 4 \
        --train-size 8000 --test-size 5000 --seeds 0,1 \
        --settings "early_bird=True (min_fraction 0):min_fraction=0;early_bird=True:" \
        --out benchmarks/results/early_bird_short_rounds.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench  # noqa: E402

FULL = "full IMP"


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


def _span(values, fmt: str = "{:,.0f}", sep: str = "–") -> str:
    """``a–b`` of a list (``a`` when all equal)."""
    lo, hi = (fmt.format(v) for v in (min(values), max(values)))
    return lo if lo == hi else f"{lo}{sep}{hi}"


def _signed(x: float) -> str:
    """``+0.12`` / ``−0.12`` (a true minus sign, as the README's tables write it)."""
    return f"{x:+.2f}".replace("-", "−")


def tables(results: dict[str, list[dict]], seeds: list[int]) -> str:
    """The Markdown tables of a comparison: ``results[setting][i]`` is seed ``seeds[i]``'s run.

    ``results`` must hold :data:`FULL` (full IMP), the reference for the
    ratios, the round lengths and the accuracy differences.
    """
    full = results[FULL]
    full_its = statistics.mean(r["iterations"] for r in full)
    lines = [
        "| search | weights remaining | training iterations (mean) | vs full IMP "
        "| rounds stopped early | round stops: iteration (% of the round) "
        "| test acc % mean (min–max) | Δ acc, points: mean (per seed) | wall s (mean) |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name, runs in results.items():
        its = statistics.mean(r["iterations"] for r in runs)
        accs = [100 * r["test_accuracy"] for r in runs]
        deltas = [100 * (r["test_accuracy"] - f["test_accuracy"]) for r, f in zip(runs, full)]
        stops, shares = [], []
        for r, f in zip(runs, full):
            for stop, length in zip(r["stops"], f["round_iterations"]):
                if stop is not None:
                    stops.append(stop)
                    shares.append(100 * stop / length)
        pruning_rounds = sum(len(r["stops"]) for r in runs)
        where = f"{_span(stops)} ({_span(shares, '{:.0f}')}%)" if stops else "–"
        delta = f"{_signed(statistics.mean(deltas))} ({_span(deltas, '{:+.2f}', ' to ')})"
        delta = "–" if name == FULL else delta.replace("-", "−")
        lines.append(
            f"| {name} | {runs[0]['percent_remaining']:.1f}% | {its:,.0f} | {its / full_its:.2f}× "
            f"| {len(stops)}/{pruning_rounds} | {where} "
            f"| {statistics.mean(accs):.2f} ({_span(accs, '{:.2f}')}) | {delta} "
            f"| {statistics.mean(r['seconds'] for r in runs):.0f} |"
        )
    lines += [
        "",
        "| seed | search | training iterations | round stops | test acc % | Δ acc (points) |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for i, seed in enumerate(seeds):
        for name, runs in results.items():
            r = runs[i]
            stops = ", ".join("full" if s is None else f"{s:,}" for s in r["stops"])
            d = 100 * (r["test_accuracy"] - full[i]["test_accuracy"])
            lines.append(
                f"| {seed} | {name} | {r['iterations']:,} | {stops} "
                f"| {100 * r['test_accuracy']:.2f} | {'–' if name == FULL else _signed(d)} |"
            )
    return "\n".join(lines)


def versions() -> str:
    import keras

    import keras_lottery as kl

    return (
        f"keras-lottery {kl.__version__}, Keras {keras.__version__}, "
        f"{keras.backend.backend()} backend, {os.cpu_count()} CPUs"
    )


def parse_settings(text: str) -> dict:
    """``"name:k=v,k=v;name2:"`` -> ``{name: EarlyBird(k=v, ...), ...}``."""
    import keras_lottery as kl

    settings = {}
    for entry in text.split(";"):
        name, sep, fields = entry.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"--settings entry {entry!r}: write it as 'name:field=value,...'")
        kw = {}
        for field in filter(None, fields.split(",")):
            key, eq, value = field.partition("=")
            if not eq:
                raise SystemExit(f"--settings field {field!r}: write it as 'field=value'")
            kw[key] = int(value) if key in ("window", "check_every") else float(value)
        settings[name] = kl.EarlyBird(**kw)
    return settings


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
    ap.add_argument("--out", help="also write the printed tables here (Markdown)")
    ap.add_argument("--json", help="also write the per-run results here")
    args = ap.parse_args(argv)
    _bench.set_threads(args.threads)
    import keras_lottery as kl
    from keras_lottery.data.datasets import load_dataset
    from keras_lottery.records.files import atomic_write

    settings = {FULL: None}
    if args.settings:
        settings.update(parse_settings(args.settings))
    else:
        for tol in (float(t) for t in args.tolerances.split(",")):
            settings[f"early-bird tol {tol:g}"] = kl.EarlyBird(window=args.window, tolerance=tol)
    data = load_dataset(str(_bench.MNIST)).subset(args.train_size, args.test_size)
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {name: [] for name in settings}
    for seed in seeds:  # settings side by side within each seed
        for name, eb in settings.items():
            res = search(data, args.rounds, args.steps, seed, eb, args.epochs)
            results[name].append(res)
            print(name, seed, json.dumps(res), flush=True)

    length = f"{args.steps} steps" if args.epochs is None else f"{args.epochs} epochs"
    command = shlex.join(["python", "benchmarks/early_bird.py", *sys.argv[1:]])
    text = (
        f"`{command}`\n\n{versions()}; seeds {', '.join(map(str, seeds))}; "
        f"{args.rounds} prunings x {length} per round; "
        f"{len(data.x_train):,} training, {len(data.x_test):,} test digits\n\n"
        f"{tables(results, seeds)}\n"
    )
    print("\n" + text)
    if args.out:
        atomic_write(args.out, lambda f: f.write(text.encode()))
    if args.json:
        payload = json.dumps({"args": vars(args), "results": results}, indent=2).encode()
        atomic_write(args.json, lambda f: f.write(payload))


if __name__ == "__main__":
    main()

"""What one more round of a ResNet50 search costs beyond its training steps, and where it goes.

``keras.applications.ResNet50(weights=None)`` at 64x64 px, 10 classes, Adam,
64 random examples, batch 8, 2 steps a round, 2 threads; each search runs in
a fresh process (``find_ticket(rounds=R, steps=2)``, no run directory unless
``--run-dir``).  Two measures:

* **marginal round** (the whole wall, nothing assumed): ``(T(3) - T(1)) / 2``
  for one search of 3 rounds and one of 1 round, minus a warm 2-step ``fit``
  of the same model on the same stream (measured after the search, in the
  same process); the median over ``--repeats`` pairs;
* **round to round** (in one process, no compile in it): the wall from the
  start of round 1's ``fit`` to the start of round 3's, halved, minus the warm
  ``fit``: all that one more round adds, host work included, measured by a
  callback (the median over ``--repeats`` searches of 3 rounds);
* **the ledger of the 3-round searches** (``ticket.lottery.cost`` and each
  round's ``RoundRecord.outside``): for rounds after the first, the wall
  outside training by place, and the round's training beyond the warm fit.

``--checkout DIR`` (repeatable) runs the same children on other checkouts of
keras-lottery, alternating between them, so that the machine's load hits
all alike (a checkout without the ledger reports the first measure only).

    PYTHONPATH=. python benchmarks/round_overhead.py --repeats 3
    PYTHONPATH=. python benchmarks/round_overhead.py --checkout ../before --checkout .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH, STEPS, THREADS = 8, 2, 2


def child(rounds: int, run_dir: bool) -> dict:
    """One search in this process; its walls and its ledger."""
    import tempfile

    import keras
    import numpy as np

    import keras_lottery as kl
    from keras_lottery.data.datasets import array_batches

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = keras.applications.ResNet50(input_shape=(64, 64, 3), weights=None, classes=10)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((8 * BATCH, 64, 64, 3), dtype=np.float32)
    y = rng.integers(0, 10, 8 * BATCH)
    starts: list[float] = []  # the start of each round's fit

    class Starts(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            starts.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ticket = kl.find_ticket(
            model,
            (x, y),
            rounds=rounds,
            steps=STEPS,
            batch_size=BATCH,
            seed=0,
            run_dir=tmp if run_dir else None,
            callbacks=[Starts()],
            verbose=0,
        )
        total = time.perf_counter() - t0
    stream = array_batches(x, y, BATCH, 0)
    warm = []
    for _ in range(3):
        t = time.perf_counter()
        ticket.fit(stream(), steps_per_epoch=STEPS, epochs=1, shuffle=False, verbose=0)
        warm.append(time.perf_counter() - t)
    record = ticket.lottery
    cost = getattr(record, "cost", None)
    return {
        "rounds": rounds,
        "total": total,
        "warm_fit": statistics.median(warm),
        "starts": starts,
        "fit": [r.seconds for r in record.rounds],
        "outside": [getattr(r, "outside", {}) for r in record.rounds],
        "cost": None if cost is None else cost.to_dict(),
    }


def measure(checkout: str, rounds: int, run_dir: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": checkout, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(THREADS)
    args = [sys.executable, os.path.abspath(__file__), "--child", str(rounds)]
    args += ["--run-dir"] if run_dir else []
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=checkout)
    if out.returncode:
        raise RuntimeError(f"{checkout}, {rounds} rounds failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def marginal(pair: dict[int, dict]) -> float:
    """``(T(3) - T(1)) / 2`` beyond a warm 2-step fit (the warm fit: median of both runs')."""
    warm = statistics.median([pair[1]["warm_fit"], pair[3]["warm_fit"]])
    return (pair[3]["total"] - pair[1]["total"]) / 2 - warm


def round_to_round(run: dict) -> float | None:
    """Start of round 1's ``fit`` to start of round 3's, halved, beyond a warm ``fit``."""
    starts = run.get("starts") or []
    if len(starts) != 4:
        return None  # a checkout without the callback, or not one fit per round
    return (starts[3] - starts[1]) / 2 - run["warm_fit"]


def ledger_rows(runs: list[dict]) -> dict[str, float]:
    """Per place, the median over the later rounds of the 3-round runs (seconds per round)."""
    per_place: dict[str, list[float]] = {}
    n = 0
    for run in runs:
        for fit, outside in list(zip(run["fit"], run["outside"]))[1:]:
            n += 1
            per_place.setdefault("training beyond a warm fit", []).append(
                max(0.0, fit - run["warm_fit"])
            )
            for place, seconds in outside.items():
                per_place.setdefault(place, []).append(seconds)
    # a place a round did not book counts as 0 for that round
    return {k: statistics.median(v + [0.0] * (n - len(v))) for k, v in per_place.items()}


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(int(sys.argv[2]), "--run-dir" in sys.argv)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkout", action="append", help="checkouts to compare [.]")
    parser.add_argument("--run-dir", action="store_true", help="checkpoint every round")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    checkouts = [os.path.abspath(c) for c in (args.checkout or ["."])]
    results: dict[str, list[dict[int, dict]]] = {c: [] for c in checkouts}
    for _ in range(args.repeats):
        for c in checkouts:
            pair = {r: measure(c, r, args.run_dir) for r in (1, 3)}
            results[c].append(pair)
            print(json.dumps({"checkout": c, "marginal": marginal(pair)}), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    import keras

    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}, {THREADS} threads")
    print(
        "\n| checkout | round to round (s): median [min, max] | "
        "marginal round (s): median [min, max] | warm 2-step fit (s) |"
    )
    print("|---|---:|---:|---:|")
    for c, pairs in results.items():
        m = [marginal(p) for p in pairs]
        inner = [x for x in (round_to_round(p[3]) for p in pairs) if x is not None]
        inner_cell = (
            f"{statistics.median(inner):.2f} [{min(inner):.2f}, {max(inner):.2f}]" if inner else "-"
        )
        warm = statistics.median(p[k]["warm_fit"] for p in pairs for k in (1, 3))
        name = os.path.basename(c) or c
        print(
            f"| {name} | {inner_cell} | {statistics.median(m):.2f} [{min(m):.2f}, {max(m):.2f}] "
            f"| {warm:.2f} |"
        )
    for c, pairs in results.items():
        runs = [p[3] for p in pairs if p[3]["cost"] is not None]
        if not runs:
            continue
        rows = ledger_rows(runs)
        print(f"\nLedger of {os.path.basename(c)}, rounds 1-3 of the 3-round searches:\n")
        print("| where | median s per round |")
        print("|---|---:|")
        for place, seconds in sorted(rows.items(), key=lambda kv: -kv[1]):
            print(f"| {place} | {seconds:.3f} |")
        print(f"| **sum** | {sum(rows.values()):.3f} |")


if __name__ == "__main__":
    main()

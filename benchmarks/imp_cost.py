"""What a lottery-ticket search costs next to dense training: wall time and peak memory.

LeNet-300-100 (``keras_lottery.zoo``) on the real MNIST training digits, batch 60,
``--steps`` iterations per round, ``--rounds`` prunings (so rounds + 1 trainings).

Wall time (one process, side by side): each repeat trains one dense network
from scratch (``model.fit`` on the same seeded batches ``find_ticket`` uses),
then runs ``find_ticket`` without and with per-round checkpoints (``run_dir``).
The ratio ``search / ((rounds + 1) x dense)`` is the search loop's overhead:
1.0 would mean the rounds cost exactly as much as that many dense trainings.

Peak memory (fresh processes, so nothing is shared): one trains the dense
network for ``(rounds + 1) x steps`` iterations, the other runs the search;
each reports its resident memory after loading the data, after every round,
and its peak from then on (``VmHWM``, reset after loading; Linux only).

    PYTHONPATH=. python benchmarks/imp_cost.py --rounds 5 --steps 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench  # noqa: E402


def dense_fit(x, y, steps: int, epochs: int = 1, seed: int = 0):
    """Dense training of ``epochs`` x ``steps`` iterations on the batches a search uses."""
    import keras

    from keras_lottery.data.datasets import shuffled_batches
    from keras_lottery.zoo import lenet_300_100

    keras.utils.set_random_seed(seed)
    model = lenet_300_100(seed=seed)
    ds = shuffled_batches(x, y, 60, seed)
    model.fit(ds, steps_per_epoch=steps, epochs=epochs, verbose=0)
    return model


def search(x, y, rounds: int, steps: int, run_dir=None, callbacks=None, seed: int = 0):
    import keras_lottery as kl
    from keras_lottery.zoo import lenet_300_100

    return kl.find_ticket(
        lenet_300_100(seed=seed),
        (x, y),
        rounds=rounds,
        steps=steps,
        seed=seed,
        run_dir=run_dir,
        callbacks=callbacks,
        verbose=0,
    )


def wall_time(args, x, y) -> None:
    rows: dict[str, list[float]] = {"dense": [], "search": [], "search+run_dir": [], "fit": []}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        dense_fit(x, y, args.steps)
        rows["dense"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ticket = search(x, y, args.rounds, args.steps)
        rows["search"].append(time.perf_counter() - t0)
        rows["fit"].append(sum(r.seconds for r in ticket.lottery.rounds))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            search(x, y, args.rounds, args.steps, run_dir=tmp)
            rows["search+run_dir"].append(time.perf_counter() - t0)
    n = args.rounds + 1
    dense = _bench.median(rows["dense"])
    print(
        f"\n### Wall time: {args.rounds} rounds ({n} trainings) x {args.steps} steps, "
        f"{args.repeats} alternating repeats, {_bench.versions()}\n"
    )
    print("| run | median (s) | range (s) | ratio to (rounds + 1) x dense |")
    print("|---|---:|---:|---:|")
    print(f"| one dense training | {dense:.2f} | {_bench.spread(rows['dense'])} | – |")
    print(f"| (rounds + 1) x dense | {n * dense:.2f} | – | 1.000 |")
    for name in ("search", "search+run_dir"):
        med = _bench.median(rows[name])
        label = "find_ticket" if name == "search" else "find_ticket with run_dir checkpoints"
        print(f"| {label} | {med:.2f} | {_bench.spread(rows[name])} | {med / (n * dense):.3f} |")
    fit = _bench.median(rows["fit"])
    print(
        f"| of which inside `model.fit` (sum of RoundRecord.seconds) | {fit:.2f} | "
        f"{_bench.spread(rows['fit'])} | {fit / (n * dense):.3f} |"
    )


def memory_worker(args) -> None:
    """Fresh process: train (dense or search), report resident memory as it goes."""
    import keras

    x, y = _bench.mnist(args.data)
    gc.collect()
    after_data = _bench.rss_mb()
    _bench.reset_peak_rss()  # the peak of training, not of decoding the IDX files
    per_round: list[float] = []

    class Rss(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            per_round.append(_bench.rss_mb())

    if args.memory_worker == "dense":
        dense_fit(x, y, args.steps, epochs=args.rounds + 1)
        per_round.append(_bench.rss_mb())
        label = f"dense, {(args.rounds + 1) * args.steps} steps in one fit"
    else:
        search(x, y, args.rounds, args.steps, callbacks=[Rss()])
        label = f"find_ticket, {args.rounds} rounds x {args.steps} steps"
    result = {
        "label": label,
        "after_data": after_data,
        "per_round": per_round,
        "peak": _bench.peak_rss_mb(),
    }
    _bench.serve(lambda: result, result)


def memory(args) -> None:
    print(f"\n### Peak resident memory (fresh process each, MiB), {_bench.versions()}\n")
    print(
        "| run | after import + data | after each round | peak while training | peak − after data |"
    )
    print("|---|---:|---|---:|---:|")
    for kind in ("dense", "search"):
        argv = [__file__, "--memory-worker", kind, "--data", args.data]
        argv += ["--rounds", str(args.rounds), "--steps", str(args.steps)]
        w = _bench.Worker(argv)
        r = w.ready
        w.close()
        rounds = ", ".join(f"{v:.0f}" for v in r["per_round"])
        print(
            f"| {r['label']} | {r['after_data']:.0f} | {rounds} | {r['peak']:.0f} | "
            f"{r['peak'] - r['after_data']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=str(_bench.MNIST))
    parser.add_argument("--threads", type=int, default=0, help="TF threads (0: TF's default)")
    parser.add_argument("--only", choices=["time", "memory"], default=None)
    parser.add_argument("--memory-worker", choices=["dense", "search"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    _bench.set_threads(args.threads)
    if args.memory_worker:
        return memory_worker(args)
    if args.only != "memory":
        x, y = _bench.mnist(args.data)
        wall_time(args, x, y)
    if args.only != "time":
        memory(args)


if __name__ == "__main__":
    main()

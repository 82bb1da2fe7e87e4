"""LeNet-300-100 on MNIST: pruning at initialization (SNIP, GraSP, SynFlow) vs IMP.

    KERAS_BACKEND=jax PYTHONPATH=. nice -n 10 python experiments/at_init.py --seeds 0 1

Every run prunes a fresh LeNet-300-100 (θ0 of ``common.lenet(seed)``, as the
IMP searches of ``lenet_mnist.py``) with :func:`keras_lottery.prune_at_init`,
then trains it with the IMP rounds' protocol: Adam 1.2e-3, batch 60, 3,000
iterations, validation and test evaluated every 150 iterations, test accuracy
at the iteration of minimum validation loss.  One JSON line per run is
appended to ``experiments/results/at_init.jsonl`` (a run already there is
skipped, so the script resumes).
"""

from __future__ import annotations

import argparse
import json

from common import RESULTS, Timer, kl, lenet, mnist_splits

from keras_lottery.callbacks import EvaluationCurve, Evaluator
from keras_lottery.data.datasets import numpy_batches

METHODS = ("snip", "grasp", "synflow", "magnitude", "random")
SPARSITIES = (0.8, 0.95, 0.986, 0.995)
#: The sanity checks of Frankle et al. (ICLR 2021), at one sparsity.
CHECKS = ("rearrange", "reinit", "invert")
OUT = RESULTS / "at_init.jsonl"


def run(method, sparsity, seed, check, splits, steps, eval_every, spe=1):
    train, val, test = splits
    model = lenet(seed, spe)
    with Timer() as t_prune:
        ticket = kl.prune_at_init(
            model,
            train,
            sparsity=sparsity,
            method=method,
            seed=seed,
            control=check if check in ("rearrange", "reinit") else None,
            invert=check == "invert",
        )
    curve = EvaluationCurve(Evaluator(ticket, *val), Evaluator(ticket, *test), eval_every)
    with Timer() as t_train:
        ticket.fit(
            numpy_batches(*train, 60, seed),
            epochs=1,
            steps_per_epoch=steps,
            callbacks=[curve],
            shuffle=False,
            verbose=0,
        )
    best = curve.early_stop()
    info = ticket.at_init
    return {
        "method": method,
        "check": check,
        "sparsity": sparsity,
        "seed": seed,
        "percent_remaining": 100 * info["remaining"],
        "layer_remaining": info["layer_remaining"],
        "early_stop_iteration": best["iteration"],
        "early_stop_test_accuracy": best["test_accuracy"],
        "final_test_accuracy": curve.curve[-1]["test_accuracy"],
        "prune_seconds": t_prune.seconds,
        "train_seconds": t_train.seconds,
        "steps": steps,
        "eval_every": eval_every,
    }


def plan(seeds, check_sparsity):
    for seed in seeds:
        for s in SPARSITIES:
            for m in METHODS:
                yield m, s, seed, None
        for m in METHODS[:4]:
            for c in CHECKS:
                yield m, check_sparsity, seed, c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--check-sparsity", type=float, default=0.95)
    p.add_argument("--steps-per-execution", type=int, default=1, help="same results, faster")
    p.add_argument("--train-size", type=int, default=None, help="cut the 55k set (tests)")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    splits = mnist_splits(args.train_size)
    done = set()
    try:
        with open(args.out) as f:
            for line in f:
                r = json.loads(line)
                done.add((r["method"], r["sparsity"], r["seed"], r["check"], r["steps"]))
    except FileNotFoundError:
        pass
    for m, s, seed, check in plan(args.seeds, args.check_sparsity):
        if (m, s, seed, check, args.steps) in done:
            continue
        row = run(m, s, seed, check, splits, args.steps, args.eval_every, args.steps_per_execution)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"{m:9s} {check or '-':9s} s={s} seed={seed} remaining={row['percent_remaining']:.2f}% "
            f"acc={row['early_stop_test_accuracy']:.4f}@{row['early_stop_iteration']} "
            f"prune={row['prune_seconds']:.1f}s train={row['train_seconds']:.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()

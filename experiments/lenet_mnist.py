"""LeNet-300-100 on MNIST: lottery ticket vs controls (Frankle & Carbin, Figures 3-5).

    PYTHONPATH=. nice -n 10 python experiments/lenet_mnist.py --strategy rewind --seed 0

Each run is resumable (``experiments/runs/<name>``) and writes
``experiments/results/lenet_<name>.json``: one row per round (percent remaining,
early-stopping iteration, test accuracy there) and the validation/test curves.
"""

from __future__ import annotations

import argparse

from common import (
    RUNS,
    Timer,
    keras,
    kl,
    lenet,
    mnist_splits,
    np,
    pin_threads,
    round_rows,
    save_json,
)


class DenseRoundCapture(keras.callbacks.Callback):
    """Save the trained weights of round 0 (all masks still 1) to ``path``.

    The search itself only keeps θ0 and the masks; the weight-movement
    analysis also needs the dense trained weights.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_end(self, logs=None):
        pws = kl.prunable_weights(self.model)
        if self.path.exists() or not all(np.all(np.asarray(p.mask) == 1) for p in pws):
            return
        np.savez_compressed(self.path, **{p.name: np.asarray(p.kernel) for p in pws})


def run_name(args) -> str:
    name = f"{args.strategy}_s{args.seed}_r{args.rounds}"
    if args.one_shot:
        name += "_oneshot"
    if args.rewind_to != "init":
        name += f"_k{args.rewind_to}"
    if args.early_bird:
        name += "_eb" if args.early_bird_tolerance == 0.1 else f"_eb{args.early_bird_tolerance:g}"
        if args.early_bird_min_fraction:
            name += f"_mf{args.early_bird_min_fraction:g}"
    if args.steps != 3000:  # the full-length protocol (50,000) and other lengths
        name += f"_n{args.steps}"
    return name


def main(argv=None):
    pin_threads()
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--strategy", default="rewind", choices=kl.STRATEGIES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--one-shot", action="store_true")
    p.add_argument("--rewind-to", default="init", help="'init' or an iteration k")
    p.add_argument("--early-bird", action="store_true", help="stop rounds when the mask settles")
    p.add_argument(
        "--early-bird-tolerance",
        type=float,
        default=0.1,
        help="largest mask distance over the window that stops a round (You et al.: 0.1)",
    )
    p.add_argument(
        "--early-bird-min-fraction",
        type=float,
        default=0.0,
        help="share of a round trained before it may stop (0: the rule of the recorded runs; "
        "the library's default is 0.5)",
    )
    p.add_argument("--steps-per-execution", type=int, default=1, help="same results, faster")
    p.add_argument("--train-size", type=int, default=None, help="cut the 55k set (tests)")
    p.add_argument("--test-size", type=int, default=None)
    args = p.parse_args(argv)
    if args.rewind_to != "init":
        args.rewind_to = int(args.rewind_to)

    name = run_name(args)
    train, val, test = mnist_splits(args.train_size, args.test_size)
    run_dir = RUNS / f"lenet_{name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [DenseRoundCapture(run_dir / "dense_round0.npz")]
    with Timer() as t:
        ticket = kl.find_ticket(
            lenet(args.seed, args.steps_per_execution),
            train,
            rounds=args.rounds,
            rate=0.2,
            output_rate=0.1,
            one_shot=args.one_shot,
            early_bird=kl.EarlyBird(
                tolerance=args.early_bird_tolerance, min_fraction=args.early_bird_min_fraction
            )
            if args.early_bird
            else None,
            strategy=args.strategy,
            rewind_to=args.rewind_to,
            steps=args.steps,
            batch_size=60,
            validation_data=val,
            test_data=test,
            eval_every=args.eval_every,
            seed=args.seed,
            run_dir=run_dir,
            callbacks=callbacks,
            verbose=0,
        )
    record = ticket.lottery
    out = {
        "name": name,
        "args": vars(args),
        "wall_seconds_this_call": t.seconds,
        "rows": round_rows(record, strategy=args.strategy, seed=args.seed),
        "curves": [r.curve for r in record.rounds],
    }
    path = save_json(f"lenet_{name}.json", out)
    print(record.summary())
    print(f"wrote {path} in {t.seconds:.0f}s")


if __name__ == "__main__":
    main()

"""Training-step cost: TFMOT's ``prune_low_magnitude`` (tf_keras) vs keras_lottery (Keras 3).

LeNet-300-100 on the real MNIST training digits, batch 60, Adam 1.2e-3, at 90%
sparsity, next to each framework's plain model.  TFMOT needs ``tf_keras``
(``TF_USE_LEGACY_KERAS=1`` for the whole process), so every model trains in its
own worker process; the parent asks them for one epoch each in turn, so machine
noise hits all alike.  The result is the ratio of median epoch times.

    PYTHONPATH=. python benchmarks/tfmot_vs_ours.py --repeats 5

Models:
  keras3 plain          plain Keras 3 Dense layers
  keras3 ours 90%       ``make_prunable`` + fixed 90%-sparse masks (a ticket round)
  tf_keras plain        plain tf_keras Dense layers
  tf_keras TFMOT 90%    ``prune_low_magnitude(ConstantSparsity(0.9, 0, frequency=100))``
                        with ``UpdatePruningStep`` (masks recomputed every 100 steps)
  tf_keras TFMOT frozen TFMOT pruned to 90% once, at its first step, then never again
                        (``begin_step=end_step=1``): the like-for-like comparison with
                        a ticket round, whose masks are fixed
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench  # noqa: E402

MODELS = {
    "keras3 plain": "keras3",
    "keras3 ours 90%": "keras3",
    "tf_keras plain": "tf_keras",
    "tf_keras TFMOT 90%": "tf_keras",
    "tf_keras TFMOT frozen": "tf_keras",
}
SPARSITY = 0.9


def keras3_model(name: str):
    import keras

    import keras_lottery as kl

    model = _bench.lenet(keras)
    if "ours" in name:
        source = model
        model = _bench.prune_randomly(kl.make_prunable(source), SPARSITY)
        model.compile_from_config(source.get_compile_config())
    return model, []


def tf_keras_model(name: str):
    import tensorflow_model_optimization as tfmot
    import tf_keras

    model = _bench.lenet(tf_keras)
    if "TFMOT" not in name:
        return model, []
    sparsity = tfmot.sparsity.keras
    if name.endswith("frozen"):  # TFMOT counts steps from 1
        schedule = sparsity.ConstantSparsity(SPARSITY, begin_step=1, end_step=1, frequency=1)
    else:
        schedule = sparsity.ConstantSparsity(SPARSITY, begin_step=0, frequency=100)
    pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(optimizer=tf_keras.optimizers.Adam(1.2e-3), loss=model.loss)
    return pruned, [sparsity.UpdatePruningStep()]


def worker(name: str, args) -> None:
    """Build one model, train a warm-up epoch, then one epoch per request."""
    _bench.set_threads(args.threads)
    if MODELS[name] == "tf_keras":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    x, y = _bench.mnist(args.data, args.train_size)
    ds = _bench.batches(x, y)
    steps = -(-len(x) // 60)
    if MODELS[name] == "tf_keras":
        model, callbacks = tf_keras_model(name)
    else:
        model, callbacks = keras3_model(name)

    def epoch() -> dict:
        t0 = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0, callbacks=callbacks)
        seconds = time.perf_counter() - t0
        kernels = [w for w in model.weights if "kernel" in w.name]
        zeros = sum(int((w.numpy() == 0).sum()) for w in kernels)
        total = sum(int(w.numpy().size) for w in kernels)
        return {"seconds": seconds, "sparsity": zeros / total}

    warm = epoch()  # tracing, caching the dataset, and TFMOT's first mask update
    _bench.serve(epoch, {"warmup": warm["seconds"], "steps": steps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default=str(_bench.MNIST))
    parser.add_argument("--train-size", type=int, default=None, help="cut the 60k digits")
    parser.add_argument("--threads", type=int, default=0, help="TF threads per worker (0: TF's)")
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args)

    passthrough = ["--data", args.data, "--threads", str(args.threads)]
    if args.train_size:
        passthrough += ["--train-size", str(args.train_size)]
    workers = {name: _bench.Worker([__file__, "--worker", name, *passthrough]) for name in MODELS}
    try:
        answers = {name: [] for name in MODELS}
        for _ in range(args.repeats):
            for name, w in workers.items():
                answers[name].append(w.send())
    finally:
        for w in workers.values():
            w.close()
    steps = workers["keras3 plain"].ready["steps"]
    times = {name: [a["seconds"] for a in answers[name]] for name in MODELS}
    base = {fw: _bench.median(times[f"{fw} plain"]) for fw in ("keras3", "tf_keras")}
    print(
        f"LeNet-300-100, {steps} steps of batch 60 per epoch, {args.repeats} alternating "
        f"repeats, threads={args.threads or 'TF default'}\n"
    )
    print(
        "| model | median epoch (s) | range (s) | ms / step | kernel sparsity | "
        "ratio to its plain | ratio to keras3 plain |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, ts in times.items():
        med = _bench.median(ts)
        print(
            f"| {name} | {_bench.epoch_cells(ts, steps)} | {answers[name][-1]['sparsity']:.3f} | "
            f"{med / base[MODELS[name]]:.3f} | {med / base['keras3']:.3f} |"
        )


if __name__ == "__main__":
    main()

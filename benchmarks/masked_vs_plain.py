"""Training-step cost of mask-aware layers vs plain Keras, side by side.

A zoo model (``--model``: LeNet-300-100, LeNet-5 or Conv-2) on real MNIST
(../shared/data/mnist), batch 60, with the paper's optimizer.  The plain model,
its mask-aware copy with all masks 1, and a copy with 90% of every kernel
pruned train one epoch each in turn (after a warm-up epoch each), so machine
noise hits all alike; the ratio of medians is the result.

    PYTHONPATH=. python benchmarks/masked_vs_plain.py --model lenet_300_100 --repeats 5
    PYTHONPATH=. python benchmarks/masked_vs_plain.py --model lenet5 --repeats 3
    PYTHONPATH=. python benchmarks/masked_vs_plain.py --model conv2 --train-size 6000
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="lenet_300_100", choices=["lenet_300_100", "lenet5", "conv2"]
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default=str(_bench.MNIST))
    parser.add_argument("--train-size", type=int, default=None, help="cut the 60k digits")
    parser.add_argument("--threads", type=int, default=0, help="TF threads (0: TF's default)")
    args = parser.parse_args()
    _bench.set_threads(args.threads)

    import keras_lottery as kl
    from keras_lottery import zoo

    x, y = _bench.mnist(args.data, args.train_size, channels=args.model != "lenet_300_100")
    ds = _bench.batches(x, y)
    build = getattr(zoo, args.model)

    def masked(sparsity: float):
        source = build(x.shape[1:], 10, seed=0)
        model = _bench.prune_randomly(kl.make_prunable(source), sparsity)
        model.compile_from_config(source.get_compile_config())
        return model

    models = {
        "plain Keras": build(x.shape[1:], 10, seed=0),
        "masked, 0% pruned": masked(0.0),
        "masked, 90% pruned": masked(0.9),
    }
    for model in models.values():
        model.fit(ds, epochs=1, verbose=0)  # warm-up: tracing and caching
    runs = {
        name: _bench.timed(lambda m=model: m.fit(ds, epochs=1, verbose=0))
        for name, model in models.items()
    }
    times = _bench.alternate(runs, args.repeats)
    base = _bench.median(times["plain Keras"])
    steps = -(-len(x) // 60)
    print(
        f"{args.model}, {len(x)} MNIST images, batch 60 ({steps} steps/epoch), "
        f"{args.repeats} alternating repeats, threads={args.threads or 'TF default'}, "
        f"{_bench.versions()}\n"
    )
    print("| model | median epoch (s) | range (s) | ms / step | ratio to plain |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {_bench.epoch_cells(ts, steps)} | {_bench.median(ts) / base:.3f} |")


if __name__ == "__main__":
    main()

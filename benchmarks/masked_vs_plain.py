"""Training-step cost of mask-aware layers vs plain Keras, side by side.

LeNet-300-100 on real MNIST (../shared/data/mnist), batch 60, Adam 1.2e-3.
Plain and masked models train in alternation (after one warm-up epoch each),
so machine noise hits both alike; the ratio of medians is the result.

    python benchmarks/masked_vs_plain.py --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_lottery as kl

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def lenet() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(300, "relu", kernel_initializer="glorot_normal"),
            keras.layers.Dense(100, "relu", kernel_initializer="glorot_normal"),
            keras.layers.Dense(10, kernel_initializer="glorot_normal"),
        ]
    )


def compile_(model: keras.Model) -> keras.Model:
    model.compile(
        keras.optimizers.Adam(1.2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default=str(MNIST))
    args = parser.parse_args()

    data = kl.load_dataset(args.data)
    ds = (
        tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
        .batch(60)
        .cache()
        .prefetch(tf.data.AUTOTUNE)
    )
    plain = compile_(lenet())
    masked = compile_(kl.make_prunable(lenet()))
    sparse = compile_(kl.make_prunable(lenet()))
    rng = np.random.default_rng(0)
    for pw in kl.prunable_weights(sparse):  # 90% of weights pruned
        pw.mask.assign((rng.random(pw.mask.shape) < 0.1).astype("float32"))
    kl.apply_masks(sparse)
    models = {"plain Keras": plain, "masked, 0% pruned": masked, "masked, 90% pruned": sparse}
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.fit(ds, epochs=1, verbose=0)  # warm-up: tracing and caching
    for _ in range(args.repeats):
        for name, model in models.items():
            t0 = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["plain Keras"])
    steps = len(data.x_train) // 60 + (len(data.x_train) % 60 > 0)
    print(
        f"LeNet-300-100, {len(data.x_train)} MNIST images, batch 60 ({steps} steps/epoch), "
        f"{args.repeats} alternating repeats, TF {tf.__version__}, Keras {keras.__version__}\n"
    )
    print("| model | median epoch (s) | ms / step | ratio to plain |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {1000 * med / steps:.2f} | {med / base:.3f} |")


if __name__ == "__main__":
    main()

"""Shared helpers for the reproduction experiments (Frankle & Carbin, arXiv:1803.03635).

The scripts call :func:`pin_threads` first: the machine is shared, so TensorFlow
runs on one thread (importing this module from tests changes nothing).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_lottery as kl  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
RUNS = ROOT / "runs"
MNIST_DIR = ROOT.parent.parent / "shared" / "data" / "mnist"


def pin_threads() -> None:
    """One intra-op and one inter-op thread (call before any TensorFlow op)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised: keep its setting
        pass


#: MNIST mean/std normalisation (the paper does not state one; see README).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def mnist_splits(train: int | None = None, test: int | None = None, n_val: int = 5000):
    """Real MNIST, normalised: (train, validation, test) as (x, y) tuples.

    The last ``n_val`` of the 60k training images are the validation set
    (55k / 5k as in the paper); ``train``/``test`` cut the sets for quick runs.
    """
    ds = kl.load_dataset(str(MNIST_DIR))
    x = (ds.x_train - MNIST_MEAN) / MNIST_STD
    xt = (ds.x_test - MNIST_MEAN) / MNIST_STD
    x_tr, y_tr = x[:-n_val], ds.y_train[:-n_val]
    x_va, y_va = x[-n_val:], ds.y_train[-n_val:]
    if train is not None:
        x_tr, y_tr = x_tr[:train], y_tr[:train]
    return (
        (x_tr.astype("float32"), y_tr),
        (x_va.astype("float32"), y_va),
        (xt[:test].astype("float32"), ds.y_test[:test]),
    )


def unseed_initializers(model: keras.Model) -> keras.Model:
    """Give every Dense layer an *unseeded* Glorot-normal initializer (weights unchanged).

    The zoo builds its layers with seeded initializers; ``strategy='reinit'``
    re-draws weights by cloning the model, and a seeded initializer re-draws
    exactly θ0, which would make "reinit" identical to "rewind".  Unseeded
    initializers draw from the global seed that ``find_ticket`` sets per round.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.kernel_initializer = keras.initializers.GlorotNormal()
    return model


def lenet(seed: int, steps_per_execution: int = 1) -> keras.Model:
    """LeNet-300-100 from the library's zoo: Glorot-normal, Adam 1.2e-3, θ0 seeded.

    ``steps_per_execution`` > 1 runs that many steps per compiled call (same
    results, less per-step overhead; see benchmarks/README.md).
    """
    from keras_lottery.zoo import lenet_300_100

    keras.utils.set_random_seed(seed)
    model = unseed_initializers(lenet_300_100((28, 28), 10, seed=seed))
    if steps_per_execution > 1:
        config = model.get_compile_config()
        config["steps_per_execution"] = steps_per_execution
        model.compile_from_config(config)
    return model


def round_rows(record, **extra) -> list[dict]:
    """One flat dict per round of a LotteryRecord (no curves, no masks)."""
    rows = []
    for r in record.rounds:
        rows.append(
            {
                **extra,
                "round": r.round,
                "percent_remaining": r.percent_remaining,
                "layer_remaining": {k: 1 - v for k, v in r.layer_sparsity.items()},
                "early_stop_iteration": r.early_stop_iteration,
                "early_stop_test_accuracy": r.early_stop_test_accuracy,
                "early_stop_val_loss": r.early_stop_val_loss,
                "final_test_accuracy": r.test_accuracy,
                "iterations": r.iterations,
                "seconds": r.seconds,
            }
        )
    return rows


def save_json(name: str, obj) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(obj, indent=1, default=float))
    return path


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


__all__ = ["np", "tf", "keras", "kl"]

"""find_ticket under tf.distribute.MirroredStrategy on two logical CPU devices.

Two call styles: ``find_ticket`` inside ``strategy.scope()``, and a model built
and compiled inside the scope with ``find_ticket`` called outside it (as
TensorFlow's guide calls ``fit``).

Logical devices must be configured before TensorFlow starts, so the runs happen
once in a fresh interpreter (this file run as a script) that reports JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def report() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update({"PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"})
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_runs_on_two_replicas(report):
    assert report["replicas"] == 2
    assert report["variable_type"] == "MirroredVariable"


def test_same_masks_as_one_device(report):
    # every round, every layer: 0 mask entries differ
    assert report["mask_differences"] == [[0, 0], [0, 0], [0, 0]]
    assert report["max_weight_difference"] < 1e-5
    assert report["finetune_mask_differences"] == [[0, 0], [0, 0]]


def test_called_outside_the_scope(report):
    # model built and compiled in the scope, find_ticket outside it: the wrapper,
    # its masks and its optimizer take the model's strategy
    outside = report["outside"]
    assert outside["variable_types"] == ["MirroredVariable"] * 3  # weight, mask, optimizer
    assert outside["strategy"] == "MirroredStrategy"
    assert outside["mask_differences"] == [[0, 0], [0, 0], [0, 0]]
    assert outside["max_weight_difference"] < 1e-5
    assert outside["finetune_mask_differences"] == [[0, 0], [0, 0]]


# -- the worker (two logical CPUs) ---------------------------------------------------


def _worker() -> dict:  # pragma: no cover - runs in the subprocess
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )

    import keras
    import numpy as np

    import keras_lottery as kl

    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 12)).astype("float32")
    y = x[:, :3].argmax(1).astype("int64")

    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential(
            [keras.Input((12,)), keras.layers.Dense(24, activation="relu"), keras.layers.Dense(3)]
        )
        m.compile(
            keras.optimizers.Adam(1e-2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return m

    def differences(a, b):
        return [
            [int((u != v).sum()) for u, v in zip(ra.masks.values(), rb.masks.values())]
            for ra, rb in zip(a.lottery.rounds, b.lottery.rounds)
        ]

    def max_difference(a, b):
        return max(
            float(np.abs(np.array(u, "float64") - np.array(v, "float64")).max())
            for u, v in zip(a.weights, b.weights)  # masks (bool) included
        )

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out: dict = {"replicas": strategy.num_replicas_in_sync}
    kw = dict(
        rounds=2,
        rate=0.5,
        seed=0,
        verbose=0,
        epochs=2,
        batch_size=32,
        validation_data=(x[:64], y[:64]),
        eval_every=5,
    )
    single = kl.find_ticket(model(), (x, y), **kw)
    with strategy.scope():
        mirrored = kl.find_ticket(model(), (x, y), **kw)
    out["variable_type"] = type(kl.prunable_weights(mirrored)[0].kernel.value).__name__
    out["mask_differences"] = differences(single, mirrored)
    out["max_weight_difference"] = max_difference(single, mirrored)
    fine = dict(kw, rounds=1, strategy="finetune", rewind_to=3)
    fine.pop("rate")
    a = kl.find_ticket(model(), (x, y), **fine)
    with strategy.scope():
        b = kl.find_ticket(model(), (x, y), **fine)
    out["finetune_mask_differences"] = differences(a, b)

    # Built and compiled in the scope; find_ticket called outside it.
    with strategy.scope():
        m = model()
    outside = kl.find_ticket(m, (x, y), **kw)
    pw = kl.prunable_weights(outside)[0]
    out["outside"] = {
        "variable_types": [
            type(v.value).__name__ for v in (pw.kernel, pw.mask, outside.optimizer.variables[-1])
        ],
        "strategy": type(outside.distribute_strategy).__name__,
        "mask_differences": differences(single, outside),
        "max_weight_difference": max_difference(single, outside),
    }
    with strategy.scope():
        m = model()
    out["outside"]["finetune_mask_differences"] = differences(a, kl.find_ticket(m, (x, y), **fine))
    return out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(_worker()))

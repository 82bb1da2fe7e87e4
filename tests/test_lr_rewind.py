"""strategy='lr_rewind' (Renda et al.): trained survivors kept, schedule replayed from the start."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_lottery as kl

SCHEDULE = dict(initial_learning_rate=0.1, decay_steps=5, decay_rate=0.5)


class Probe(keras.callbacks.Callback):
    """Kernels, masks, iteration counter and learning rate when each round starts and ends."""

    def __init__(self):
        super().__init__()
        self.starts, self.ends = [], []

    def _grab(self):
        model = self.model
        return {
            "weights": {pw.name: np.array(pw.kernel) for pw in kl.prunable_weights(model)},
            "masks": {pw.name: np.array(pw.mask) for pw in kl.prunable_weights(model)},
            "iterations": int(np.asarray(model.optimizer.iterations)),
            "lr": float(np.asarray(model.optimizer.learning_rate)),
        }

    def on_train_begin(self, logs=None):
        self.starts.append(self._grab())

    def on_train_end(self, logs=None):
        self.ends.append(self._grab())


def _search(**kw):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)]
    )
    schedule = keras.optimizers.schedules.ExponentialDecay(**SCHEDULE)
    model.compile(
        keras.optimizers.SGD(schedule),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    probe = Probe()
    kl.find_ticket(
        model, (x, y), rounds=2, steps=20, batch_size=32, seed=0, verbose=0, callbacks=[probe], **kw
    )
    return probe


@pytest.mark.backends
def test_lr_rewind_keeps_trained_survivors_and_restarts_the_schedule():
    probe = _search(strategy="lr_rewind")
    assert len(probe.starts) == 3
    for r in range(1, 3):
        start, trained = probe.starts[r], probe.ends[r - 1]
        for name, kernel in start["weights"].items():
            mask = start["masks"][name]
            assert mask.mean() < trained["masks"][name].mean()  # pruned further
            np.testing.assert_array_equal(kernel, trained["weights"][name] * mask)
    for start, end in zip(probe.starts, probe.ends):
        assert start["iterations"] == 0 and end["iterations"] == 20
        assert start["lr"] == pytest.approx(SCHEDULE["initial_learning_rate"])
        assert end["lr"] < start["lr"] / 8  # the schedule decayed within the round


def test_lr_rewind_to_k_replays_the_schedule_from_k():
    probe = _search(strategy="lr_rewind", rewind_to=5)
    for r in (1, 2):
        start = probe.starts[r]
        assert start["iterations"] == 5
        assert start["lr"] == pytest.approx(SCHEDULE["initial_learning_rate"] / 2)
        for name, kernel in start["weights"].items():  # still the trained weights, not θk
            np.testing.assert_array_equal(
                kernel, probe.ends[r - 1]["weights"][name] * start["masks"][name]
            )

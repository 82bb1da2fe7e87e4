"""GradualPruning on every backend: masks that change in the middle of a ``fit``."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.criteria.gradual import GradualPruning


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12)).astype("float32")
    return x, x[:, :3].argmax(1).astype("int64")


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(24, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class _StepLosses(keras.callbacks.Callback):
    """Each step's loss, from the logs only: it leaves JAX's training state alone."""

    def __init__(self):
        super().__init__()
        self.means: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.means.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.means[-1].append(float(np.asarray(logs["loss"])))

    def losses(self) -> np.ndarray:
        """The per-step losses of every epoch (``fit`` logs the epoch's running mean)."""
        out = []
        for means in self.means:
            totals = np.arange(1, len(means) + 1) * np.array(means, "float64")
            out.extend(np.diff(totals, prepend=0.0))
        return np.array(out)


@pytest.mark.backends
def test_gradual_pruning_masks_train_from_the_step_they_change_mid_epoch():
    # Prunings at step 5 (epoch 1) and 15 (epoch 2) of two 10-step epochs.  On JAX, fit
    # holds the training state outside the variables during an epoch: the steps after a
    # pruning must train with the new masks all the same.  Nothing else here reads the
    # model mid-epoch (that would write JAX's state back at every step, hiding a miss).
    def schedule(step):
        return step in (5, 15), 0.5 if step < 10 else 0.75

    x, y = _data(160)
    ticket = kl.make_prunable(_model())
    ticket.compile_from_config(_model().get_compile_config())
    pruner, log = GradualPruning(schedule), _StepLosses()
    ticket.fit(x, y, batch_size=16, epochs=2, shuffle=False, callbacks=[pruner, log], verbose=0)
    assert pruner.events == [(5, 0.5), (15, 0.75)]
    assert kl.sparsity(ticket)["overall"] == pytest.approx(0.75, abs=1e-2)
    for w in kl.prunable_weights(ticket):  # pruned weights and their Adam state stayed 0
        assert not np.any(np.array(w.kernel)[~np.array(w.mask)])

    # The same steps one batch at a time, pruning with the same rule before steps 5 and 15.
    reference = kl.make_prunable(_model())
    reference.compile_from_config(_model().get_compile_config())
    by_hand = GradualPruning(schedule)
    by_hand.set_model(reference)
    by_hand.on_train_begin()
    losses = []
    for step in range(1, 21):
        if step in (5, 15):
            by_hand.prune(schedule(step)[1])
        batch = slice((step - 1) % 10 * 16, ((step - 1) % 10 + 1) * 16)
        losses.append(reference.train_on_batch(x[batch], y[batch], return_dict=True)["loss"])
    np.testing.assert_allclose(log.losses(), np.array(losses, "float64"), atol=1e-5)
    for got, want in zip(ticket.weights, reference.weights):  # masks and weights
        np.testing.assert_allclose(np.array(got, "float64"), np.array(want, "float64"), atol=1e-5)

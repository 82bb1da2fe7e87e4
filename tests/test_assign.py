"""keras_lottery.masks.assign: one-dispatch assignment and shared fill tensors stay exact."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_lottery.masks.assign import SHARED_BYTES, Fills, assign

pytestmark = pytest.mark.backends


def test_assign_writes_the_value_and_refuses_another_shape():
    var = keras.Variable(np.ones((2, 3), "float32"))
    assign(var, np.arange(6, dtype="float32").reshape(2, 3))
    np.testing.assert_array_equal(np.asarray(var), np.arange(6).reshape(2, 3))
    assert var.dtype == "float32" and tuple(var.shape) == (2, 3)
    with pytest.raises(ValueError):
        assign(var, np.zeros((3, 2), "float32"))


def test_fills_hold_the_value_and_share_only_on_tensorflow():
    fills = Fills()
    zeros, again, other = fills((2, 2), "float32"), fills((2, 2), "float32"), fills((3,), "int32")
    ones = fills((2, 2), "float32", np.float32(1.0))
    np.testing.assert_array_equal(np.asarray(zeros), np.zeros((2, 2)))
    np.testing.assert_array_equal(np.asarray(ones), np.ones((2, 2)))
    assert keras.backend.standardize_dtype(other.dtype) == "int32"
    on_tf = keras.backend.backend() == "tensorflow"
    assert (zeros is again) == on_tf
    # Up to SHARED_BYTES only: a large shared buffer's copy at the first update is one more buffer.
    edge, big = (SHARED_BYTES // 4,), (SHARED_BYTES // 4 + 1,)
    assert (fills(edge, "float32") is fills(edge, "float32")) == on_tf
    assert fills(big, "float32") is not fills(big, "float32")


def test_variables_filled_from_one_tensor_update_independently():
    fills = Fills()
    a, b = keras.Variable(np.ones(3, "float32")), keras.Variable(np.ones(3, "float32"))
    for var in (a, b):
        assign(var, fills((3,), "float32"))
    a.assign_add(np.full(3, 5.0, "float32"))
    np.testing.assert_array_equal(np.asarray(a), [5, 5, 5])
    np.testing.assert_array_equal(np.asarray(b), [0, 0, 0])
    np.testing.assert_array_equal(np.asarray(fills((3,), "float32")), [0, 0, 0])


def _train_after_reset(shared: bool) -> list[np.ndarray]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(6), keras.layers.Dense(6), keras.layers.Dense(2)]
    )
    model.compile("adam", "mse")
    x = np.random.default_rng(0).random((32, 6), dtype=np.float32)
    model.fit(x, x[:, :2], batch_size=8, epochs=1, shuffle=False, verbose=0)
    fills = Fills()
    for var in model.optimizer.variables:  # Adam's moments: several of each shape
        if shared:
            assign(var, fills(var.shape, var.dtype))
        else:
            var.assign(np.zeros(var.shape, keras.backend.standardize_dtype(var.dtype)))
    del fills
    model.fit(x, x[:, :2], batch_size=8, epochs=2, shuffle=False, verbose=0)
    return [np.array(v) for v in [*model.weights, *model.optimizer.variables]]


def test_training_from_a_shared_zeros_state_equals_training_from_separate_zeros():
    """The compiled step updates moments in place: a shared buffer must not leak between them."""
    shared, separate = _train_after_reset(True), _train_after_reset(False)
    assert len(shared) == len(separate)
    for got, want in zip(shared, separate):
        np.testing.assert_array_equal(got, want)
    assert any(np.any(v != 0) for v in shared[-4:])  # the moments did move

"""Mask-aware layers: forward masking, no regrowth, saving, model conversion."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import lenet

import keras_lottery as kl
from keras_lottery.layers import MASKED_VARIANTS

LAYER_CASES = [
    (keras.layers.Dense(5), (None, 4)),
    (keras.layers.EinsumDense("ab,bc->ac", output_shape=5, bias_axes="c"), (None, 4)),
    (keras.layers.Conv1D(3, 2), (None, 6, 2)),
    (keras.layers.Conv2D(3, 2), (None, 6, 6, 2)),
    (keras.layers.Conv3D(3, 2), (None, 4, 4, 4, 2)),
    (keras.layers.Conv2DTranspose(3, 2), (None, 5, 5, 2)),
    (keras.layers.DepthwiseConv2D(2), (None, 6, 6, 2)),
    (keras.layers.SeparableConv2D(3, 2), (None, 6, 6, 2)),
    (keras.layers.Embedding(10, 4), (None, 3)),
]


def _random_masks(model, keep=0.5, seed=0):
    rng = np.random.default_rng(seed)
    for pw in kl.prunable_weights(model):
        pw.mask.assign((rng.random(pw.mask.shape) < keep).astype("float32"))
    kl.apply_masks(model)


@pytest.mark.parametrize("layer,shape", LAYER_CASES, ids=lambda c: type(c).__name__)
def test_masked_layer_matches_stock_layer_with_zeroed_kernel(layer, shape):
    model = keras.Sequential(
        [keras.Input(shape[1:], dtype="int32" if "Emb" in str(layer) else "float32"), layer]
    )
    masked = kl.make_prunable(model)
    assert type(masked.layers[0]) is MASKED_VARIANTS[type(layer)]
    rng = np.random.default_rng(1)
    x = (
        rng.integers(0, 10, (2, *shape[1:]))
        if "Emb" in str(layer)
        else rng.random((2, *shape[1:])).astype("float32")
    )
    np.testing.assert_array_equal(model(x), masked(x))  # identical before pruning
    # Set masks but leave the kernels dense: the forward pass must apply the mask.
    for pw in kl.prunable_weights(masked):
        pw.mask.assign((rng.random(pw.mask.shape) < 0.5).astype("float32"))
    expected_model = kl.strip(masked)
    np.testing.assert_allclose(masked(x), expected_model(x), rtol=1e-6, atol=1e-6)
    assert not np.allclose(masked(x), model(x))


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: keras.optimizers.SGD(0.1, momentum=0.9),
        lambda: keras.optimizers.Adam(1e-2),
        lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
        lambda: keras.optimizers.RMSprop(1e-2),
    ],
    ids=["sgd-momentum", "adam", "adamw", "rmsprop"],
)
def test_pruned_weights_never_regrow(optimizer):
    model = kl.make_prunable(lenet(hidden=(32,)))
    model.compile(optimizer(), "sparse_categorical_crossentropy")
    _random_masks(model, keep=0.3)
    pws = kl.prunable_weights(model)
    masks = [np.array(pw.mask) for pw in pws]
    seen = []

    class Check(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(
                all(np.all(np.asarray(pw.kernel)[m == 0] == 0) for pw, m in zip(pws, masks))
            )

    rng = np.random.default_rng(0)
    x = rng.random((256, 28, 28)).astype("float32")
    y = rng.integers(0, 10, 256)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Check()])
    assert len(seen) == 16 and all(seen)
    for pw, m in zip(pws, masks):
        np.testing.assert_array_equal(np.asarray(pw.mask), m)  # masks unchanged
        assert np.all(np.asarray(pw.kernel)[m == 1] != 0)  # survivors trained


def _functional_model():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    shared = keras.layers.Dense(4)
    y = shared(shared(x))
    x = keras.layers.Add()([x, y])  # skip connection
    block = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.SeparableConv2D(3, 3),
            keras.layers.DepthwiseConv2D(3),
        ]
    )
    x = keras.layers.Dropout(0.2)(block(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10)(x))


def test_make_prunable_keeps_structure_weights_and_outputs():
    model = _functional_model()
    masked = kl.make_prunable(model)
    x = np.random.default_rng(0).random((3, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(model(x), masked(x))
    names = [pw.name for pw in kl.prunable_weights(masked)]
    assert len(names) == 6 and len(set(names)) == 6  # shared Dense counted once
    kinds = {type(layer).__name__ for layer in masked.layers}
    assert {"BatchNormalization", "Dropout", "Add", "GlobalAveragePooling2D"} <= kinds
    # The user's model is untouched and does not share variables with the copy.
    assert not kl.prunable_weights(model)
    masked.layers[1].kernel.assign(np.zeros(masked.layers[1].kernel.shape))
    assert np.any(np.asarray(model.layers[1].kernel) != 0)


def test_masks_survive_keras_and_weights_h5_round_trips(tmp_path):
    masked = kl.make_prunable(_functional_model())
    _random_masks(masked)
    x = np.random.default_rng(0).random((3, 8, 8, 3)).astype("float32")
    path = tmp_path / "ticket.keras"
    masked.save(path)
    loaded = keras.models.load_model(path)  # safe mode, no custom_objects
    for a, b in zip(kl.prunable_weights(masked), kl.prunable_weights(loaded)):
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask))
        np.testing.assert_array_equal(np.asarray(a.kernel), np.asarray(b.kernel))
    np.testing.assert_allclose(loaded(x), masked(x), atol=1e-6)
    masked.save_weights(tmp_path / "w.weights.h5")
    fresh = kl.make_prunable(_functional_model())
    fresh.load_weights(tmp_path / "w.weights.h5")
    assert list(kl.sparsity(fresh).values()) == pytest.approx(list(kl.sparsity(masked).values()))
    np.testing.assert_allclose(fresh(x), masked(x), atol=1e-6)


def test_strip_bakes_masks_into_plain_layers():
    masked = kl.make_prunable(_functional_model())
    for pw in kl.prunable_weights(masked):  # masks set, kernels still dense
        pw.mask.assign((np.random.default_rng(3).random(pw.mask.shape) < 0.4).astype("float32"))
    plain = kl.strip(masked)
    assert not any(kl.layers.is_masked(layer) for layer in plain._flatten_layers())
    x = np.random.default_rng(0).random((3, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(plain(x), masked(x), atol=1e-6)
    assert all("mask" not in v.path for v in plain.weights)


def test_subclassed_and_unprunable_models_get_clear_errors():
    class MyModel(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3)

        def call(self, x):
            return self.d(x)

    sub = MyModel()
    sub(np.zeros((1, 4)))
    with pytest.raises(kl.NotPrunableError, match="functional API"):
        kl.make_prunable(sub)
    no_kernels = keras.Sequential([keras.Input((4,)), keras.layers.ReLU()])
    with pytest.raises(kl.NotPrunableError, match="no prunable layer"):
        kl.make_prunable(no_kernels)


def test_import_does_not_change_tf_keras():
    code = (
        "import os, tensorflow as tf; before = tf.keras.__name__;"
        "import keras_lottery;"
        "assert 'TF_USE_LEGACY_KERAS' not in os.environ, 'env changed';"
        "assert tf.keras.__name__ == before, (before, tf.keras.__name__);"
        "import keras; assert keras.__version__.startswith('3');"
        "print(before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("keras")  # Keras 3, not the legacy tf_keras


def test_make_prunable_of_a_masked_model_copies_masks():
    masked = kl.make_prunable(_functional_model())
    _random_masks(masked)
    again = kl.make_prunable(masked)
    assert again is not masked
    for a, b in zip(kl.prunable_weights(masked), kl.prunable_weights(again)):
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask))


def test_subclassed_model_of_masked_layers_is_pruned_in_place():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat = keras.layers.Flatten()
            self.hidden = kl.layers.MaskedDense(32, activation="relu")
            self.out = kl.layers.MaskedDense(10)

        def call(self, x):
            return self.out(self.hidden(self.flat(x)))

    net = Net()
    net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.random((120, 28, 28)).astype("float32"), rng.integers(0, 10, 120)
    net(x[:1])
    ticket = kl.find_ticket(net, (x, y), rounds=1, epochs=1, verbose=0, seed=0)
    assert ticket is net
    assert kl.sparsity(net)["overall"] > 0.1


def test_strip_of_a_plain_model_stays_plain():
    model = _functional_model()
    plain = kl.strip(model)
    assert not any(kl.layers.is_masked(layer) for layer in plain._flatten_layers())
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(plain(x), model(x))

"""The model zoo: architectures, parameter counts, compile settings."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_lottery import zoo
from keras_lottery.masks.convert import make_prunable, prunable_weights

# name -> (input shape, classes, params, [(layer, kernel shape)])
EXPECTED = {
    "lenet_300_100": (
        (28, 28),
        10,
        266_610,
        [("dense_1", (784, 300)), ("dense_2", (300, 100)), ("output", (100, 10))],
    ),
    "lenet5": (
        (28, 28),
        10,
        61_706,
        [
            ("conv_1", (5, 5, 1, 6)),
            ("conv_2", (5, 5, 6, 16)),
            ("dense_1", (400, 120)),
            ("dense_2", (120, 84)),
            ("output", (84, 10)),
        ],
    ),
    "conv2": (
        (32, 32, 3),
        10,
        4_301_642,
        [
            ("conv_1", (3, 3, 3, 64)),
            ("conv_2", (3, 3, 64, 64)),
            ("dense_1", (16 * 16 * 64, 256)),
            ("dense_2", (256, 256)),
            ("output", (256, 10)),
        ],
    ),
    "conv4": (
        (32, 32, 3),
        10,
        2_425_930,
        [
            ("conv_1", (3, 3, 3, 64)),
            ("conv_2", (3, 3, 64, 64)),
            ("conv_3", (3, 3, 64, 128)),
            ("conv_4", (3, 3, 128, 128)),
            ("dense_1", (8 * 8 * 128, 256)),
            ("dense_2", (256, 256)),
            ("output", (256, 10)),
        ],
    ),
    "conv6": (
        (32, 32, 3),
        10,
        2_262_602,
        [
            ("conv_1", (3, 3, 3, 64)),
            ("conv_2", (3, 3, 64, 64)),
            ("conv_3", (3, 3, 64, 128)),
            ("conv_4", (3, 3, 128, 128)),
            ("conv_5", (3, 3, 128, 256)),
            ("conv_6", (3, 3, 256, 256)),
            ("dense_1", (4 * 4 * 256, 256)),
            ("dense_2", (256, 256)),
            ("output", (256, 10)),
        ],
    ),
    "xor": ((2,), 2, 17, [("hidden", (2, 4)), ("output", (4, 1))]),
}

LEARNING_RATES = {
    "lenet_300_100": 1.2e-3,
    "lenet5": 1.2e-3,
    "conv2": 2e-4,
    "conv4": 3e-4,
    "conv6": 3e-4,
    "xor": 1e-2,
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_architecture_and_compile(name):
    shape, classes, params, kernels = EXPECTED[name]
    model = zoo.get_model(name, shape, classes, seed=0)
    assert model.count_params() == params
    for layer, kernel_shape in kernels:
        assert tuple(model.get_layer(layer).kernel.shape) == kernel_shape
    assert model.compiled and isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(LEARNING_RATES[name])
    for layer, _ in kernels:
        init = model.get_layer(layer).kernel_initializer
        assert isinstance(init, keras.initializers.GlorotNormal)
        assert not np.any(np.asarray(model.get_layer(layer).bias))
    # every kernel listed is what keras-lottery prunes
    paths = [w.layer.name for w in prunable_weights(make_prunable(model))]
    assert paths == [layer for layer, _ in kernels]


def test_lenet_300_100_paper_count_and_output():
    model = zoo.lenet_300_100()
    assert model.count_params() == 266_610
    out = model(np.zeros((2, 28, 28), "float32"))
    assert out.shape == (2, 10)
    np.testing.assert_allclose(np.asarray(out).sum(-1), 1.0, rtol=1e-5)  # softmax


def test_conv_models_take_grayscale_images():
    model = zoo.get_model("conv2", (28, 28), 10)
    assert tuple(model.inputs[0].shape[1:]) == (28, 28, 1)
    assert model(np.zeros((1, 28, 28, 1), "float32")).shape == (1, 10)


def test_seed_makes_weights_reproducible():
    a = zoo.get_model("lenet_300_100", (28, 28), 10, seed=1)
    b = zoo.get_model("lenet_300_100", (28, 28), 10, seed=1)
    c = zoo.get_model("lenet_300_100", (28, 28), 10, seed=2)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    # each layer gets its own seed: no two kernels start from the same stream
    k1, k2 = a.get_layer("dense_1").kernel, a.get_layer("dense_2").kernel
    assert not np.allclose(np.asarray(k1)[:300, :100], np.asarray(k2))


def test_glorot_normal_scale():
    kernel = np.asarray(zoo.lenet_300_100(seed=0).get_layer("dense_1").kernel)
    expected = np.sqrt(2.0 / (784 + 300))  # Glorot: Var = 2 / (fan_in + fan_out)
    assert kernel.std() == pytest.approx(expected, rel=0.05)


def test_xor_trains_on_xor():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 64, "float32")
    y = np.logical_xor(x[:, 0], x[:, 1]).astype("float32")
    keras.utils.set_random_seed(0)  # the shuffling order
    model = zoo.xor(units=8, seed=0)
    assert model.get_layer("hidden").units == 8
    assert model.get_layer("output").activation.__name__ == "sigmoid"
    model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0)[1] == 1.0


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="Unknown model 'resnet'.*lenet_300_100.*conv6.*xor"):
        zoo.get_model("resnet", (28, 28), 10)


def test_name_lookup_is_forgiving():
    assert zoo.get_model("LeNet-300-100", (28, 28), 10).name == "lenet_300_100"


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match="height, width"):
        zoo.conv2(input_shape=(784,))
    with pytest.raises(ValueError, match="binary"):
        zoo.xor(num_classes=10)

"""Compaction (a ticket as a smaller dense model), effective sparsity, structured tickets."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.compact.compaction import (
    CompactionError,
    compact,
    effective_sparsity,
    effective_sparsity_or_none,
)


def _train_subset(mnist, n=3000):
    return mnist.x_train[:n], mnist.y_train[:n]


def _ticket(mnist, **options):
    model = kl.zoo.lenet_300_100(seed=0)
    return kl.find_ticket(model, _train_subset(mnist), steps=60, verbose=0, seed=0, **options)


def _outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize(
    "options",
    [
        {"rounds": 1, "rate": 0.98},  # unstructured, sparse enough to leave dead units
        {"rounds": 2, "rate": 0.5, "granularity": "unit"},  # structured: whole units
    ],
    ids=["unstructured", "structured"],
)
def test_compact_lenet_ticket_same_outputs_fewer_parameters(mnist, options):
    ticket = _ticket(mnist, **options)
    x = mnist.x_test[:512]
    expected = _outputs(ticket, x)
    masks = {w.name: np.array(w.mask) for w in ticket.prunable_weights()}
    small, report = compact(ticket)
    np.testing.assert_allclose(_outputs(small, x), expected, atol=1e-5)
    assert small.count_params() == report.params_after < report.params_before
    assert report.units["output"] == (10, 10)  # the output layer keeps every unit
    assert report.effective_sparsity >= report.sparsity
    for w in ticket.prunable_weights():  # the ticket itself is unchanged
        np.testing.assert_array_equal(np.array(w.mask), masks[w.name])
    # Dropping the unused pixels too: the compact model takes only those.
    smaller, report2 = compact(ticket, allow_input_change=True)
    flat = x.reshape(len(x), -1)[:, report2.inputs] if report2.dropped_inputs else x
    assert report2.dropped_inputs == (report2.unused_inputs > 0)
    np.testing.assert_allclose(_outputs(smaller, flat), expected, atol=1e-5)
    assert smaller.count_params() <= small.count_params()
    if "granularity" in options:  # rate 0.5 twice: 300 -> 75 and 100 -> 25 units
        assert report.units["dense_1"] == (300, 75) and report.units["dense_2"] == (100, 25)
        assert ticket.lottery.final.effective_sparsity == pytest.approx(report.effective_sparsity)


def _dense_chain(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, activation="relu", name="hidden"),
            keras.layers.Dense(2, name="out"),
        ]
    )


def test_unit_without_inputs_folds_its_bias_into_the_next_layer():
    model = _dense_chain()
    hidden, out = model.get_layer("hidden"), model.get_layer("out")
    k = np.array(hidden.kernel)
    k[:, 1] = 0  # unit 1 has no input: its output is relu(bias[1]) for every example
    k[:, 2] = 0  # unit 2 too, but relu(-0.5) = 0: nothing to fold
    hidden.kernel.assign(k)
    hidden.bias.assign(np.array([0.1, 0.7, -0.5], "float32"))
    out.bias.assign(np.array([0.2, -0.3], "float32"))
    w_out = np.array(out.kernel)
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    small, report = compact(model)
    assert report.units == {"hidden": (3, 1), "out": (2, 2)}
    assert report.folded == {"hidden": 2}
    expected_bias = np.array([0.2, -0.3]) + 0.7 * w_out[1] + 0.0 * w_out[2]
    np.testing.assert_allclose(np.array(small.get_layer("out").bias), expected_bias, rtol=1e-6)
    np.testing.assert_allclose(_outputs(small, x), _outputs(model, x), atol=1e-6)


def test_unit_without_outputs_is_dropped_and_effective_sparsity_counts_its_inputs():
    model = _dense_chain()
    out = model.get_layer("out")
    w = np.array(out.kernel)
    w[0] = 0  # hidden unit 0 reaches no output
    out.kernel.assign(w)
    eff = effective_sparsity(model)
    # hidden/kernel: unit 0's 4 input weights are ineffective; out/kernel: its 2 zeros.
    assert eff[model.get_layer("hidden").kernel.path] == pytest.approx(4 / 12)
    assert eff[out.kernel.path] == pytest.approx(2 / 6)
    assert eff["overall"] == pytest.approx(6 / 18)
    small, report = compact(model)
    assert report.units["hidden"] == (3, 2)
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    np.testing.assert_allclose(_outputs(small, x), _outputs(model, x), atol=1e-6)


def _conv_chain(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.DepthwiseConv2D(1, name="dw")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(5, name="head")(x)
    return keras.Model(inputs, outputs)


def test_conv_chain_folds_channels_through_batchnorm_pooling_and_flatten():
    model = _conv_chain()
    rng = np.random.default_rng(0)
    for layer in model.layers:
        for var in layer.weights:
            var.assign(rng.normal(size=var.shape).astype("float32") * 0.5)
    bn = model.get_layer("bn")
    bn.moving_variance.assign(rng.random(8).astype("float32") + 0.5)
    c1, c2, dw = (model.get_layer(n) for n in ("c1", "c2", "dw"))
    k = np.array(c1.kernel)
    k[..., [1, 3]] = 0  # constant channels (through BN and pooling) into a "same" conv
    c1.kernel.assign(k)
    k = np.array(c2.kernel)
    k[:, :, :, [0, 4]] = 0  # constant channels through the depthwise and Flatten
    k[:, :, 5, :] = 0  # c1 channel 5 is used by nobody
    c2.kernel.assign(k)
    x = rng.normal(size=(4, 12, 12, 3)).astype("float32")
    small, report = compact(model)
    np.testing.assert_allclose(_outputs(small, x), _outputs(model, x), atol=1e-5)
    assert report.units["c2"] == (6, 4) and report.units["dw"] == (6, 4)
    assert report.folded["c2"] == 2
    # c1: channel 5 dropped; the constant channels 1, 3 feed a "same" conv and are
    # folded only where their constant is 0.
    assert report.units["c1"][1] < 8
    assert small.count_params() < model.count_params()


def test_compaction_refuses_what_it_cannot_rewrite():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(4, name="a")(inputs)
    res = keras.layers.Add(name="residual")([inputs, h])
    residual = keras.Model(inputs, keras.layers.Dense(2)(res))
    # Not a chain: compacted through its graph, where the input's width stays (and says so).
    small, report = compact(residual)
    assert report.units["a"] == (4, 4) and report.effective_sparsity is None
    assert any("a model input" in k for k in report.kept)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 3), "float32"))
    with pytest.raises(CompactionError, match="subclassed"):
        compact(sub)
    with pytest.raises(TypeError, match="keras.Model"):
        compact("model.keras")
    assert effective_sparsity_or_none(residual) is None


def test_unknown_layers_keep_their_width_and_are_listed():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="relu", name="a"),
            keras.layers.LayerNormalization(name="norm"),
            keras.layers.Dense(4, activation="relu", name="b"),
            keras.layers.Dense(2, name="c"),
        ]
    )
    c = model.get_layer("c")
    w = np.array(c.kernel)
    w[1] = 0
    c.kernel.assign(w)
    model.get_layer("b").kernel.assign(np.zeros((5, 4), "float32") + 0.1)
    k = np.array(model.get_layer("a").kernel)
    k[:, 0] = 0
    model.get_layer("a").kernel.assign(k)
    small, report = compact(model)
    assert report.units["a"] == (5, 5)  # before the LayerNormalization: kept
    assert report.units["b"] == (4, 3)  # unit 1 of b reaches no output
    assert any("'norm' (LayerNormalization)" in k for k in report.kept)
    x = np.random.default_rng(2).normal(size=(8, 6)).astype("float32")
    np.testing.assert_allclose(_outputs(small, x), _outputs(model, x), atol=1e-5)


def test_coverage_shows_effective_sparsity(mnist):
    ticket = kl.make_prunable(kl.zoo.lenet_300_100(seed=0))
    masks = {w.name: np.ones(w.kernel.shape, bool) for w in ticket.prunable_weights()}
    masks["output/kernel"][7] = False  # dense_2 unit 7 now reaches no output
    ticket.set_masks(masks)
    table = kl.coverage(ticket)
    assert table.effective["dense_2/kernel"] == pytest.approx(300 / 30000)
    assert "effective" in str(table)


def _small_conv_net(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
            keras.layers.DepthwiseConv2D(3, activation="relu", name="dw"),
            keras.layers.Conv2D(8, 1, activation="relu", name="c2"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(4, name="head"),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("criterion", ["l1", "l2", "product"])
def test_structured_ticket_of_a_conv_net_prunes_whole_filters_and_compacts(criterion):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(64, 10, 10, 3)).astype("float32"), rng.integers(0, 4, 64))
    ticket = kl.find_ticket(
        _small_conv_net(),
        data,
        rounds=1,
        rate=0.5,
        granularity="unit",
        unit_criterion=criterion,
        steps=3,
        batch_size=16,
        verbose=0,
        seed=0,
    )
    masks = {w.layer.name: np.array(w.mask) for w in ticket.prunable_weights()}
    assert masks["c1"].any(axis=(0, 1, 2)).sum() == 4  # whole filters: 8 -> 4
    assert masks["dw"].any(axis=(0, 1, 3)).sum() == 4  # depthwise channels
    # c1's filter and the depthwise channel it feeds are one unit, removed together.
    np.testing.assert_array_equal(masks["c1"].any(axis=(0, 1, 2)), masks["dw"].any(axis=(0, 1, 3)))
    assert masks["head"].any(axis=0).all()  # the output layer keeps every unit
    # A removed c2 filter is masked where it is read too: its row of the head.
    np.testing.assert_array_equal(masks["head"].any(axis=1), masks["c2"].any(axis=(0, 1, 2)))
    small, report = compact(ticket)
    np.testing.assert_allclose(_outputs(small, data[0]), _outputs(ticket, data[0]), atol=1e-5)
    assert report.units["c1"][1] <= 4 and report.params_after < report.params_before


def test_n_m_granularity_keeps_two_of_every_four_inputs():
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(12), keras.layers.Dense(3)])
    model.compile("sgd", "mse")
    data = (rng.normal(size=(32, 8)).astype("float32"), rng.normal(size=(32, 3)))
    ticket = kl.find_ticket(model, data, rounds=1, granularity="2:4", steps=2, verbose=0, seed=0)
    for w in ticket.prunable_weights():
        groups = np.array(w.mask).T.reshape(w.mask.shape[1], -1, 4)
        assert (groups.sum(axis=-1) == 2).all()
        kept = np.abs(np.array(w.kernel)).T.reshape(groups.shape)
        assert (kept > 0).sum(axis=-1).max() <= 2  # the pruned weights are 0
    with pytest.raises(ValueError, match="N:M pattern"):
        kl.find_ticket(model, data, granularity="4:2", steps=1, verbose=0)


def test_export_compact_writes_the_smaller_model(tmp_path):
    model = _dense_chain()
    out = model.get_layer("out")
    w = np.array(out.kernel)
    w[0] = 0
    out.kernel.assign(w)
    x = np.random.default_rng(3).normal(size=(16, 4)).astype("float32")
    report = kl.export(model, tmp_path / "m.keras", "keras", verify_data=x, compact=True)
    assert report.params < model.count_params()
    assert any(n.startswith("compacted before export") for n in report.notes)
    loaded = keras.saving.load_model(report.path)
    np.testing.assert_allclose(_outputs(loaded, x), _outputs(model, x), atol=1e-6)

"""MaskedModel and coverage: forward masking, zero gradients, no regrowth, saving, selection."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from conftest import lenet
from matrix import build

import keras_lottery as kl

LAYER_CASES = {
    "Dense": (lambda: keras.layers.Dense(5), (4,)),
    "EinsumDense": (lambda: keras.layers.EinsumDense("ab,bc->ac", (5,), bias_axes="c"), (4,)),
    "Conv1D": (lambda: keras.layers.Conv1D(3, 2), (6, 2)),
    "Conv2D": (lambda: keras.layers.Conv2D(3, 2), (6, 6, 2)),
    "Conv3D": (lambda: keras.layers.Conv3D(3, 2), (4, 4, 4, 2)),
    "Conv2DTranspose": (lambda: keras.layers.Conv2DTranspose(3, 2), (5, 5, 2)),
    "DepthwiseConv2D": (lambda: keras.layers.DepthwiseConv2D(2), (6, 6, 2)),
    "SeparableConv2D": (lambda: keras.layers.SeparableConv2D(3, 2), (6, 6, 2)),
    "Embedding": (lambda: keras.layers.Embedding(10, 4), (3,)),
    "MultiHeadAttention": (None, (5, 4)),
    "LSTM": (lambda: keras.layers.LSTM(3), (5, 2)),
    "GRU": (lambda: keras.layers.GRU(3), (5, 2)),
    "SimpleRNN": (lambda: keras.layers.SimpleRNN(3), (5, 2)),
    "ConvLSTM2D": (lambda: keras.layers.ConvLSTM2D(2, 2), (3, 5, 5, 1)),
    "Bidirectional": (lambda: keras.layers.Bidirectional(keras.layers.GRU(3)), (5, 2)),
}


def _one_layer_model(kind):
    factory, shape = LAYER_CASES[kind]
    inp = keras.Input(shape, dtype="int32" if kind == "Embedding" else "float32")
    if kind == "MultiHeadAttention":
        out = keras.layers.MultiHeadAttention(2, 3)(inp, inp)
    else:
        out = factory()(inp)
    return keras.Model(inp, out)


def _data(model, n=4, seed=1):
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    if model.inputs[0].dtype == "int32":
        return rng.integers(0, 10, (n, *shape))
    return rng.random((n, *shape)).astype("float32")


def _np(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _raw_masks(masked, keep=0.5, seed=0):
    """Assign random masks *without* zeroing the weights (to test the forward pass)."""
    rng = np.random.default_rng(seed)
    for pw in masked.prunable_weights():
        pw.mask.assign(rng.random(pw.mask.shape) < keep)


@pytest.mark.backends
@pytest.mark.parametrize("kind", list(LAYER_CASES))
def test_forward_pass_uses_masked_weights(kind):
    model = _one_layer_model(kind)
    x = _data(model)
    dense = _np(model(x))
    masked = kl.make_prunable(model)
    assert not masked.coverage().dense_matrices
    # All-ones masks: the same function (bitwise on TF and JAX, to float rounding on torch).
    np.testing.assert_allclose(_np(masked(x)), dense, rtol=1e-6, atol=1e-7)
    _raw_masks(masked)
    out = _np(masked(x))  # weights still dense in storage: the forward pass masks
    assert not np.allclose(out, dense)
    masked.apply_masks()  # now zero them in storage: the plain model computes the same
    np.testing.assert_allclose(_np(model(x)), out, rtol=1e-5, atol=1e-6)


@pytest.mark.backends
def test_pruned_weights_get_exactly_zero_gradient():
    """One SGD step leaves pruned weights at 0: the training step masks their gradient."""
    masked = kl.make_prunable(build("transformer_block")[0])
    _, x, y = build("transformer_block")
    masked.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    _raw_masks(masked, keep=0.3)
    masked.apply_masks()
    before = {pw.name: np.array(pw.kernel) for pw in masked.prunable_weights()}
    masked.train_on_batch(x[:8], y[:8])
    for pw in masked.prunable_weights():
        value, mask = np.asarray(pw.kernel), np.asarray(pw.mask)
        assert not np.any(value[~mask]), pw.name
        assert np.any(value[mask] != before[pw.name][mask]), pw.name  # survivors move


@pytest.mark.backends
@pytest.mark.parametrize("entry", ["fit", "train_on_batch"])
def test_training_zeroes_storage_first_and_computes_the_masked_function(entry):
    """Pruned weights left non-zero in storage are zeroed before the first training step,
    and the training step (variables as stored, gradient masked) computes weight * mask."""
    masked = kl.make_prunable(lenet(hidden=(32,)))
    masked.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(True))
    _raw_masks(masked, keep=0.4)  # storage still dense
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 28, 28)).astype("float32"), rng.integers(0, 10, 16)
    expected = masked.evaluate(x, y, batch_size=16, verbose=0)  # weight * mask, dense storage
    if entry == "fit":
        loss = masked.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"][0]
    else:
        loss = float(masked.train_on_batch(x, y))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    for pw in masked.prunable_weights():
        assert not np.any(np.asarray(pw.kernel)[~np.asarray(pw.mask)]), pw.name


@pytest.mark.backends
@pytest.mark.parametrize(
    "optimizer",
    [
        lambda: keras.optimizers.SGD(0.1, momentum=0.9),
        lambda: keras.optimizers.Adam(1e-2),
        lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
        lambda: keras.optimizers.RMSprop(1e-2),
        lambda: keras.optimizers.Lion(1e-3),
        lambda: keras.optimizers.Adagrad(1e-1),
    ],
    ids=["sgd-momentum", "adam", "adamw", "rmsprop", "lion", "adagrad"],
)
def test_pruned_weights_never_regrow(optimizer):
    model = kl.make_prunable(lenet(hidden=(32,)))
    model.compile(optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    model.set_masks({pw.name: rng.random(pw.mask.shape) < 0.3 for pw in model.prunable_weights()})
    pws = model.prunable_weights()
    masks = [np.array(pw.mask) for pw in pws]
    seen = []

    class Check(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            kernels = [np.asarray(w.kernel) for w in self.model.prunable_weights()]
            seen.append(all(not np.any(k[~m]) for k, m in zip(kernels, masks)))

    x = rng.random((256, 28, 28)).astype("float32")
    y = rng.integers(0, 10, 256)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[Check()])
    assert len(seen) == 16 and all(seen)
    for pw, m in zip(pws, masks):
        np.testing.assert_array_equal(np.asarray(pw.mask), m)  # masks unchanged
        assert np.all(np.asarray(pw.kernel)[m] != 0)  # survivors trained


@pytest.mark.backends
def test_set_masks_apply_masks_and_kept_counts_agree_with_numpy():
    """The same counts and zeros as NumPy, call after call, with strays in some weights only."""
    model = kl.make_prunable(lenet(hidden=(32,)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 28, 28)).astype("float32"), rng.integers(0, 10, 32)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)  # non-zero Adam moments
    pws = model.prunable_weights()
    slots = model._optimizer_slots(model.optimizer)
    for call in range(3):
        masks = {pw.name: rng.random(pw.mask.shape) < 0.5 for pw in pws}
        model.set_masks(masks)
        for pw, pw_slots in zip(pws, slots):
            m = masks[pw.name]
            assert not np.any(np.asarray(pw.kernel)[~m]), call
            assert pw_slots and all(not np.any(np.asarray(s)[~m]) for s in pw_slots), call
        np.testing.assert_array_equal(model.kept_counts(), [m.sum() for m in masks.values()])
        before = [np.asarray(pw.kernel) for pw in pws]
        written = [i % 2 == call % 2 for i in range(len(pws))]  # the others keep their zeros
        values = [
            rng.standard_normal(b.shape).astype("float32") if w else b
            for b, w in zip(before, written)
        ]
        for pw, value in zip(pws, values):
            pw.kernel.assign(value)
        strays = sum(int(np.count_nonzero(v[~masks[pw.name]])) for pw, v in zip(pws, values))
        assert model.apply_masks() == strays > 0
        assert model.apply_masks() == 0
        for pw, value in zip(pws, values):
            m = masks[pw.name]
            np.testing.assert_array_equal(np.asarray(pw.kernel), np.where(m, value, 0))


def test_set_masks_names_the_weight_whose_mask_has_another_shape():
    model = kl.make_prunable(lenet(hidden=(32,)))
    pw = model.prunable_weights()[0]
    before = np.array(pw.mask)
    with pytest.raises(ValueError, match=f"{re.escape(pw.name)}.*shape"):
        model.set_masks({pw.name: np.ones(tuple(pw.mask.shape)[::-1], bool)})
    np.testing.assert_array_equal(np.asarray(pw.mask), before)


def test_fit_skips_its_zeroing_only_where_the_caller_has_just_zeroed(monkeypatch):
    """The search's private skip: ``fit`` inside ``_zeroed_already`` does not zero again."""
    model = kl.make_prunable(lenet(hidden=(8,)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    calls = []
    original = kl.MaskedModel._zero_pruned
    monkeypatch.setattr(
        kl.MaskedModel, "_zero_pruned", lambda self: (calls.append(1), original(self))
    )
    x, y = np.zeros((4, 28, 28), "float32"), np.zeros(4, "int32")
    with model._zeroed_already():
        model.fit(x, y, batch_size=4, verbose=0)
    assert calls == []
    model.fit(x, y, batch_size=4, verbose=0)
    assert calls == [1]


def _functional_model():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    shared = keras.layers.Dense(4)
    x = x + shared(shared(x))  # shared layer and a raw-op skip connection
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


def test_keras_and_weights_files_keep_masks(tmp_path):
    model = _functional_model()
    masked = kl.make_prunable(model)
    rng = np.random.default_rng(0)
    masked.set_masks({pw.name: rng.random(pw.mask.shape) < 0.5 for pw in masked.prunable_weights()})
    x = rng.random((3, 8, 8, 3)).astype("float32")
    masked.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, kl.MaskedModel)
    np.testing.assert_allclose(loaded(x), masked(x), atol=1e-6)
    for a, b in zip(masked.prunable_weights(), loaded.prunable_weights()):
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask))
    fresh = kl.make_prunable(_functional_model())
    masked.save_weights(tmp_path / "m.weights.h5")
    fresh.load_weights(tmp_path / "m.weights.h5")
    for a, b in zip(masked.prunable_weights(), fresh.prunable_weights()):
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask))
        np.testing.assert_array_equal(np.asarray(a.kernel), np.asarray(b.kernel))


def test_strip_gives_the_plain_model_with_zeros(tmp_path):
    model = _functional_model()
    masked = kl.make_prunable(model)
    _raw_masks(masked)  # masks set, kernels still dense
    x = np.random.default_rng(0).random((3, 8, 8, 3)).astype("float32")
    expected = np.asarray(masked(x))
    plain = kl.strip(masked)
    assert plain is model and not any("mask" in v.path for v in plain.weights)
    np.testing.assert_allclose(plain(x), expected, atol=1e-6)
    for pw in masked.prunable_weights():
        assert not np.any(np.asarray(pw.kernel)[~np.asarray(pw.mask)])
    assert kl.strip(plain) is plain
    plain.save(tmp_path / "plain.keras")
    code = (
        "import keras, numpy as np, sys; "
        f"m = keras.models.load_model({str(tmp_path / 'plain.keras')!r}); "
        "assert 'keras_lottery' not in sys.modules; print(type(m).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_make_prunable_errors_and_idempotence():
    masked = kl.make_prunable(lenet(hidden=(8,)))
    assert kl.make_prunable(masked) is masked
    with pytest.raises(ValueError, match="mask-aware already"):
        kl.make_prunable(masked, exclude="*")
    no_kernels = keras.Sequential([keras.Input((4,)), keras.layers.ReLU()])
    with pytest.raises(kl.NotPrunableError, match="no weights"):
        kl.make_prunable(no_kernels)

    class Lazy(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(3)

        def call(self, x):
            return self.d(x)

    with pytest.raises(kl.NotPrunableError, match="not built"):
        kl.make_prunable(Lazy())
    with pytest.raises(ValueError, match="match no variable"):
        kl.make_prunable(lenet(hidden=(8,)), include="*attention*")
    with pytest.raises(TypeError, match="glob string"):
        kl.make_prunable(lenet(hidden=(8,)), include=[3])


def test_coverage_rows_reasons_and_selection():
    model = build("transformer_block")[0]
    table = kl.coverage(model)
    paths = [r.path for r in table.rows]
    assert len(paths) == len(set(paths)) == len(model.weights)
    reasons = {r.path: r.reason for r in table.rows}
    assert reasons["mha/query/kernel"] == "pruned"
    assert reasons["mha/query/bias"] == "bias"  # 2-D, but a bias
    assert reasons["ln1/gamma"] == "small"
    text = str(table)
    assert "mha/attention_output/kernel" in text and "weight matrices stay dense" in text

    glob = kl.coverage(model, exclude="mha/*")
    assert {r.path for r in glob.dense_matrices} == {
        f"mha/{n}/kernel" for n in ("query", "key", "value", "attention_output")
    }
    assert all(r.reason == "excluded" for r in glob.dense_matrices)
    regex = kl.coverage(model, include=re.compile(r"ffn_(in|out)/kernel$"))
    assert [r.path for r in regex.pruned] == ["ffn_in/kernel", "ffn_out/kernel"]
    pred = kl.coverage(model, include=lambda v: v.path.startswith("head/"))
    assert [r.path for r in pred.pruned] == ["head/kernel", "head/bias"]  # include adds 1-D too
    frozen = build("transformer_block")[0]
    frozen.get_layer("mha").trainable = False
    assert {r.reason for r in kl.coverage(frozen).dense_matrices} == {"frozen"}


@pytest.mark.parametrize(
    "name,heads",
    [
        ("transformer_block", {"head/kernel"}),
        ("two_in_two_out", {"label/kernel", "score/kernel"}),
        ("subclassed", {"subclassed/head/kernel"}),
        ("nested", {"head/kernel"}),
    ],
)
def test_output_layer_found_in_any_graph(name, heads):
    masked = kl.make_prunable(build(name)[0])
    assert {pw.name for pw in masked.prunable_weights() if pw.is_output} == heads


def test_sparsity_counts_every_weight_matrix():
    model = build("transformer_block")[0]
    masked = kl.make_prunable(model, exclude="mha/*")
    masked.set_masks({pw.name: np.zeros(pw.mask.shape, bool) for pw in masked.prunable_weights()})
    s = kl.sparsity(masked)
    assert s["ffn_in/kernel"] == 1.0 and s["mha/query/kernel"] == 0.0
    sizes = {
        r.path: int(np.prod(r.variable.shape)) for r in kl.coverage(masked).rows if r.is_matrix
    }
    dense = sum(v for k, v in sizes.items() if k.startswith("mha/"))
    assert s["overall"] == pytest.approx(1 - dense / sum(sizes.values()))
    assert kl.sparsity(model)["overall"] == pytest.approx(s["overall"])  # plain model: zeros


def test_search_warns_once_about_dense_matrices():
    model, x, y = build("transformer_block")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kl.find_ticket(model, (x, y), rounds=1, steps=2, batch_size=8, exclude="mha/*", verbose=0)
    dense = [w for w in caught if "dense:" in str(w.message)]
    assert len(dense) == 1
    assert "mha/query/kernel (excluded by exclude=)" in str(dense[0].message)


def test_layer_rates_by_path_glob_and_layer_name():
    model, x, y = build("transformer_block")
    rates = {"mha/*": 0.1, "ffn_in": 0.3, "ffn_out/kernel": 0.4}
    ticket = kl.find_ticket(
        model, (x, y), rounds=1, rate=0.5, steps=2, batch_size=8, layer_rates=rates, verbose=0
    )
    kept = {pw.name: np.asarray(pw.mask).mean() for pw in ticket.prunable_weights()}
    assert kept["mha/query/kernel"] == pytest.approx(0.9, abs=0.01)
    assert kept["ffn_in/kernel"] == pytest.approx(0.7, abs=0.01)
    assert kept["ffn_out/kernel"] == pytest.approx(0.6, abs=0.01)
    assert kept["head/kernel"] == pytest.approx(0.75, abs=0.05)  # output layer: rate / 2
    with pytest.raises(ValueError, match="match no pruned weight"):
        kl.find_ticket(*_fresh(), rounds=1, steps=1, layer_rates={"nope/*": 0.2}, verbose=0)


def _fresh():
    model, x, y = build("transformer_block")
    return model, (x, y)


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

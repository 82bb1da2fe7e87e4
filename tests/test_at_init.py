"""Pruning at initialization (SNIP, GraSP, SynFlow, magnitude, random) and its gradients.

Backend-neutral: no TensorFlow import, so CI runs these on JAX and PyTorch too.
"""

from __future__ import annotations

import keras
import matrix
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.criteria import gradients, magnitude
from keras_lottery.search import at_init

METHODS = at_init.METHODS


def data(n=128, features=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype("float32"), rng.integers(0, classes, n)


def mlp(seed=0, features=12, hidden=(24, 16), classes=3, norm=True):
    """A small MLP with biases and a BatchNormalization (never pruned)."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((features,))]
    for i, h in enumerate(hidden):
        layers.append(keras.layers.Dense(h, activation="relu"))
        if norm and i == 0:
            layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.Dense(classes, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    return model


def kept(ticket) -> list[int]:
    """Kept weights per pruned weight, in order (paths differ between two models)."""
    return [int(np.asarray(w.mask).sum()) for w in ticket.prunable_weights()]


def masks_of(ticket) -> list[np.ndarray]:
    return [np.asarray(w.mask).copy() for w in ticket.prunable_weights()]


@pytest.mark.backends
@pytest.mark.parametrize("method", METHODS)
def test_global_sparsity_and_theta0(method):
    model = mlp()
    before = [np.array(v) for v in model.weights]
    ticket = kl.prune_at_init(model, data(), sparsity=0.9, method=method, iterations=5)
    assert isinstance(ticket, kl.MaskedModel)
    sizes = {w.name: int(np.prod(w.kernel.shape)) for w in ticket.prunable_weights()}
    assert sum(kept(ticket)) == magnitude.keep_count(sum(sizes.values()), 0.9, 1)
    assert ticket.at_init["remaining"] == pytest.approx(sum(kept(ticket)) / sum(sizes.values()))
    pruned_vars = {id(w.kernel): np.asarray(w.mask) for w in ticket.prunable_weights()}
    assert len(pruned_vars) == 3  # the three kernels: biases and the norm are not pruned
    for var, value in zip(model.weights, before):
        now = np.array(var)
        if id(var) in pruned_vars:  # θ0 where kept, exactly 0 where pruned
            mask = pruned_vars[id(var)]
            np.testing.assert_array_equal(now, np.where(mask, value, 0))
        else:  # biases, BatchNorm parameters and statistics: untouched
            np.testing.assert_array_equal(now, value)


@pytest.mark.backends
@pytest.mark.parametrize("method", METHODS)
def test_layerwise_counts_with_the_output_rule(method):
    ticket = kl.prune_at_init(
        mlp(), data(), sparsity=0.8, method=method, scope="layerwise", iterations=5
    )
    for w, n in zip(ticket.prunable_weights(), kept(ticket)):
        size = int(np.prod(w.kernel.shape))
        rate = 0.4 if w.is_output else 0.8  # the output layer at half the rate
        assert n == magnitude.keep_count(size, rate, 1), w.name
    out = kl.prune_at_init(
        mlp(), data(), sparsity=0.8, method=method, scope="layerwise", output_sparsity=0.5
    )
    w = out.prunable_weights()[-1]
    assert w.is_output
    assert kept(out)[-1] == magnitude.keep_count(int(np.prod(w.kernel.shape)), 0.5, 1)


@pytest.mark.backends
def test_masks_never_regrow_in_fit_and_same_seed_same_masks():
    x, y = data()
    first = kl.prune_at_init(mlp(), (x, y), sparsity=0.7, method="snip", seed=3)
    again = kl.prune_at_init(mlp(), (x, y), sparsity=0.7, method="snip", seed=3)
    masks = masks_of(first)
    for m, m0 in zip(masks_of(again), masks):
        np.testing.assert_array_equal(m, m0)
    first.fit(x, y, epochs=2, batch_size=32, verbose=0)
    for w, m0 in zip(first.prunable_weights(), masks):
        np.testing.assert_array_equal(np.asarray(w.mask), m0)
        assert np.all(np.asarray(w.kernel)[~m0] == 0)
        assert np.any(np.asarray(w.kernel)[m0] != 0)
    r1 = kl.prune_at_init(mlp(), sparsity=0.7, method="random", seed=1)
    r2 = kl.prune_at_init(mlp(), sparsity=0.7, method="random", seed=1)
    r3 = kl.prune_at_init(mlp(), sparsity=0.7, method="random", seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(masks_of(r1), masks_of(r2)))
    assert not all(np.array_equal(a, b) for a, b in zip(masks_of(r1), masks_of(r3)))


@pytest.mark.backends
def test_snip_scores_match_a_hand_computation():
    """One linear layer, mean squared error: g = 2/(n k) xᵀ(xW - y), score |g ⊙ W|."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = rng.normal(size=(16, 4)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, use_bias=False)])
    model.compile("sgd", "mse")
    w = np.array(model.weights[0])
    expected = np.abs(2.0 / (16 * 4) * x.T @ (x @ w - y) * w)
    ticket = kl.make_prunable(model)
    scores = at_init.snip_scores(ticket, ticket.prunable_weights(), [(x, y)])
    np.testing.assert_allclose(next(iter(scores.values())), expected, rtol=1e-4, atol=1e-7)


@pytest.mark.backends
def test_grasp_scores_and_sign_match_a_hand_computation():
    """One linear layer, mean squared error: H v = 2/(n k) xᵀx v, score θ ⊙ Hg, keep the highest.

    GraSP removes the weights of highest S(-θ) = -θ ⊙ Hg, i.e. keeps the highest θ ⊙ Hg.
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = rng.normal(size=(16, 4)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, use_bias=False)])
    model.compile("sgd", "mse")
    w = np.array(model.weights[0], dtype="float64")
    g = 2.0 / (16 * 4) * x.T @ (x @ w - y)
    expected = w * (2.0 / (16 * 4) * x.T @ x @ g)
    ticket = kl.make_prunable(model)
    scores = at_init.grasp_scores(ticket, ticket.prunable_weights(), [(x, y)], temperature=1.0)
    np.testing.assert_allclose(next(iter(scores.values())), expected, rtol=1e-3, atol=1e-6)
    pruned = kl.prune_at_init(
        model, (x, y), sparsity=0.5, method="grasp", temperature=1.0, batch_size=16
    )
    kept_scores = np.sort(expected[masks_of(pruned)[0]])
    assert kept_scores.size == 10 and kept_scores[0] >= np.sort(expected.ravel())[-10]


def _smooth_model():
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)]
    )
    model.compile("sgd", "mse")
    return model


@pytest.mark.backends
def test_gradients_and_hessian_vector_product_match_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    model = _smooth_model()
    weights = [v for v in model.trainable_variables]
    values = [np.array(v, dtype="float64") for v in weights]
    fn = gradients.model_loss(model, x, y)

    def loss_at(vals):
        for var, v in zip(weights, vals):
            var.assign(v.astype("float32"))
        return float(keras.ops.convert_to_numpy(fn()))

    def grads_at(vals):
        for var, v in zip(weights, vals):
            var.assign(v.astype("float32"))
        return gradients.loss_gradients(model, x, y, weights)

    g = grads_at(values)
    eps = 1e-2
    for i in (0, 2):  # the first kernel and the second kernel, every entry
        fd = np.zeros_like(values[i])
        for idx in np.ndindex(values[i].shape):
            plus = [v.copy() for v in values]
            minus = [v.copy() for v in values]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            fd[idx] = (loss_at(plus) - loss_at(minus)) / (2 * eps)
        np.testing.assert_allclose(g[i], fd, rtol=2e-2, atol=2e-4)
    v = [rng.normal(size=a.shape) for a in values]
    grads_at(values)
    hv = gradients.loss_hessian_vector_product(model, x, y, weights, v)
    plus = grads_at([a + eps * b for a, b in zip(values, v)])
    minus = grads_at([a - eps * b for a, b in zip(values, v)])
    for h, p, m in zip(hv, plus, minus):
        np.testing.assert_allclose(h, (p - m) / (2 * eps), rtol=3e-2, atol=3e-3)


@pytest.mark.backends
def test_invert_keeps_the_complement_ranking():
    model = mlp()
    magnitudes = [np.abs(np.array(w)) for w in model.weights if len(w.shape) == 2]
    inverted = kl.prune_at_init(mlp(), sparsity=0.5, method="magnitude", invert=True)
    straight = kl.prune_at_init(mlp(), sparsity=0.5, method="magnitude")
    total = sum(m.size for m in magnitudes)
    assert total % 2 == 0
    flat = np.concatenate([m.ravel() for m in magnitudes])
    assert len(np.unique(flat)) == total  # no ties
    a, b = masks_of(inverted), masks_of(straight)
    for inv, straight_mask in zip(a, b):
        np.testing.assert_array_equal(inv, ~straight_mask)  # exactly the other half
    kept_values = np.concatenate([m.ravel()[k.ravel()] for m, k in zip(magnitudes, a)])
    assert kept_values.max() < np.sort(flat)[total // 2]  # the lowest half, all of it


@pytest.mark.backends
def test_controls_rearrange_and_reinit():
    x, y = data()
    base = kl.prune_at_init(mlp(), (x, y), sparsity=0.8, method="snip")
    shuffled = kl.prune_at_init(mlp(), (x, y), sparsity=0.8, method="snip", control="rearrange")
    assert kept(shuffled) == kept(base)  # per-layer counts kept
    assert any(not np.array_equal(a, b) for a, b in zip(masks_of(base), masks_of(shuffled)))
    model = mlp()
    before = [np.array(v) for v in model.weights]
    fresh = kl.prune_at_init(model, (x, y), sparsity=0.8, method="snip", control="reinit")
    for m, m0 in zip(masks_of(fresh), masks_of(base)):  # the masks of θ0 ...
        np.testing.assert_array_equal(m, m0)
    kernels = [(np.array(w.kernel), w) for w in fresh.prunable_weights()]
    for value, w in kernels:  # ... on new values, pruned ones at 0
        assert np.all(value[~np.asarray(w.mask)] == 0)
    assert not np.allclose(np.array(model.weights[0]), before[0])


@pytest.mark.backends
def test_synflow_keeps_every_layer_alive_where_snip_collapses():
    """Tanaka et al.: at extreme sparsity SNIP empties whole layers, SynFlow does not."""

    def deep(seed=0):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [keras.Input((20,))]
            + [keras.layers.Dense(64, activation="relu") for _ in range(3)]
            + [keras.layers.Dense(4)]
        )
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    x, y = data(256, 20, 4)
    snip = kl.prune_at_init(deep(), (x, y), sparsity=0.995, method="snip", batches=2)
    synflow = kl.prune_at_init(deep(), sparsity=0.995, method="synflow")
    # SNIP empties a 64x64 layer (or leaves it one weight, depending on the backend's θ0).
    assert min(kept(snip)) <= 1, kept(snip)
    assert min(kept(synflow)) >= 5, kept(synflow)
    assert sum(kept(synflow)) == sum(kept(snip))


@pytest.mark.backends
def test_refusals():
    with pytest.raises(ValueError, match="sparsity"):
        kl.prune_at_init(mlp(), sparsity=1.0, method="random")
    with pytest.raises(ValueError, match="method"):
        kl.prune_at_init(mlp(), sparsity=0.5, method="obd")
    with pytest.raises(ValueError, match="data"):
        kl.prune_at_init(mlp(), sparsity=0.5, method="snip")
    with pytest.raises(ValueError, match="control"):
        kl.prune_at_init(mlp(), data(), sparsity=0.5, method="snip", control="shuffle")


@pytest.mark.backends
def test_find_ticket_continues_from_a_pruned_at_init_model():
    """The masks set at init are kept (never regrow) by a following IMP search."""
    x, y = data()
    ticket = kl.prune_at_init(mlp(), (x, y), sparsity=0.5, method="snip")
    start = masks_of(ticket)
    out = kl.find_ticket(
        ticket, (x, y), rounds=2, rate=0.5, steps=4, batch_size=32, seed=0, verbose=0
    )
    assert out is ticket
    for w, m0 in zip(out.prunable_weights(), start):
        assert not np.any(np.asarray(w.mask) & ~m0)  # nothing pruned at init came back
    assert kl.sparsity(out)["overall"] > 0.7


@pytest.mark.backends
def test_run_configuration_with_at_init(tmp_path):
    """``keras-lottery find --at-init snip --sparsity 0.95``: a new run id, old ones unchanged."""
    from keras_lottery.runs import directory as runs

    plain = runs.normalize_config({})
    config = runs.normalize_config({"at_init": "snip", "sparsity": "0.95"})
    assert config["sparsity"] == 0.95
    assert runs.config_hash(plain) == "44136fa355b3"  # pinned in test_options
    assert runs.non_default(config) == {"at_init": "snip", "sparsity": 0.95}
    for bad in ({"at_init": "snip"}, {"sparsity": 0.9}, {"at_init": "obd", "sparsity": 0.9}):
        with pytest.raises(ValueError):
            runs.normalize_config(bad)
    small = runs.normalize_config(
        {
            "at_init": "synflow",
            "sparsity": 0.9,
            "rounds": 1,
            "steps": 3,
            "train_size": 300,
            "test_size": 100,
        }
    )
    ticket = runs.run(small, tmp_path / "run", verbose=0)
    assert ticket.lottery.rounds[0].sparsity == pytest.approx(0.9, abs=2e-3)


@pytest.mark.backends
@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in matrix.SLOW else n for n in matrix.MODELS],
)
def test_every_model_of_the_matrix(name):
    """GraSP and SynFlow on every model kind: the sparsity asked, θ0 kept, masks hold in fit.

    (GraSP takes the loss's gradients and Hessian-vector products, a superset of what
    SNIP needs; SynFlow runs the network data-free on all-ones inputs.)
    """
    for method in ("grasp", "synflow"):
        model, x, y = matrix.build(name)
        before = [np.array(w) for w in model.weights]
        ticket = kl.prune_at_init(model, (x, y), sparsity=0.8, method=method, iterations=5)
        weights = ticket.prunable_weights()
        total = sum(int(np.prod(w.mask.shape)) for w in weights)
        assert sum(kept(ticket)) == round(total * 0.2), (name, method)
        if method == "synflow":  # a constant R (an activation left on) scores every weight 0
            dense = kl.make_prunable(matrix.build(name)[0])
            scores = at_init.synflow_scores(dense, dense.prunable_weights(), [(x, y)])
            dead = [n for n, v in scores.items() if not np.any(v)]
            assert not [n for n in dead if not _attention_query_or_key(n)], (name, dead)
        pruned = {id(w.kernel): np.asarray(w.mask) for w in weights}
        for var, value in zip(model.weights, before):
            now = np.array(var)
            mask = pruned.get(id(var))
            expected = value if mask is None else np.where(mask, value, 0)
            np.testing.assert_array_equal(now, expected, err_msg=f"{name} {method} {var.path}")
        ticket.fit(x, y, batch_size=8, epochs=1, verbose=0)
        for w in weights:
            assert not np.any(np.asarray(w.kernel)[~np.asarray(w.mask)]), (name, method)


def _attention_query_or_key(path: str) -> bool:
    """Attention's query and key: SynFlow's all-ones input makes every token alike, so the
    attention softmax is constant and they score 0 (the method's blind spot, not a bug)."""
    return path.split("/")[-2] in ("query", "key")


def lenet_300_100(separate_softmax: bool) -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(h, activation="relu") for h in (300, 100)]
    if separate_softmax:  # as keras.applications' MobileNetV3 ends
        layers += [keras.layers.Dense(10), keras.layers.Activation("softmax")]
    else:
        layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.mark.backends
def test_synflow_follows_the_output_back_past_activation_layers():
    """A softmax in its own layer is switched off as a fused one: the same masks, no collapse.

    With the softmax left on, R (the sum of the outputs) is constant, every score is 0
    and LeNet-300-100 at 99% kept [2662, 0, 0] weights per layer.
    """
    assert [type(la).__name__ for la in at_init.activation_tail(lenet_300_100(True))] == [
        "Activation"
    ]
    fused, separate = (
        kl.prune_at_init(lenet_300_100(s), sparsity=0.99, method="synflow", iterations=4)
        for s in (False, True)
    )
    assert min(kept(fused)) > 0, kept(fused)
    for a, b in zip(masks_of(fused), masks_of(separate)):
        np.testing.assert_array_equal(a, b)


def _two_layer(regularizer=None, loss_weights=None) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(8, activation="relu", kernel_regularizer=regularizer),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        loss_weights=loss_weights,
    )
    return model


@pytest.mark.backends
def test_one_output_loss_is_the_compiled_loss_with_regularization_and_loss_weights():
    """As with several outputs: ``loss_weights`` scale the loss, regularization adds to it."""
    x, y = data(32)
    plain, tuned = _two_layer(), _two_layer(keras.regularizers.L2(0.5), [0.25])
    g0 = gradients.loss_gradients(plain, x, y, [la.kernel for la in plain.layers])
    g1 = gradients.loss_gradients(tuned, x, y, [la.kernel for la in tuned.layers])
    w = np.asarray(tuned.layers[0].kernel)  # the same θ0 (same seed): d(0.5 |w|^2)/dw = w
    np.testing.assert_allclose(g1[0], 0.25 * g0[0] + w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g1[1], 0.25 * g0[1], rtol=1e-4, atol=1e-7)


@pytest.mark.backends
def test_a_weight_the_loss_does_not_reach_scores_zero():
    """One rule on every backend: no gradient (TF's None, PyTorch's unused) is a 0."""
    x, y = data(32)
    keras.utils.set_random_seed(0)
    inp = keras.Input((12,))
    outputs = {"a": keras.layers.Dense(3, name="a")(inp), "b": keras.layers.Dense(2, name="b")(inp)}
    model = keras.Model(inp, outputs)
    model.compile("sgd", loss={"a": keras.losses.SparseCategoricalCrossentropy(True), "b": None})
    kernels = [model.get_layer("a").kernel, model.get_layer("b").kernel]
    g = gradients.loss_gradients(model, x, {"a": y}, kernels)
    hg = gradients.loss_hessian_vector_product(model, x, {"a": y}, kernels, g)
    assert np.any(g[0]) and np.any(hg[0])
    assert g[1].shape == (12, 2) and not np.any(g[1]) and not np.any(hg[1])
    ticket = kl.prune_at_init(model, (x, {"a": y}), sparsity=0.5, method="grasp")
    assert sum(kept(ticket)) == round(0.5 * (36 + 24))


@pytest.mark.backends
def test_data_is_read_as_find_ticket_reads_it():
    """The backend's own tensors and tuples of inputs are (x, y), as for find_ticket."""
    x, y = data(64)
    arrays = kl.prune_at_init(mlp(), (x, y), sparsity=0.7, method="snip", seed=3)
    tensors = kl.prune_at_init(
        mlp(),
        (keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)),
        sparsity=0.7,
        method="snip",
        seed=3,
    )
    for a, b in zip(masks_of(arrays), masks_of(tensors)):
        np.testing.assert_array_equal(a, b)

    keras.utils.set_random_seed(0)
    left, right = keras.Input((7,)), keras.Input((5,))
    joined = keras.layers.Concatenate()([left, right])
    model = keras.Model([left, right], keras.layers.Dense(3)(keras.layers.Dense(8)(joined)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pair = (x[:, :7], keras.ops.convert_to_tensor(x[:, 7:]))  # a tuple of two inputs
    ticket = kl.prune_at_init(model, (pair, y), sparsity=0.5, method="grasp")
    assert sum(kept(ticket)) == round(0.5 * (12 * 8 + 8 * 3))

"""The model matrix: every kind of Keras 3 model gets a full lottery-ticket search.

For each model of ``tests/matrix.py``: coverage lists every weight matrix as
pruned; a 2-round search keeps per-weight counts exactly as asked, pruned
weights are exactly 0 after every step, survivors restart each round at θ0
bitwise; the ticket survives a ``.keras`` round trip; the same seed gives the
same masks; and the controls act per weight.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from matrix import MODELS, SLOW, build

import keras_lottery as kl
from keras_lottery.criteria.magnitude import keep_count

RATE = 0.5
OPTS = dict(rounds=2, rate=RATE, steps=3, batch_size=8, seed=0, verbose=0)
#: Cheap models that also run on the JAX backend (CI: KERAS_BACKEND=jax pytest -m backends).
ON_EVERY_BACKEND = {"transformer_block", "subclassed", "two_in_two_out", "lstm_gru", "hub_encoder"}


def _params(names):
    marks = {n: [pytest.mark.slow] if n in SLOW else [] for n in names}
    for n in ON_EVERY_BACKEND & set(names):
        marks[n].append(pytest.mark.backends)
    return [pytest.param(n, marks=marks[n], id=n) for n in names]


class Probe(keras.callbacks.Callback):
    """Checks the two invariants of training with masks, as it happens.

    * at the start of every round, each pruned weight equals θ0 ⊙ mask bitwise;
    * after every step, each pruned position is exactly 0.
    """

    def __init__(self, theta0: dict[str, np.ndarray]):
        super().__init__()
        self.theta0, self.rounds, self.steps_checked = theta0, 0, 0

    def _weights(self):
        return self.model.prunable_weights()

    def on_train_begin(self, logs=None):
        for pw in self._weights():
            mask = np.asarray(pw.mask)
            expected = np.where(mask, self.theta0[pw.name], 0)
            np.testing.assert_array_equal(np.asarray(pw.kernel), expected, err_msg=pw.name)
        self.rounds += 1

    def on_train_batch_end(self, batch, logs=None):
        for pw in self._weights():
            value, mask = np.asarray(pw.kernel), np.asarray(pw.mask)
            assert not np.any(value[~mask]), f"{pw.name} regrew at step {self.steps_checked}"
        self.steps_checked += 1


def _theta0(model) -> dict[str, np.ndarray]:
    return {row.path: np.array(row.variable) for row in kl.coverage(model).rows}


def _masks(ticket) -> dict[str, np.ndarray]:
    return {pw.name: np.asarray(pw.mask) for pw in ticket.prunable_weights()}


@pytest.mark.parametrize("name", _params(list(MODELS)))
def test_search_keeps_every_invariant(name, tmp_path):
    model, x, y = build(name)
    table = kl.coverage(model)
    assert not table.dense_matrices, str(table)  # every weight matrix is pruned
    assert table.pruned and all(r.is_matrix for r in table.pruned)
    theta0 = _theta0(model)
    probe = Probe(theta0)
    ticket = kl.find_ticket(model, (x, y), callbacks=[probe], **OPTS)
    assert probe.rounds == 3 and probe.steps_checked == 9

    # Per-weight sparsity exactly as asked: RATE per round, half of it for the output layer.
    outputs = [pw for pw in ticket.prunable_weights() if pw.is_output]
    assert outputs, "no output layer found"
    for pw in ticket.prunable_weights():
        rate = RATE / 2 if pw.is_output else RATE
        mask = np.asarray(pw.mask)
        assert int(mask.sum()) == keep_count(mask.size, rate, 2), pw.name
        assert not np.any(np.asarray(pw.kernel)[~mask])
    # The record counts every weight matrix, as sparsity() does.
    assert ticket.lottery.final.sparsity == pytest.approx(kl.sparsity(ticket)["overall"])

    # .keras round trip: masks, zeros and outputs survive.
    path = tmp_path / f"{name}.keras"
    ticket.save(path)
    loaded = keras.models.load_model(path)
    assert len(ticket.prunable_weights()) == len(loaded.prunable_weights())
    for a, b in zip(ticket.prunable_weights(), loaded.prunable_weights()):  # paths may differ
        np.testing.assert_array_equal(np.asarray(a.mask), np.asarray(b.mask))
        np.testing.assert_array_equal(np.asarray(a.kernel), np.asarray(b.kernel))
    batch = keras.tree.map_structure(lambda a: a[:4], x)
    keras.tree.map_structure(
        lambda p, q: np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-5),
        keras.tree.map_structure(np.asarray, ticket.predict(batch, verbose=0)),
        keras.tree.map_structure(np.asarray, loaded.predict(batch, verbose=0)),
    )
    # strip: the user's model itself, pruned weights at 0, no mask variables.
    plain = kl.strip(ticket)
    assert plain is model and not kl.prunable_weights(plain)


@pytest.mark.parametrize("name", _params(["transformer_block", "subclassed", "hub_encoder"]))
def test_same_seed_same_masks(name):
    first = kl.find_ticket(*_model_and_data(name), **OPTS)
    again = kl.find_ticket(*_model_and_data(name), **OPTS)
    other = kl.find_ticket(*_model_and_data(name), **{**OPTS, "seed": 1})
    a, b, c = _masks(first), _masks(again), _masks(other)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def _model_and_data(name):
    model, x, y = build(name)
    return model, (x, y)


class StartValues(keras.callbacks.Callback):
    """Pruned weights and masks at the start of each round."""

    def __init__(self):
        super().__init__()
        self.rounds = []

    def on_train_begin(self, logs=None):
        self.rounds.append(
            {
                pw.name: (np.array(pw.kernel), np.array(pw.mask))
                for pw in self.model.prunable_weights()
            }
        )


@pytest.mark.parametrize("strategy", ["reinit", "rearrange", "random_prune"])
@pytest.mark.parametrize("name", _params(["transformer_block", "subclassed", "two_in_two_out"]))
def test_controls_act_per_weight(name, strategy):
    model, data = _model_and_data(name)
    theta0 = _theta0(model)
    spy = StartValues()
    ticket = kl.find_ticket(
        model, data, callbacks=[spy], **{**OPTS, "rounds": 1, "strategy": strategy}
    )
    assert len(spy.rounds) == 2
    for pw in ticket.prunable_weights():
        value, mask = spy.rounds[1][pw.name]
        rate = RATE / 2 if pw.is_output else RATE
        assert int(mask.sum()) == keep_count(mask.size, rate, 1), pw.name
        assert not np.any(value[~mask])
        if strategy == "reinit":  # survivors get new values, drawn per weight
            assert not np.array_equal(value[mask], theta0[pw.name][mask]), pw.name
        else:  # survivors keep their θ0 values at the new positions
            np.testing.assert_array_equal(value[mask], theta0[pw.name][mask])


def _no_weight_matrix():
    model = keras.Sequential([keras.Input((4,)), keras.layers.LayerNormalization()])
    model.compile("adam", "mse")
    return model, (np.zeros((8, 4), "float32"), np.zeros((8, 4), "float32"))


BAD_INPUT = {
    "nothing prunable": (_no_weight_matrix, {}, kl.NotPrunableError, "nothing to prune"),
    "include matches nothing": (
        lambda: _model_and_data("transformer_block"),
        {"include": "*conv*"},
        ValueError,
        "match no variable",
    ),
    "layer_rates unknown path": (
        lambda: _model_and_data("transformer_block"),
        {"layer_rates": {"decoder/*": 0.3}},
        ValueError,
        "match no pruned weight",
    ),
    "x dict with a wrong key": (
        lambda: (
            build("two_in_two_out")[0],
            ({"image": np.zeros((8, 8, 8, 1)), "metadata": np.zeros((8, 4))}, np.zeros(8)),
        ),
        {},
        ValueError,
        r"missing \['meta'\].*unknown \['metadata'\]",
    ),
    "two inputs, one array": (
        lambda: (build("shared_layer")[0], (np.zeros((8, 6)), np.zeros(8))),
        {},
        ValueError,
        r"takes 2 inputs \['a', 'b'\]",
    ),
    "y list for dict outputs": (
        lambda: (
            build("two_in_two_out")[0],
            (build("two_in_two_out")[1], [np.zeros(48), np.zeros((48, 1))]),
        ),
        {},
        ValueError,
        "returns a dict of outputs",
    ),
    "x and y lengths differ": (
        lambda: (build("shared_layer")[0], ([np.zeros((8, 6)), np.zeros((7, 6))], np.zeros(8))),
        {},
        ValueError,
        r"x\[1\] has 7",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_before_training(case, tmp_path):
    make, options, error, message = BAD_INPUT[case]
    model, data = make()
    run_dir = tmp_path / "run"
    before = [np.array(w) for w in model.weights]
    with pytest.raises(error, match=message):
        kl.find_ticket(model, data, rounds=1, steps=1, run_dir=run_dir, verbose=0, **options)
    assert not run_dir.exists()  # nothing written ...
    for a, b in zip(before, model.weights):  # ... and nothing trained
        np.testing.assert_array_equal(a, np.asarray(b))


class _Batches(keras.utils.PyDataset):
    """A PyDataset of the two-input two-output model's dict batches."""

    def __init__(self, x, y, batch_size=8):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return len(self.y["label"]) // self.batch_size

    def __getitem__(self, i):
        part = slice(i * self.batch_size, (i + 1) * self.batch_size)
        pick = lambda tree: {k: v[part] for k, v in tree.items()}  # noqa: E731
        return pick(self.x), pick(self.y)


@pytest.mark.backends
def test_py_dataset_of_dict_batches():
    model, x, y = build("two_in_two_out")
    ticket = kl.find_ticket(model, _Batches(x, y), rounds=1, rate=RATE, epochs=1, verbose=0)
    assert ticket.lottery.rounds[1].iterations == len(y["label"]) // 8


@pytest.mark.backends
def test_tf_data_of_dict_batches():
    tf = pytest.importorskip("tensorflow")
    model, x, y = build("two_in_two_out")
    stream = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    ticket = kl.find_ticket(model, stream, rounds=1, rate=RATE, steps=4, verbose=0)
    assert ticket.lottery.rounds[1].iterations == 4
    bad = tf.data.Dataset.from_tensor_slices(x).batch(8)  # inputs only, no labels
    with pytest.raises(ValueError, match=r"must give \(x, y\)"):
        kl.find_ticket(build("two_in_two_out")[0], bad, rounds=1, steps=2, verbose=0)

"""find_ticket: the paper's invariants on real MNIST, the controls, seeds, bad input."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import lenet

import keras_lottery as kl
from keras_lottery.criteria.magnitude import keep_count, magnitude_layerwise, top_k
from keras_lottery.records.checkpoint import CorruptCheckpointError

FAST = dict(epochs=1, batch_size=60, validation_split=0.1, verbose=0)


class RoundStarts(keras.callbacks.Callback):
    """Capture kernels and masks when each round starts and ends training."""

    def __init__(self):
        super().__init__()
        self.starts, self.ends = [], []

    def _grab(self):
        return {
            pw.name: (np.array(pw.kernel), np.array(pw.mask))
            for pw in kl.prunable_weights(self.model)
        }

    def on_train_begin(self, logs=None):
        self.starts.append(self._grab())

    def on_train_end(self, logs=None):
        self.ends.append(self._grab())


@pytest.fixture(scope="module")
def small(mnist):
    return mnist.subset(1200, 500)


def _masks(ticket, r):
    return list(ticket.lottery.rounds[r].masks.values())


@pytest.mark.backends
def test_each_round_prunes_exactly_and_rewinds_to_theta0(small):
    model = lenet()  # LeNet-300-100
    theta0 = [np.array(v) for v in model.weights if v.path.endswith("kernel")]
    spy = RoundStarts()
    ticket = kl.find_ticket(model, small, rounds=3, seed=0, callbacks=[spy], **FAST)
    record = ticket.lottery
    assert len(record.rounds) == 4 and len(spy.starts) == 4
    names = list(spy.starts[0])
    for r in range(1, 4):
        for i, name in enumerate(names):
            kernel, mask = spy.starts[r][name]
            rate = 0.1 if i == len(names) - 1 else 0.2  # output layer at half rate
            assert abs(mask.sum() - keep_count(mask.size, rate, r)) <= 1
            assert np.all(kernel[mask == 0] == 0)
            # survivors start the round exactly at θ0
            np.testing.assert_array_equal(kernel, theta0[i] * mask)
            assert record.rounds[r].layer_sparsity[name] == pytest.approx(1 - mask.mean())
            # masks never regrow: each round's mask is inside the previous one
            assert np.all(mask <= spy.starts[r - 1][name][1])
            # ... and it keeps the largest trained magnitudes among the previous survivors
            trained, before = spy.ends[r - 1][name]
            keep = {name: keep_count(mask.size, rate, r)}
            expected = magnitude_layerwise({name: trained}, {name: before}, keep)[name]
            np.testing.assert_array_equal(mask, expected)
            # ... and pruned weights stay 0 through training
            assert np.all(spy.ends[r][name][0][mask == 0] == 0)
    assert ticket.lottery is record
    assert record.final.sparsity == pytest.approx(kl.sparsity(ticket)["overall"])
    assert record.rounds[0].early_stop_iteration is not None
    assert 0.5 < record.rounds[0].val_accuracy <= 1.0


@pytest.mark.backends
def test_late_rewinding_resets_to_theta_k(small):
    model = lenet(hidden=(64,))
    theta0 = [np.array(v) for v in model.weights if v.path.endswith("kernel")]
    spy = RoundStarts()
    ticket = kl.find_ticket(model, small, rounds=1, rewind_to=5, seed=0, callbacks=[spy], **FAST)
    rewind = ticket.lottery.rewind_weights
    for (name, (kernel, mask)), t0 in zip(spy.starts[1].items(), theta0):
        np.testing.assert_array_equal(kernel, rewind[name] * mask)
        assert not np.array_equal(rewind[name], t0)  # θk, not θ0
    with pytest.raises(ValueError, match="beyond the training length"):
        kl.find_ticket(lenet(hidden=(8,)), small, rounds=1, rewind_to=10_000, **FAST)


@pytest.mark.backends
def test_controls_change_what_they_should(small):
    runs = {}
    for strategy in ("rewind", "reinit", "rearrange", "random_prune", "continue", "invert"):
        spy = RoundStarts()
        ticket = kl.find_ticket(
            lenet(hidden=(64,)), small, rounds=1, strategy=strategy, seed=3, callbacks=[spy], **FAST
        )
        runs[strategy] = (ticket, spy)
    ref_masks = _masks(runs["rewind"][0], 1)
    theta0 = [k for k, _ in runs["rewind"][1].starts[0].values()]
    reinit_start = list(runs["reinit"][1].starts[1].values())
    for (kernel, mask), ref, t0 in zip(reinit_start, ref_masks, theta0):
        np.testing.assert_array_equal(mask, ref)  # same masks ...
        assert not np.allclose(kernel[mask == 1], t0[mask == 1])  # ... fresh values
        assert np.all(kernel[mask == 0] == 0)
    for mask, ref in zip(_masks(runs["rearrange"][0], 1), ref_masks):
        assert mask.sum() == ref.sum() and not np.array_equal(mask, ref)
    for mask, ref in zip(_masks(runs["random_prune"][0], 1), ref_masks):
        assert mask.sum() == ref.sum() and not np.array_equal(mask, ref)
    cont_spy = runs["continue"][1]
    for (end_k, _), (start_k, mask) in zip(cont_spy.ends[0].values(), cont_spy.starts[1].values()):
        np.testing.assert_array_equal(start_k, end_k * mask)  # trained weights kept
    inv_spy = runs["invert"][1]  # the smallest trained magnitudes survive, at θ0
    for (trained, before), (start_k, mask), ref, t0 in zip(
        inv_spy.ends[0].values(), inv_spy.starts[1].values(), ref_masks, theta0
    ):
        np.testing.assert_array_equal(mask.sum(), ref.sum())
        expected = top_k(-np.abs(trained), before, int(ref.sum()))
        np.testing.assert_array_equal(mask, expected)
        dropped = (before == 1) & (mask == 0)
        assert np.abs(trained[mask == 1]).max() <= np.abs(trained[dropped]).min()
        np.testing.assert_array_equal(start_k, t0 * mask)


class WritesIntoPrunedWeights(keras.callbacks.Callback):
    """At the end of each round's training, put 0.5 where the mask prunes (an EMA-like update)."""

    def __init__(self):
        super().__init__()
        self.written, self.survivors = [], []

    def on_train_end(self, logs=None):
        count, kept = 0, {}
        for pw in kl.prunable_weights(self.model):
            kernel, mask = np.array(pw.kernel), np.array(pw.mask).astype(bool)
            pw.kernel.assign(np.where(mask, kernel, np.float32(0.5)))
            count += int((~mask).sum())
            kept[pw.name] = kernel[mask]
        self.written.append(count)
        self.survivors.append(kept)


@pytest.mark.backends
def test_pruned_weights_moved_by_training_are_counted_warned_and_zeroed(small):
    spy = WritesIntoPrunedWeights()
    with pytest.warns(UserWarning, match="were not 0 after training") as caught:
        ticket = kl.find_ticket(
            lenet(hidden=(64,)), small, rounds=2, seed=0, callbacks=[spy], **FAST
        )
    said = [str(w.message) for w in caught if "were not 0 after training" in str(w.message)]
    # Round 0 prunes nothing, so nothing to move; rounds 1 and 2 name exactly what was written.
    assert spy.written[0] == 0 and min(spy.written[1:]) > 0
    assert len(said) == 2
    for message, r in zip(said, (1, 2)):
        assert message.startswith(f"Round {r}: {spy.written[r]} pruned weights were not 0")
    for pw in kl.prunable_weights(ticket):
        kernel, mask = np.array(pw.kernel), np.array(pw.mask).astype(bool)
        assert np.all(kernel[~mask] == 0)  # set back to 0
        np.testing.assert_array_equal(kernel[mask], spy.survivors[-1][pw.name])  # untouched


def test_reinit_draws_new_values_even_with_seeded_initializers(small):
    keras.utils.set_random_seed(0)
    init = [keras.initializers.GlorotNormal(seed=i) for i in range(2)]
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, "relu", kernel_initializer=init[0]),
            keras.layers.Dense(10, kernel_initializer=init[1]),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    theta0 = [np.array(v) for v in model.weights if v.path.endswith("kernel")]
    spy = RoundStarts()
    kl.find_ticket(model, small, rounds=1, strategy="reinit", seed=0, callbacks=[spy], **FAST)
    for t0, (kernel, mask) in zip(theta0, spy.starts[1].values()):
        assert not np.allclose(kernel[mask == 1], t0[mask == 1])


@pytest.mark.backends
def test_same_seed_same_masks_different_seed_different(small):
    def masks(seed):
        ticket = kl.find_ticket(lenet(hidden=(64,)), small, rounds=2, seed=seed, **FAST)
        return [m for r in ticket.lottery.rounds for m in r.masks.values()]

    a, b, c = masks(1), masks(1), masks(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_one_shot_global_and_target_sparsity(small):
    one = kl.find_ticket(lenet(hidden=(64,)), small, rounds=3, one_shot=True, seed=0, **FAST)
    assert len(one.lottery.rounds) == 2
    first = _masks(one, 1)[0]
    assert abs(first.sum() - keep_count(first.size, 0.2, 3)) <= 1
    glob = kl.find_ticket(
        lenet(hidden=(64,)), small, rounds=1, scope="global", rate=0.5, seed=0, **FAST
    )
    total = sum(m.size for m in _masks(glob, 1))
    assert sum(m.sum() for m in _masks(glob, 1)) == keep_count(total, 0.5, 1)
    tgt = kl.find_ticket(
        lenet(hidden=(64,)), small, rounds=2, target_sparsity=0.9, output_rate=0.3, seed=0, **FAST
    )
    assert 1 - _masks(tgt, 2)[0].mean() == pytest.approx(0.9, abs=1e-3)


def test_unit_pruning_on_xor():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], "float32")
    y = np.array([0, 1, 1, 0], "float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(10, "relu"), keras.layers.Dense(1, "sigmoid")]
    )
    model.compile(keras.optimizers.Adam(0.05), "binary_crossentropy", metrics=["accuracy"])
    ticket = kl.find_ticket(
        model,
        (x, y),
        rounds=2,
        target_sparsity=0.8,
        granularity="unit",
        unit_criterion="product",
        steps=50,
        batch_size=4,
        validation_data=(x, y),
        verbose=0,
        seed=0,
    )
    hidden, out = _masks(ticket, 2)
    alive = np.flatnonzero(hidden.sum(axis=0))
    assert len(alive) == 2
    np.testing.assert_array_equal(np.flatnonzero(out[:, 0]), alive)
    assert ticket.lottery.rounds[2].iterations == 50


def test_accepts_tf_data_and_steps(small):
    tf = pytest.importorskip("tensorflow")
    ds = tf.data.Dataset.from_tensor_slices((small.x_train, small.y_train)).batch(50)
    ticket = kl.find_ticket(
        lenet(hidden=(32,)),
        ds,
        rounds=1,
        steps=30,
        verbose=0,
        seed=0,
        validation_data=(small.x_test, small.y_test),
        eval_every=10,
    )
    assert [r.iterations for r in ticket.lottery.rounds] == [30, 30]
    assert [p["iteration"] for p in ticket.lottery.rounds[1].curve] == [10, 20, 30]


def test_arrays_become_one_stream_for_the_whole_search(small, monkeypatch):
    """The arrays are copied into TensorFlow once per search, not once per round.

    (A stream built per round kept one copy of the training set alive per round
    until Python's cyclic GC ran: +190 MB per round on full MNIST.)
    """
    from keras_lottery.data import datasets as data

    built = []
    real = data.shuffled_batches

    def counting(x, y, batch_size, seed):
        built.append((len(x), batch_size, seed))
        return real(x, y, batch_size, seed)

    monkeypatch.setattr(data, "shuffled_batches", counting)
    ticket = kl.find_ticket(lenet(hidden=(32,)), small, rounds=3, steps=20, seed=5, verbose=0)
    assert built == [(len(small.x_train), 60, 5)]
    assert [r.iterations for r in ticket.lottery.rounds] == [20, 20, 20, 20]


@pytest.mark.backends
def test_batch_order_is_numpys_and_the_same_on_every_backend():
    """A seed's batches come from NumPy alone: these orders hold on TensorFlow, JAX and PyTorch.

    The numbers are pinned (PCG64 and SeedSequence streams are stable across NumPy
    versions); CI checks them in a TensorFlow, a JAX-only and a PyTorch-only
    environment, so one seed gives one order of batches everywhere.
    """
    from keras_lottery.data.datasets import numpy_batches, pass_order

    assert pass_order(10, seed=0, epoch=0).tolist() == [3, 2, 1, 8, 6, 0, 7, 4, 5, 9]
    assert pass_order(10, seed=0, epoch=1).tolist() == [7, 4, 5, 1, 9, 8, 6, 2, 0, 3]
    assert pass_order(10, seed=-1, epoch=0).tolist() == [2, 4, 7, 5, 9, 6, 0, 1, 3, 8]
    x, y = np.arange(25, dtype="float32")[:, None], np.arange(25)
    batches = [b for _, b in zip(range(7), numpy_batches(x, y, 10, seed=4))]
    assert [len(b[1]) for b in batches] == [10, 10, 5, 10, 10, 5, 10]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches[:3]]), pass_order(25, 4, 0))
    np.testing.assert_array_equal(
        np.concatenate([b[1] for b in batches[3:6]]), pass_order(25, 4, 1)
    )
    np.testing.assert_array_equal(batches[6][0][:, 0], pass_order(25, 4, 2)[:10])


@pytest.mark.backends
def test_tf_data_stream_yields_the_numpy_batches():
    """On TensorFlow the search reads a tf.data stream: the same batches, in the same order."""
    pytest.importorskip("tensorflow")
    from keras_lottery.data.datasets import numpy_batches, shuffled_batches

    rng = np.random.default_rng(0)
    x = {"a": rng.random((25, 3), dtype="float32"), "b": rng.random((25, 2), dtype="float32")}
    y = np.arange(25)
    n_batches = 2 * 3 + 1  # two passes of 10 + 10 + 5 examples, then one more batch
    ours = [b for _, b in zip(range(n_batches), numpy_batches(x, y, 10, seed=4))]
    theirs = list(shuffled_batches(x, y, 10, seed=4).take(n_batches).as_numpy_iterator())
    assert [len(b[1]) for b in ours] == [10, 10, 5, 10, 10, 5, 10]
    for (xo, yo), (xt, yt) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(yo, yt)
        for key in x:
            np.testing.assert_array_equal(xo[key], xt[key])
    first_pass = np.concatenate([b[1] for b in ours[:3]])
    assert sorted(first_pass) == list(range(25)) and list(first_pass) != list(range(25))


def test_tfds_name_loads_without_network():
    tfds = pytest.importorskip("tensorflow_datasets")

    with tfds.testing.mock_data(num_examples=120):
        ticket = kl.find_ticket(lenet(hidden=(16,)), "mnist", rounds=1, **FAST)
    assert ticket.lottery.final.test_accuracy is not None


def test_record_saves_and_loads(small, tmp_path):
    ticket = kl.find_ticket(lenet(hidden=(32,)), small, rounds=1, seed=0, **FAST)
    ticket.lottery.save(tmp_path)
    back = kl.LotteryRecord.load(tmp_path)
    assert back.to_dict() == json.loads(ticket.lottery.to_json())
    for a, b in zip(back.final.masks.values(), ticket.lottery.final.masks.values()):
        np.testing.assert_array_equal(a, b)
    assert "remain%" in ticket.lottery.summary()


@pytest.mark.backends
def test_resume_after_interruption_matches_uninterrupted(small, tmp_path):
    class Interrupt(keras.callbacks.Callback):
        calls = 0

        def on_train_begin(self, logs=None):
            Interrupt.calls += 1
            if Interrupt.calls == 3:  # die while training round 2
                raise KeyboardInterrupt

    opts = dict(rounds=3, seed=5, **FAST)
    full = kl.find_ticket(lenet(hidden=(32,)), small, **opts)
    with pytest.raises(KeyboardInterrupt):
        kl.find_ticket(
            lenet(hidden=(32,)), small, run_dir=tmp_path, callbacks=[Interrupt()], **opts
        )
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert manifest["completed_round"] == 1
    resumed = kl.find_ticket(lenet(hidden=(32,)), small, run_dir=tmp_path, **opts)
    for r in range(4):
        for a, b in zip(_masks(full, r), _masks(resumed, r)):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(full.get_weights()[0], resumed.get_weights()[0])
    (sorted(tmp_path.glob("round_*"))[-1] / "masks.npz").write_bytes(b"garbage")
    with pytest.raises(CorruptCheckpointError, match="corrupt"):
        kl.find_ticket(lenet(hidden=(32,)), small, run_dir=tmp_path, **opts)
    with pytest.raises(ValueError, match="different configuration"):
        kl.find_ticket(lenet(hidden=(32,)), small, run_dir=tmp_path, **{**opts, "rate": 0.3})


def _bad(**kw):
    return kw


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (_bad(rounds=0), "rounds must be"),
        (_bad(rate=1.0), "rate must be in"),
        (_bad(rate=0.0), "rate must be in"),
        (_bad(target_sparsity=1.0), "target_sparsity must be in"),
        (_bad(layer_rates={"nope": 0.5}), "match no pruned weight"),
        (_bad(strategy="magic"), "Unknown strategy"),
        (_bad(scope="local"), "Unknown scope"),
        (_bad(rewind_to=-3), "rewind_to must be"),
        (_bad(strategy="invert", granularity="unit"), "strategy='invert' keeps the lowest"),
    ],
)
def test_bad_options_are_named(small, kwargs, match):
    with pytest.raises(ValueError, match=match):
        kl.find_ticket(lenet(hidden=(8,)), small, **{**FAST, **kwargs})


def test_bad_models_and_data_are_named(small, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uncompiled = keras.Sequential(
        [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    with pytest.raises(ValueError, match="not compiled"):
        kl.find_ticket(uncompiled, small, **FAST)
    x, y = small.x_train[:100], small.y_train[:100]
    with pytest.raises(ValueError, match="expects inputs of shape"):
        kl.find_ticket(lenet(hidden=(8,)), (x[:, :20, :20], y), **FAST)
    with pytest.raises(ValueError, match="sparse categorical labels must be in"):
        kl.find_ticket(lenet(hidden=(8,)), (x, y + 10), **FAST)
    nan_x = x.copy()
    nan_x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        kl.find_ticket(lenet(hidden=(8,)), (nan_x, y), **FAST)
    with pytest.raises(ValueError, match="do not fit the model's loss"):
        kl.find_ticket(lenet(hidden=(8,)), (x, np.ones((100, 3, 3), "int64")), **FAST)
    assert list(tmp_path.iterdir()) == []  # nothing written on bad input


@pytest.mark.slow
def test_ticket_beats_reinit_at_high_sparsity_on_real_mnist(mnist):
    data = mnist.subset(5000, 2000)
    result = {}
    for strategy in ("rewind", "reinit"):
        ticket = kl.find_ticket(
            lenet(),
            data,
            rounds=4,
            target_sparsity=0.97,
            strategy=strategy,
            seed=0,
            epochs=2,
            validation_split=0.1,
            verbose=0,
        )
        result[strategy] = ticket.lottery
    dense = result["rewind"].rounds[0]
    assert dense.test_accuracy > 0.85  # a sensible LeNet on 4.5k real digits
    ticket, reinit = result["rewind"].final, result["reinit"].final
    assert ticket.percent_remaining < 4.0
    assert ticket.test_accuracy > reinit.test_accuracy + 0.03

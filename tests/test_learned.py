"""Cheap tickets: masks learned by gates (method="learned"), data-efficient IMP (prune_subset)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from matrix import MODELS, SLOW, build

import keras_lottery as kl
from keras_lottery.criteria import gates
from keras_lottery.criteria.magnitude import keep_count
from keras_lottery.search import subset

STEPS = 20
FAST = dict(steps=STEPS, batch_size=16, verbose=0)


def _data(n=96, d=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x[:, :3].sum(axis=1) > 0).astype("int32") + (x[:, 3] > 1).astype("int32")
    return x, y


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(32, activation="relu", name="a"),
            keras.layers.Dense(16, activation="relu", name="b"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    loss = "sparse_categorical_crossentropy"
    model.compile(keras.optimizers.Adam(1e-2), loss, metrics=["accuracy"])
    return model


def _local(by_path: dict) -> dict:
    """Keyed by the path inside the model (model names differ between instances)."""
    return {n.split("/", 1)[1]: v for n, v in by_path.items()}


def _masks(record_round) -> dict[str, np.ndarray]:
    return _local({n: np.asarray(m) for n, m in record_round.masks.items()})


class TicketProbe(keras.callbacks.Callback):
    """Each training of the ticket (a MaskedModel) starts at θ0 ⊙ mask; no weight regrows."""

    def __init__(self, theta0):
        super().__init__()
        self.theta0, self.ticket_trainings, self.steps = theta0, 0, 0

    def on_train_begin(self, logs=None):
        if isinstance(self.model, kl.MaskedModel):
            for pw in self.model.prunable_weights():
                expected = np.where(np.asarray(pw.mask), self.theta0[pw.name], 0)
                np.testing.assert_array_equal(np.asarray(pw.kernel), expected, err_msg=pw.name)
            self.ticket_trainings += 1

    def on_train_batch_end(self, batch, logs=None):
        if isinstance(self.model, kl.MaskedModel):
            for pw in self.model.prunable_weights():
                value, mask = np.asarray(pw.kernel), np.asarray(pw.mask)
                assert not np.any(value[~mask]), f"{pw.name} regrew"
            self.steps += 1


def _theta0(model):
    return {row.path: np.array(row.variable) for row in kl.coverage(model).rows}


# -- the gate math ------------------------------------------------------------------


@pytest.mark.backends
def test_threshold_keeps_the_asked_share_and_the_schedule_ends_on_the_target():
    rng = np.random.default_rng(0)
    scores = [rng.normal(size=(40, 30)).astype("float32"), rng.normal(size=(7,)).astype("float32")]
    total = sum(s.size for s in scores)
    for keep in (0.9, 0.3, 0.036):
        tau = float(keras.ops.convert_to_numpy(gates.threshold(scores, keep)))
        above = sum(int((s > tau).sum()) for s in scores)
        assert abs(above - keep * total) <= 1, (keep, above)
    share0, beta0 = gates.schedule(0.0, 0.9)
    share_half, _ = gates.schedule(gates.RAMP, 0.9)
    share1, beta1 = gates.schedule(1.0, 0.9)
    assert float(share0) == 0.0 and float(beta0) == pytest.approx(1.0)
    assert float(share_half) == pytest.approx(0.9) and float(share1) == pytest.approx(0.9)
    assert float(beta1) == pytest.approx(gates.BETA_FINAL)


# -- learned masks ----------------------------------------------------------------------

#: One learned search shared by the tests below (what they vary is said in each).
OPTS = dict(rounds=3, rate=0.5, seed=0, method="learned", **FAST)


class StartWeights(keras.callbacks.Callback):
    """The ticket's kernels as its training starts."""

    def on_train_begin(self, logs=None):
        if isinstance(self.model, kl.MaskedModel):
            self.kernels = {pw.name: np.array(pw.kernel) for pw in self.model.prunable_weights()}


@pytest.fixture(scope="module")
def learned():
    """The shared search: its ticket, θ0 and the probe that watched its trainings."""
    model = _model()
    theta0 = _theta0(model)
    probe = TicketProbe(theta0)
    ticket = kl.find_ticket(model, _data(), callbacks=[probe], **OPTS)
    return ticket, theta0, probe


@pytest.mark.backends
def test_learned_masks_keep_imps_counts_and_the_ticket_trains_from_theta0(learned):
    ticket, theta0, probe = learned
    record = ticket.lottery
    assert len(record.rounds) == 2  # the mask phase, the ticket
    assert [r.iterations for r in record.rounds] == [STEPS, STEPS]
    for name, m in _masks(record.final).items():  # IMP's counts after 3 prunings
        rate = 0.25 if name.startswith("out/") else 0.5  # the output layer at half the rate
        assert int(m.sum()) == keep_count(m.size, rate, 3), name
    assert probe.ticket_trainings == 1 and probe.steps == STEPS  # the final training only
    for pw in ticket.prunable_weights():  # masks never regrow: stored zeros where pruned
        assert not np.any(np.asarray(pw.kernel)[~np.asarray(pw.mask)])
    for path, values in theta0.items():  # the rewind point is θ0, exactly
        np.testing.assert_array_equal(record.rewind_weights[path], values)
    assert record.cost.method == "learned" and record.cost.x_imp == pytest.approx(2 / 4)


@pytest.mark.backends
def test_global_scope_keeps_imps_total():
    record = kl.find_ticket(_model(), _data(), **{**OPTS, "scope": "global"}).lottery
    masks = _masks(record.final)
    total = sum(m.size for m in masks.values())
    assert sum(int(m.sum()) for m in masks.values()) == keep_count(total, 0.5, 3)
    # inverted under one threshold: the same total, the lowest scores (no weight in common)
    opts = {**OPTS, "scope": "global", "strategy": "invert"}
    inverted = _masks(kl.find_ticket(_model(), _data(), **opts).lottery.final)
    assert sum(int(m.sum()) for m in inverted.values()) == keep_count(total, 0.5, 3)
    assert not any(np.any(inverted[n] & masks[n]) for n in masks)


@pytest.mark.backends
def test_same_seed_same_learned_masks_and_a_short_phase(learned):
    again = kl.find_ticket(_model(), _data(), **OPTS).lottery
    for name, m in _masks(learned[0].lottery.final).items():
        np.testing.assert_array_equal(m, _masks(again.final)[name])
    half = kl.find_ticket(_model(), _data(), **{**OPTS, "mask_phase": 0.5}).lottery
    assert [r.iterations for r in half.rounds] == [STEPS // 2, STEPS]
    longer = kl.find_ticket(_model(), _data(), **{**OPTS, "mask_phase": 2.5}).lottery
    assert [r.iterations for r in longer.rounds] == [STEPS * 5 // 2, STEPS]


@pytest.mark.backends
def test_learned_masks_differ_from_magnitude_and_the_controls_apply(learned):
    masks = _masks(learned[0].lottery.final)
    imp_opts = {k: v for k, v in OPTS.items() if k != "method"}
    one_shot = _masks(kl.find_ticket(_model(), _data(), one_shot=True, **imp_opts).lottery.final)
    assert any(not np.array_equal(masks[n], one_shot[n]) for n in masks)
    for strategy in ("rearrange", "random_prune"):
        control = kl.find_ticket(_model(), _data(), strategy=strategy, **OPTS)
        moved = _masks(control.lottery.final)
        for n, m in masks.items():  # same count per layer, other positions
            assert int(moved[n].sum()) == int(m.sum())
        assert any(not np.array_equal(moved[n], masks[n]) for n in masks), strategy
    model = _model()
    theta0 = _local(_theta0(model))
    starts = StartWeights()
    reinit = kl.find_ticket(model, _data(), strategy="reinit", callbacks=[starts], **OPTS)
    for name, m in _masks(reinit.lottery.final).items():  # the learned masks ...
        np.testing.assert_array_equal(m, masks[name])
        start = _local(starts.kernels)[name]  # ... on fresh weights, pruned ones at 0
        assert not np.any(start[~m]) and not np.allclose(start[m], theta0[name][m])


@pytest.mark.backends
def test_inverted_learned_masks_keep_the_lowest_scores(learned):
    """Frankle et al.'s inversion check: same counts, the lowest scores (here: other weights)."""
    masks = _masks(learned[0].lottery.final)
    inverted = kl.find_ticket(_model(), _data(), strategy="invert", **OPTS).lottery
    for name, m in _masks(inverted.final).items():  # 12.5% kept: top and bottom are disjoint
        assert int(m.sum()) == int(masks[name].sum()), name
        assert not np.any(m & masks[name]), name


@pytest.mark.backends
def test_learned_search_resumes_between_its_phases(learned, tmp_path):
    class Interrupt(keras.callbacks.Callback):
        calls = 0

        def on_train_begin(self, logs=None):
            Interrupt.calls += 1
            if Interrupt.calls == 2:  # die as the ticket starts training
                raise KeyboardInterrupt

    full = learned[0]
    with pytest.raises(KeyboardInterrupt):
        kl.find_ticket(_model(), _data(), run_dir=tmp_path, callbacks=[Interrupt()], **OPTS)
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert manifest["completed_round"] == 0  # the mask phase is committed
    resumed = kl.find_ticket(_model(), _data(), run_dir=tmp_path, **OPTS)
    assert [r.iterations for r in resumed.lottery.rounds] == [STEPS, STEPS]
    for n, m in _masks(full.lottery.final).items():
        np.testing.assert_array_equal(m, _masks(resumed.lottery.final)[n])
    for a, b in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def _matrix_params():
    every_backend = {"transformer_block", "subclassed", "two_in_two_out", "lstm_gru"}
    out = []
    for name in MODELS:
        marks = [pytest.mark.slow] if name in SLOW else []
        if name in every_backend:
            marks.append(pytest.mark.backends)
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _matrix_params())
def test_learned_masks_on_the_model_matrix(name):
    model, x, y = build(name)
    theta0 = _theta0(model)
    probe = TicketProbe(theta0)
    opts = dict(rounds=2, rate=0.5, steps=3, batch_size=8, seed=0, verbose=0)
    ticket = kl.find_ticket(model, (x, y), method="learned", callbacks=[probe], **opts)
    assert probe.ticket_trainings == 1
    kept = ticket.kept_counts()
    for pw, k in zip(ticket.prunable_weights(), kept):
        size = int(np.prod(pw.kernel.shape))
        rate = 0.25 if pw.is_output else 0.5
        assert k == keep_count(size, rate, 2), pw.name


def test_learned_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="early_bird"):
        kl.find_ticket(_model(), _data(), method="learned", early_bird=True, **FAST)
    for phase in (0.0, 5.0):
        with pytest.raises(ValueError, match="mask_phase must be in"):
            kl.find_ticket(_model(), _data(), method="learned", mask_phase=phase, **FAST)
    with pytest.raises(ValueError, match="granularity='weight'"):
        kl.find_ticket(_model(), _data(), method="learned", granularity="unit", **FAST)
    with pytest.raises(ValueError, match="method must be one of"):
        kl.find_ticket(_model(), _data(), method="gem", **FAST)


# -- data-efficient IMP ----------------------------------------------------------------


@pytest.mark.backends
def test_subset_rounds_train_on_the_fraction_and_the_ticket_on_all(tmp_path):
    x, y = _data()
    opts = dict(rounds=3, rate=0.4, seed=0, prune_subset=0.25, **FAST)
    full = kl.find_ticket(_model(), (x, y), **opts).lottery
    assert [r.iterations for r in full.rounds] == [STEPS, STEPS // 4, STEPS // 4, STEPS]
    chosen = [r.next_subset for r in full.rounds]
    assert [len(c) for c in chosen[:2]] == [24, 24] and chosen[2:] == [None, None]
    assert all(len(set(c)) == len(c) and 0 <= min(c) and max(c) < len(x) for c in chosen[:2])

    class Interrupt(keras.callbacks.Callback):
        calls = 0

        def on_train_begin(self, logs=None):
            Interrupt.calls += 1
            if Interrupt.calls == 3:  # die in round 2, the second round on a subset
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        kl.find_ticket(_model(), (x, y), run_dir=tmp_path, callbacks=[Interrupt()], **opts)
    resumed = kl.find_ticket(_model(), (x, y), run_dir=tmp_path, **opts).lottery
    assert [r.next_subset for r in resumed.rounds] == chosen
    for a, b in zip(full.rounds, resumed.rounds):
        for n, m in _masks(a).items():
            np.testing.assert_array_equal(m, _masks(b)[n])


@pytest.mark.backends
def test_critical_rule_picks_the_highest_losses_of_the_pruned_network():
    x, y = _data()
    ticket = kl.make_prunable(_model())
    ticket.compile_from_config(_model().get_compile_config())
    ticket.fit(x, y, epochs=2, batch_size=16, verbose=0)
    before = [np.array(v) for v in ticket.weights]
    rng = np.random.default_rng(0)
    masks = {pw.name: rng.random(tuple(pw.kernel.shape)) < 0.5 for pw in ticket.prunable_weights()}
    chosen = subset.select(ticket, (x, y), masks, 0.25, "critical", 0)
    # The same losses by hand: a plain copy of the network with the masks multiplied in.
    plain = _model()
    plain.set_weights([np.array(v) for v in ticket.model.weights])
    for layer, name in zip(plain.layers, ("a", "b", "out")):
        kernel = np.array(layer.kernel)
        layer.kernel.assign(kernel * _local(masks)[f"{name}/kernel"])
    losses = keras.losses.sparse_categorical_crossentropy(y, plain.predict(x, verbose=0))
    expected = np.argsort(-keras.ops.convert_to_numpy(losses), kind="stable")[:24]
    assert chosen == sorted(int(i) for i in expected)
    for a, b in zip(before, ticket.weights):  # choosing changed nothing in the ticket
        np.testing.assert_array_equal(a, np.array(b))
    random_a = subset.select(ticket, (x, y), masks, 0.25, "random", (0, 1))
    assert random_a == subset.select(ticket, (x, y), masks, 0.25, "random", (0, 1))
    assert len(set(random_a)) == 24 and random_a != chosen


def test_subset_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="prune_subset must be in"):
        kl.find_ticket(_model(), _data(), prune_subset=1.0, **FAST)
    with pytest.raises(ValueError, match="method='imp'"):
        kl.find_ticket(_model(), _data(), method="learned", prune_subset=0.1, **FAST)

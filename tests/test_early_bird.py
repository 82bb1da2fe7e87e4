"""Early-bird rounds: a pruning round stops once its mask settles; the ticket trains fully."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.criteria.early_bird import (
    MOVING,
    SETTLED,
    TOO_SHORT,
    EarlyBird,
    EarlyBirdStop,
    mask_distance,
)

STEPS = 200


def _data(n=600, d=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    y = (x @ rng.normal(size=d) > 0).astype("int32")
    return x, y


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(
        keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def _search(early_bird):
    return kl.find_ticket(
        _model(),
        _data(),
        rounds=2,
        steps=STEPS,
        batch_size=32,
        seed=0,
        verbose=0,
        early_bird=early_bird,
    )


def test_mask_distance_counts_differences_among_alive_weights():
    a = {"w": np.array([1, 1, 0, 0], bool), "v": np.array([1, 0], bool)}
    b = {"w": np.array([1, 0, 1, 0], bool), "v": np.array([1, 0], bool)}
    assert mask_distance(a, a) == 0.0
    assert mask_distance(a, b) == pytest.approx(2 / 6)
    alive = {"w": np.array([1, 1, 1, 0], bool), "v": np.array([1, 0], bool)}
    assert mask_distance(a, b, alive) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="differ"):
        mask_distance(a, {"w": a["w"]})


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(window=1), "window"),
        (dict(tolerance=1.5), "tolerance"),
        (dict(check_every=0), "check_every"),
        (dict(min_fraction=1.5), "min_fraction"),
        (dict(min_fraction=-0.1), "min_fraction"),
        (dict(min_fraction=True), "min_fraction"),
    ],
)
def test_bad_settings_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        EarlyBird(**bad)


def test_early_bird_refuses_random_prune_and_bad_types():
    with pytest.raises(ValueError, match="random_prune"):
        kl.find_ticket(_model(), _data(), strategy="random_prune", early_bird=True, verbose=0)
    with pytest.raises(TypeError, match="early_bird"):
        kl.find_ticket(_model(), _data(), early_bird="yes", verbose=0)


@pytest.mark.backends
def test_rounds_stop_early_with_the_same_sparsity_as_full_imp(tmp_path):
    full = _search(None).lottery
    eb = EarlyBird(window=3, tolerance=0.1, check_every=10, min_fraction=0)
    early = _search(eb).lottery
    assert early.config["early_bird"] == {
        "window": 3,
        "tolerance": 0.1,
        "check_every": 10,
        "min_fraction": 0,
    }
    for r in range(2):  # pruning rounds: stopped early, at a check, once the window was full
        rnd = early.rounds[r]
        assert rnd.early_bird_iteration is not None
        assert rnd.early_bird_reason == SETTLED
        assert rnd.iterations == rnd.early_bird_iteration < STEPS
        assert rnd.iterations % 10 == 0 and rnd.iterations >= 30
        assert [d["iteration"] for d in rnd.mask_distances] == list(
            range(10, rnd.iterations + 1, 10)
        )
        assert rnd.mask_distances[-1]["distance"] <= 0.1
        assert all(d["distance"] > 0.1 for d in rnd.mask_distances[2:-1])
        assert full.rounds[r].iterations == STEPS and full.rounds[r].early_bird_iteration is None
    final = early.final  # the ticket trains for the full length, unwatched
    assert final.iterations == STEPS and final.early_bird_iteration is None
    assert final.mask_distances == [] and final.early_bird_reason is None
    for a, b in zip(early.rounds, full.rounds):  # same sparsity, layer by layer
        assert list(a.layer_sparsity.values()) == pytest.approx(list(b.layer_sparsity.values()))
        assert [m.sum() for m in a.masks.values()] == [m.sum() for m in b.masks.values()]
    assert sum(r.iterations for r in early.rounds) < sum(r.iterations for r in full.rounds)
    early.save(tmp_path)
    back = kl.LotteryRecord.load(tmp_path)
    assert [r.early_bird_iteration for r in back.rounds] == [
        r.early_bird_iteration for r in early.rounds
    ]
    assert back.rounds[0].mask_distances == early.rounds[0].mask_distances
    assert [r.early_bird_reason for r in back.rounds] == [SETTLED, SETTLED, None]


@pytest.mark.backends
def test_default_rounds_train_their_minimum_share_before_stopping():
    assert EarlyBird().min_fraction == 0.5
    early = _search(True).lottery
    assert early.config["early_bird"]["min_fraction"] == 0.5
    for rnd in early.rounds[:-1]:
        assert rnd.iterations >= STEPS // 2
        if rnd.early_bird_iteration is None:
            assert rnd.iterations == STEPS and rnd.early_bird_reason != SETTLED
        else:
            assert rnd.iterations == rnd.early_bird_iteration
            assert rnd.early_bird_reason == SETTLED
    assert early.final.iterations == STEPS


class _Model:  # what the callback touches of a model
    stop_training = False


def _watch(predict, total, steps=None, epochs=1, **settings):
    """Drive an EarlyBirdStop as ``fit`` would: ``epochs`` of ``steps`` batches (or ``total``)."""
    eb = EarlyBird(**settings)
    alive = {"w": np.ones(10, bool)}
    every = eb.check_every or (None if total is None else max(1, total // 20))
    cb = EarlyBirdStop(eb, predict, alive, every, total)
    model = _Model()
    cb.set_model(model)
    cb.set_params({"epochs": epochs, "steps": steps or total})
    cb.on_train_begin()
    for epoch in range(epochs):
        cb.on_epoch_begin(epoch)
        for batch in range(steps or total):
            cb.on_train_batch_end(batch)
            if model.stop_training:
                break
        cb.on_epoch_end(epoch)
        if model.stop_training:
            break
    cb.on_train_end()
    return cb


def _still():
    return {"w": np.arange(10) < 5}


def _moving():
    state = {"i": 0}

    def predict():
        state["i"] += 1
        return {"w": np.roll(np.arange(10) < 5, state["i"])}

    return predict


@pytest.mark.backends
def test_a_settled_mask_stops_no_earlier_than_min_fraction():
    # the mask never moves: settled as soon as the window (3 checks) is full
    cb = _watch(_still, 200, window=3, check_every=10, min_fraction=0)
    assert cb.stopped_at == 30 and cb.reason == SETTLED
    cb = _watch(_still, 200, window=3, check_every=10, min_fraction=0.5)
    assert cb.stopped_at == 100 and cb.reason == SETTLED
    assert [d["iteration"] for d in cb.distances] == list(range(10, 101, 10))
    # a share between checks: checked there too, and stopped there
    cb = _watch(_still, 200, window=3, check_every=10, min_fraction=0.53)
    assert cb.stopped_at == 106 and cb.distances[-1]["iteration"] == 106
    assert [d["iteration"] for d in cb.distances[:-1]] == list(range(10, 101, 10))
    cb = _watch(_still, 200, window=3, check_every=10, min_fraction=1.0)
    assert cb.stopped_at == 200


@pytest.mark.backends
def test_min_fraction_counts_epochs_when_the_round_length_is_unknown():
    cb = _watch(_still, None, steps=7, epochs=10, window=3, min_fraction=0.5)
    assert [d["iteration"] for d in cb.distances] == [7, 14, 21, 28, 35]
    assert cb.stopped_at == 35 and cb.reason == SETTLED


@pytest.mark.backends
def test_the_reason_a_round_ran_its_full_length_is_recorded():
    cb = _watch(_moving(), 200, window=3, check_every=10, tolerance=0.1)
    assert cb.stopped_at is None and cb.reason == MOVING
    cb = _watch(_still, 200, window=5, check_every=50, min_fraction=0)
    assert cb.stopped_at is None and cb.reason == TOO_SHORT


@pytest.mark.backends
def test_records_and_settings_written_before_early_bird_reason_load(tmp_path):
    rec = kl.LotteryRecord(
        config={"early_bird": {"window": 5, "tolerance": 0.1, "check_every": None}},
        rounds=[kl.RoundRecord(round=0, sparsity=0.0, layer_sparsity={}, early_bird_iteration=30)],
    )
    rec.save(tmp_path)
    path = tmp_path / "record.json"
    data = json.loads(path.read_text())
    del data["rounds"][0]["early_bird_reason"]  # as an earlier version wrote it
    path.write_text(json.dumps(data))
    back = kl.LotteryRecord.load(tmp_path)
    assert back.rounds[0].early_bird_iteration == 30
    assert back.rounds[0].early_bird_reason is None
    assert EarlyBird.of(back.config["early_bird"]) == EarlyBird(5, 0.1, None)


def test_a_resumed_search_keeps_each_rounds_reason(tmp_path):
    eb = EarlyBird(window=3, check_every=10)
    opts = dict(rounds=2, steps=STEPS, batch_size=32, seed=0, verbose=0, early_bird=eb)
    first = kl.find_ticket(_model(), _data(), run_dir=tmp_path, **opts).lottery
    again = kl.find_ticket(_model(), _data(), run_dir=tmp_path, **opts).lottery  # reloaded
    reasons = [r.early_bird_reason for r in first.rounds]
    assert reasons[:2] == [SETTLED, SETTLED] and reasons[2] is None
    assert [r.early_bird_reason for r in again.rounds] == reasons
    assert [r.iterations for r in again.rounds] == [r.iterations for r in first.rounds]

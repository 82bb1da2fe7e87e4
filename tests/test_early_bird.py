"""Early-bird rounds: a pruning round stops once its mask settles; the ticket trains fully."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.early_bird import EarlyBird, mask_distance

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
    eb = EarlyBird(window=3, tolerance=0.1, check_every=10)
    early = _search(eb).lottery
    assert early.config["early_bird"] == {"window": 3, "tolerance": 0.1, "check_every": 10}
    for r in range(2):  # pruning rounds: stopped early, at a check, once the window was full
        rnd = early.rounds[r]
        assert rnd.early_bird_iteration is not None
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
    assert final.mask_distances == []
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

"""The cost ledger: one data model for every way to a ticket, and records from before it."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from keras_lottery.records import LotteryRecord, RoundRecord
from keras_lottery.records.cost import PLACES, Cost, ImpBaseline, Ledger, imp_prunings


def test_imp_baseline_is_imp_itself():
    """IMP's own asked sparsity gives back exactly its rounds, whatever the rate."""
    for rate in (0.1, 0.2, 0.5):
        for rounds in (1, 3, 15):
            assert imp_prunings(1 - (1 - rate) ** rounds, rate) == rounds
    assert imp_prunings(0.9, 0.2) == 11  # 0.8**10 = 0.107 > 0.1: an 11th pruning is needed
    with pytest.raises(ValueError, match="rate must be in"):
        imp_prunings(0.9, 1.0)


def test_x_imp_counts_trainings_as_long_as_the_final_one():
    cost = Cost(method="early_bird", imp=ImpBaseline(sparsity=1 - 0.8**3, rate=0.2))
    ledger = Ledger(cost)
    for iterations in (60, 40, 55):  # three pruning rounds, stopped early
        ledger.trained(iterations, iterations * 10, 0.1)
    ledger.trained(100, 1000, 0.2, final=True)
    assert cost.imp_iterations == 400 and cost.x_imp == pytest.approx(255 / 400)
    assert cost.training_equivalents == pytest.approx(2.55)
    assert (cost.examples, cost.trainings) == (2550, 4)


def test_ledger_books_every_second_once():
    """Training plus the places outside it is the whole wall: the rest is ``other``."""
    ledger = Ledger(Cost())
    with ledger.outside("masks"):
        time.sleep(0.02)
    t0 = time.perf_counter()
    time.sleep(0.03)  # a training
    trained = time.perf_counter() - t0
    ledger.trained(2, 16, trained)
    ledger.compiled(0.01)
    time.sleep(0.02)
    cost = ledger.close()
    assert cost.outside["compile"] == pytest.approx(0.01)
    assert cost.training_seconds == pytest.approx(trained - 0.01)
    assert cost.outside["masks"] >= 0.02 and cost.outside["other"] > 0.0
    assert cost.training_seconds + cost.outside_seconds == pytest.approx(cost.seconds)
    with pytest.raises(ValueError, match="place must be one of"):
        with ledger.outside("elsewhere"):
            pass
    assert set(cost.outside) <= set(PLACES)


def test_a_resumed_ledger_adds_to_the_stored_cost():
    stored = Cost(iterations=10, seconds=5.0, training_seconds=4.0, outside={"other": 1.0})
    ledger = Ledger(Cost.from_dict(json.loads(json.dumps(stored.to_dict()))))
    ledger.trained(10, None, 0.0)
    cost = ledger.close()
    assert cost.iterations == 20 and cost.examples is None  # unknown stays unknown
    assert cost.seconds >= 5.0
    assert cost.training_seconds + cost.outside_seconds == pytest.approx(cost.seconds)


def test_records_round_trip_the_cost_and_old_records_load(tmp_path):
    cost = Cost(method="imp", iterations=30, examples=300, imp=ImpBaseline(0.2, 0.2))
    cost.final_iterations = 15
    round_ = RoundRecord(round=0, sparsity=0.0, layer_sparsity={}, outside={"masks": 0.5})
    round_.masks = {"d/kernel": np.ones((2, 2), bool)}
    LotteryRecord(config={"rounds": 1}, rounds=[round_], cost=cost).save(tmp_path / "new")
    loaded = LotteryRecord.load(tmp_path / "new")
    assert loaded.cost == cost and loaded.rounds[0].outside == {"masks": 0.5}
    assert "x IMP" in loaded.summary()

    # A record of an earlier version: no cost, no per-round outside wall.
    (tmp_path / "new" / "record.json").write_text(
        json.dumps(
            {
                "config": {"rounds": 1},
                "rounds": [
                    {"round": 0, "sparsity": 0.0, "layer_sparsity": {}, "percent_remaining": 100}
                ],
            }
        )
    )
    old = LotteryRecord.load(tmp_path / "new")
    assert old.cost is None and old.rounds[0].outside == {}
    assert old.rounds[0].masks["d/kernel"].all()
    assert "cost" not in old.summary()


def _tiny():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.backends
def test_find_ticket_fills_the_ledger(tmp_path):
    """Iterations and examples add up over the rounds, every second is booked once, x IMP."""
    import keras_lottery as kl

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)).astype("float32"), rng.integers(0, 3, 50)
    imp = kl.find_ticket(
        _tiny(), (x, y), rounds=2, steps=4, batch_size=20, seed=0, verbose=0, run_dir=tmp_path
    )
    cost = imp.lottery.cost
    assert cost.method == "imp" and cost.trainings == 3
    assert cost.iterations == sum(r.iterations for r in imp.lottery.rounds) == 12
    assert cost.examples == 3 * (50 + 20)  # a pass: batches of 20, 20 and 10; then one of 20
    assert cost.x_imp == pytest.approx(1.0)
    assert cost.training_seconds + cost.outside_seconds == pytest.approx(cost.seconds)
    assert all(set(r.outside) <= set(PLACES) for r in imp.lottery.rounds)
    assert "masks" in imp.lottery.rounds[0].outside and "reset" in imp.lottery.rounds[1].outside
    stored = json.loads((tmp_path / "record.json").read_text())["cost"]
    assert stored["iterations"] == 12 and stored["x_imp"] == pytest.approx(1.0)

    once = kl.find_ticket(
        _tiny(), (x, y), rounds=5, one_shot=True, steps=4, batch_size=20, seed=0, verbose=0
    )
    assert once.lottery.cost.method == "one_shot"
    assert once.lottery.cost.x_imp == pytest.approx(8 / 24)  # 2 trainings against IMP's 6

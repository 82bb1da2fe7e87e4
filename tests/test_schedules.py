"""Round schedules as TFMOT schedules, lazy TFMOT import, GradualPruning, gradual_ticket."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_gradual import _data, _model

import keras_lottery as kl
from keras_lottery.tfmot import schedules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str, env_extra: dict[str, str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update({"PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})})
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


# tf.keras is *not* touched before the schedules are used: that is the risky case.
_LAZY = (
    "import os, sys, tensorflow as tf, keras_lottery, keras_lottery.tfmot.schedules as S\n"
    "assert 'tensorflow_model_optimization' not in sys.modules, 'imported eagerly'\n"
    "before = os.environ.get('TF_USE_LEGACY_KERAS')\n"
    "s = S.IterativeSchedule(0.2, 2, 5)\n"
    "assert 'tensorflow_model_optimization' in sys.modules\n"
    "assert bool(s(5)[0])\n"
    "after = os.environ.get('TF_USE_LEGACY_KERAS')\n"
    "assert after == before, (before, after)\n"
    "print(tf.keras.__name__)\n"
)


def test_schedules_import_tfmot_lazily_and_keep_tf_keras():
    assert _run(_LAZY) == "keras._tf_keras.keras"  # Keras 3, as without TFMOT


def test_schedules_keep_a_user_legacy_setting():
    assert _run(_LAZY, {"TF_USE_LEGACY_KERAS": "1"}).startswith("tf_keras")


def test_round_schedules_step_function():
    tfmot = schedules.import_tfmot()
    it = schedules.IterativeSchedule(0.2, 3, steps_per_round=10)
    assert isinstance(it, tfmot.sparsity.keras.PruningSchedule)
    assert it.prune_steps == [10, 20, 30]
    for step in range(0, 45):
        should, sparsity = it(step)
        assert bool(should) == (step in (10, 20, 30))
        rounds_done = min(step // 10, 3)
        assert float(sparsity) == pytest.approx(1 - 0.8**rounds_done, abs=1e-6)
    traced = tf.function(lambda s: it(s))
    assert bool(traced(tf.constant(20, tf.int64))[0])

    target = schedules.TargetSchedule(0.9, rounds=2, steps_per_round=5, begin_step=3)
    assert target.prune_steps == [8, 13]
    assert float(target(13)[1]) == pytest.approx(0.9, abs=1e-6)
    one = schedules.OneShotSchedule(0.8, steps_per_round=7)
    assert [s for s in range(30) if bool(one(s)[0])] == [7]
    frozen = schedules.FrozenSchedule(0.5)
    assert not any(bool(frozen(s)[0]) for s in range(5))

    for sched in (it, target, one, frozen):
        config = sched.get_config()
        assert config["class_name"] == type(sched).__name__
        again = type(sched).from_config(config["config"])
        assert again.get_config() == config
    with pytest.raises(ValueError, match="rate"):
        schedules.IterativeSchedule(1.5, 3, 10)


class MaskLog(keras.callbacks.Callback):
    """Masks after every batch, keyed by the step (TFMOT numbering: first batch is 1)."""

    def __init__(self):
        super().__init__()
        self.masks: dict[int, dict[str, np.ndarray]] = {}
        self.starts: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []

    def on_train_begin(self, logs=None):
        weights = kl.prunable_weights(self.model)
        self.starts.append({w.name: (np.array(w.kernel), np.array(w.mask)) for w in weights})

    def on_train_batch_end(self, batch, logs=None):
        step = int(np.asarray(self.model.optimizer.iterations))
        self.masks[step] = {w.name: np.array(w.mask) for w in kl.prunable_weights(self.model)}


def _user_schedule():
    tfmot = schedules.import_tfmot()

    class Steps(tfmot.sparsity.keras.PruningSchedule):
        """A user subclass: 30% at step 4, 60% at step 9."""

        def __call__(self, step):
            step = tf.cast(step, tf.int64)
            sparsity = tf.where(step >= 9, 0.6, tf.where(step >= 4, 0.3, 0.0))
            return tf.logical_or(step == 4, step == 9), sparsity

        def get_config(self):
            return {"class_name": "Steps", "config": {}}

    return Steps()


def _tfmot_schedules():
    tfmot = schedules.import_tfmot()
    sk = tfmot.sparsity.keras
    return {
        "polynomial": sk.PolynomialDecay(0.1, 0.8, begin_step=2, end_step=14, frequency=3),
        "constant": sk.ConstantSparsity(0.5, begin_step=3, end_step=12, frequency=4),
        "iterative": schedules.IterativeSchedule(0.3, 3, steps_per_round=4, begin_step=1),
        "user": _user_schedule(),
    }


@pytest.mark.parametrize("name", ["polynomial", "constant", "iterative", "user"])
def test_gradual_pruning_follows_the_schedule(name):
    schedule = _tfmot_schedules()[name]
    ticket = kl.make_prunable(_model())
    ticket.compile_from_config(_model().get_compile_config())
    log, pruner = MaskLog(), schedules.GradualPruning(schedule)
    x, y = _data()
    ticket.fit(x, y, batch_size=16, epochs=1, callbacks=[pruner, log], verbose=0)
    assert pruner.events, "the schedule never pruned"
    previous = None
    for step in sorted(log.masks):
        # The sparsity reached is that of the last step at which the schedule pruned.
        pruned_at = [s for s in range(1, step + 1) if bool(schedule(s)[0])]
        expected = float(schedule(pruned_at[-1])[1]) if pruned_at else 0.0
        for mask in log.masks[step].values():
            assert abs(mask.sum() - mask.size * (1 - expected)) <= 1, (name, step)
            assert set(np.unique(mask)) <= {0.0, 1.0}
        if previous is not None:  # masks only shrink
            for now, before in zip(log.masks[step].values(), previous.values()):
                assert np.all(now <= before)
        previous = log.masks[step]
    for w in kl.prunable_weights(ticket):  # pruned weights are exactly 0
        assert np.all(np.array(w.kernel)[np.array(w.mask) == 0] == 0)


def test_gradual_pruning_global_scope_and_bad_options():
    schedule = schedules.OneShotSchedule(0.75, steps_per_round=3)
    ticket = kl.make_prunable(_model())
    ticket.compile_from_config(_model().get_compile_config())
    x, y = _data(64)
    pruner = schedules.GradualPruning(schedule, scope="global")
    ticket.fit(x, y, batch_size=16, epochs=1, callbacks=[pruner], verbose=0)
    assert pruner.events == [(3, pytest.approx(0.75))]
    assert kl.sparsity(ticket)["overall"] == pytest.approx(0.75, abs=1e-2)
    with pytest.raises(ValueError, match="frequency"):
        schedules.GradualPruning(schedule, frequency=0)
    with pytest.raises(kl.NotPrunableError):
        _model().fit(x, y, epochs=1, verbose=0, callbacks=[schedules.GradualPruning(schedule)])


def test_gradual_ticket_rewinds_survivors_and_freezes_masks():
    tfmot = schedules.import_tfmot()
    sk = tfmot.sparsity.keras
    schedule = sk.PolynomialDecay(0.0, 0.7, begin_step=1, end_step=10, frequency=3)
    model = _model()
    theta0 = [np.array(layer.kernel) for layer in model.layers]
    log = MaskLog()
    x, y = _data()
    ticket = schedules.gradual_ticket(
        model, (x, y), schedule, batch_size=16, seed=0, verbose=0, callbacks=[log]
    )
    record = ticket.lottery
    assert isinstance(record, kl.LotteryRecord) and len(record.rounds) == 2
    assert record.rounds[0].sparsity == pytest.approx(record.rounds[1].sparsity)
    for k0, (name, (kernel, mask)) in zip(theta0, log.starts[1].items()):
        assert mask.mean() < 0.35  # pruned to ~70% in round 0
        np.testing.assert_array_equal(mask, record.rounds[0].masks[name])
        np.testing.assert_array_equal(mask, record.rounds[1].masks[name])  # frozen
        np.testing.assert_array_equal(kernel, k0 * mask)  # θ0
    round1_steps = sorted(log.masks)[-(len(x) // 16) :]
    for step in round1_steps:
        for name, mask in log.masks[step].items():
            np.testing.assert_array_equal(mask, record.rounds[1].masks[name])

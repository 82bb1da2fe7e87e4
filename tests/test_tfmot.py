"""TFMOT-wrapped tf_keras models: rewind with frozen masks, strip_pruning, our schedules.

tf_keras must own the process, so the checks run once in a fresh interpreter
(``TF_USE_LEGACY_KERAS=1``; this file run as a script) and report JSON; the
pytest process keeps Keras 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def report() -> dict:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = ROOT
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_masks_frozen_through_every_round(report):
    # Round 0 would prune at steps 4, 6, ... with the user's cached schedule.
    assert report["round0_sparsity"] == 0.0
    assert all(j == 1.0 for j in report["jaccard_through_round"]), report["jaccard_through_round"]


def test_prunes_by_count_only_shrinking(report):
    assert report["counts_ok"] and report["shrink_only"]
    assert [r["sparsity"] > 0 for r in report["rounds"]] == [False, True, True]


def test_survivors_restart_at_theta0_exactly(report):
    assert report["theta0_exact"] == [True, True]
    assert report["optimizer_reset"] == [True, True]


def test_strip_pruning_keeps_the_zeros(report):
    assert report["strip_zeros_match"] and report["strip_outputs_match"]
    assert report["strip_has_wrappers"] is False


def test_record_and_config(report):
    assert report["record_type"] == "LotteryRecord"
    assert report["schedule_after"] == "FrozenSchedule"
    assert report["from_config_schedule"] == "FrozenSchedule"


def test_round_schedule_drives_tfmot_itself(report):
    assert report["iterative_in_tfmot"], report["iterative_detail"]


# -- the worker (runs under tf_keras) --------------------------------------------


def _worker() -> dict:  # pragma: no cover - runs in the subprocess
    import numpy as np
    import tf_keras as K

    from keras_lottery.criteria import magnitude
    from keras_lottery.tfmot import compat as tc
    from keras_lottery.tfmot import schedules

    tfmot = schedules.import_tfmot()
    sk = tfmot.sparsity.keras
    rng = np.random.default_rng(0)
    x = rng.normal(size=(384, 12)).astype("float32")
    y = x[:, :3].argmax(1).astype("int64")

    def wrapped(schedule):
        K.utils.set_random_seed(0)
        base = K.Sequential(
            [K.Input((12,)), K.layers.Dense(24, activation="relu"), K.layers.Dense(3)]
        )
        model = sk.prune_low_magnitude(base, pruning_schedule=schedule)
        model.compile(
            K.optimizers.Adam(1e-2),
            K.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    class Spy(K.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.starts, self.ends = [], []

        def grab(self):
            vals = {v.name: v.numpy().copy() for v in self.model.weights}
            return (
                tc.tfmot_masks(self.model),
                vals,
                [v.numpy() for v in self.model.optimizer.variables],
            )

        def on_train_begin(self, logs=None):
            self.starts.append(self.grab())

        def on_train_end(self, logs=None):
            self.ends.append(self.grab())

    out: dict = {}
    # The user's schedule would prune from step 4 on; one step of fit caches it.
    model = wrapped(sk.ConstantSparsity(0.5, begin_step=4, frequency=2))
    model.fit(
        x[:32], y[:32], batch_size=32, epochs=1, verbose=0, callbacks=[sk.UpdatePruningStep()]
    )
    internal = {v.name for w in tc.pruning_wrappers(model) for t in w.pruning_vars for v in t[1:]}
    internal |= {w.pruning_step.name for w in tc.pruning_wrappers(model)}
    theta0 = {v.name: v.numpy().copy() for v in model.weights if v.name not in internal}
    spy = Spy()
    result = tc.find_ticket_tfmot(
        model, (x, y), rounds=2, rate=0.4, steps=12, batch_size=32, seed=0, callbacks=[spy]
    )
    record = result.lottery
    out["record_type"] = type(record).__name__
    out["rounds"] = [r.to_dict() for r in record.rounds]
    out["round0_sparsity"] = record.rounds[0].sparsity

    def jaccard(a, b):
        a, b = a > 0, b > 0
        return float((a & b).sum() / (a | b).sum())

    out["jaccard_through_round"] = [
        jaccard(s[0][n], e[0][n]) for s, e in zip(spy.starts, spy.ends) for n in s[0]
    ]
    names = list(spy.starts[0][0])
    rates = {names[0]: 0.4, names[1]: 0.2}  # the output layer at half rate
    out["counts_ok"] = all(
        int(spy.starts[r][0][n].sum())
        == magnitude.keep_count(spy.starts[r][0][n].size, rates[n], r)
        for r in range(3)
        for n in names
    )
    out["shrink_only"] = all(
        np.all(spy.starts[r][0][n] <= spy.ends[r - 1][0][n]) for r in (1, 2) for n in names
    )
    out["theta0_exact"] = []
    out["optimizer_reset"] = []
    for r in (1, 2):
        masks, values, opt = spy.starts[r]
        ok = True
        for name, value in theta0.items():
            mask = masks.get(name.split(":")[0])
            expected = value if mask is None else value * mask
            ok &= bool(np.array_equal(values[name], expected))
        out["theta0_exact"].append(ok)
        out["optimizer_reset"].append(
            all(np.array_equal(a, b) for a, b in zip(opt, spy.starts[0][2]))
        )

    wrapper = tc.pruning_wrappers(result)[0]
    out["schedule_after"] = type(wrapper.pruning_schedule).__name__
    again = type(wrapper).from_config(wrapper.get_config())
    out["from_config_schedule"] = type(again.pruning_schedule).__name__

    stripped = sk.strip_pruning(result)
    final = record.final.masks
    kernels = [layer.kernel.numpy() for layer in stripped.layers]
    out["strip_zeros_match"] = all(
        np.array_equal(k == 0, m == 0) for k, m in zip(kernels, final.values())
    )
    out["strip_outputs_match"] = bool(
        np.allclose(stripped.predict(x[:16], verbose=0), result.predict(x[:16], verbose=0))
    )
    out["strip_has_wrappers"] = bool(tc.pruning_wrappers(stripped))

    # Our round schedule handed to TFMOT's own prune_low_magnitude.
    schedule = schedules.IterativeSchedule(0.3, 3, steps_per_round=4)
    model = wrapped(schedule)
    seen = []

    class Log(K.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(tc.pruning_wrappers(self.model)[0].pruning_step.numpy())
            seen.append((step, {n: float(m.sum()) for n, m in tc.tfmot_masks(self.model).items()}))

    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[sk.UpdatePruningStep(), Log()])
    detail = []
    for step, kept in seen:
        s = float(schedule(step)[1])
        for n, k in kept.items():
            size = tc.tfmot_masks(model)[n].size
            detail.append((step, n, k, size * (1 - s)))
    out["iterative_detail"] = detail
    out["iterative_in_tfmot"] = all(abs(k - e) <= 1 for _, _, k, e in detail) and bool(detail)
    return out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(_worker()))

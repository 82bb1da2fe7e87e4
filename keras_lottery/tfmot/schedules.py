"""Pruning schedules: lottery-ticket rounds as TFMOT schedules, and gradual magnitude.

Two halves, usable apart:

* **Round schedules** -- :class:`IterativeSchedule` (``rate`` of the survivors per
  round), :class:`TargetSchedule` (``1-(1-target)**(1/n)`` per round),
  :class:`OneShotSchedule` and :class:`FrozenSchedule` (never prunes).  They
  subclass ``tfmot.sparsity.keras.PruningSchedule``: ``schedule(step)`` returns
  the ``(should_prune, sparsity)`` tensors TFMOT expects, so they can be given to
  TFMOT's own ``prune_low_magnitude`` as well as to :class:`GradualPruning`.
  TensorFlow Model Optimization is imported only when one of these classes is
  first used (``keras_lottery.tfmot.schedules.IterativeSchedule``), never by
  ``import keras_lottery``, and without changing how ``tf.keras`` resolves
  (see :func:`import_tfmot`).

* :func:`gradual_ticket` -- gradual magnitude pruning with
  :class:`~keras_lottery.criteria.gradual.GradualPruning` (also importable from here),
  then rewind the survivors to θ0 and retrain with the masks frozen.

Steps follow TFMOT: the batch about to run is step ``iterations + 1`` (the first
batch is step 1), and a pruning at step ``s`` takes effect for that batch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import keras

from keras_lottery.criteria import magnitude
from keras_lottery.criteria.gradual import GradualPruning, Schedule
from keras_lottery.extras import require, tensorflow
from keras_lottery.search.loop import find_ticket

tf = tensorflow("keras_lottery.tfmot.schedules (TFMOT pruning schedules)")

_LEGACY = "TF_USE_LEGACY_KERAS"
_SCHEDULE_NAMES = ("IterativeSchedule", "TargetSchedule", "OneShotSchedule", "FrozenSchedule")


def import_tfmot():
    """Import ``tensorflow_model_optimization`` without side effects on Keras.

    TFMOT sets ``TF_USE_LEGACY_KERAS=1`` when imported, and ``tf.keras`` resolves
    (once, lazily) from that variable.  Here ``tf.keras`` is resolved first under
    the user's own setting, and the variable is restored afterwards.
    """
    if "tensorflow_model_optimization" in sys.modules:
        return sys.modules["tensorflow_model_optimization"]
    getattr(tf.keras, "__name__", None)  # resolve tf.keras under the user's setting
    before = os.environ.get(_LEGACY)
    try:
        tfmot = require("tensorflow_model_optimization", "TensorFlow Model Optimization interop")
    finally:
        if before is None:
            os.environ.pop(_LEGACY, None)
        else:
            os.environ[_LEGACY] = before
    return tfmot


# -- round schedules ----------------------------------------------------------


class _RoundSchedule:
    """Prune at steps ``begin_step + k * steps_per_round`` to ``sparsities[k-1]``.

    Between prunings the sparsity stays at the last one reached (0 before the
    first), so TFMOT's separate sparsity query is always consistent.
    """

    def __init__(self, sparsities: Sequence[float], steps_per_round: int, begin_step: int = 0):
        sparsities = [float(s) for s in sparsities]
        if not sparsities:
            raise ValueError("a round schedule needs at least one round.")
        for s in sparsities:
            magnitude.check_sparsity(s, "sparsity")
        if any(b < a for a, b in zip(sparsities, sparsities[1:])):
            raise ValueError(f"sparsities must not decrease, got {sparsities}.")
        if not isinstance(steps_per_round, int) or steps_per_round < 1:
            raise ValueError(f"steps_per_round must be an integer >= 1, got {steps_per_round!r}.")
        if not isinstance(begin_step, int) or begin_step < 0:
            raise ValueError(f"begin_step must be an integer >= 0, got {begin_step!r}.")
        self.sparsities = sparsities
        self.steps_per_round = steps_per_round
        self.begin_step = begin_step

    @property
    def prune_steps(self) -> list[int]:
        """The steps at which this schedule prunes."""
        return [
            self.begin_step + k * self.steps_per_round for k in range(1, len(self.sparsities) + 1)
        ]

    def __call__(self, step):
        n = len(self.sparsities)
        rel = tf.cast(step, tf.int64) - self.begin_step
        done = tf.clip_by_value(tf.math.floordiv(rel, self.steps_per_round), 0, n)
        table = tf.constant([0.0, *self.sparsities], dtype=tf.float32)
        should = tf.logical_and(
            tf.logical_and(rel > 0, tf.math.floormod(rel, self.steps_per_round) == 0),
            rel <= n * self.steps_per_round,
        )
        return should, tf.gather(table, done)

    def _params(self) -> dict[str, Any]:
        return {"sparsities": self.sparsities, "steps_per_round": self.steps_per_round}

    def get_config(self) -> dict[str, Any]:
        config = {**self._params(), "begin_step": self.begin_step}
        return {"class_name": type(self).__name__, "config": config}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config()["config"].items())
        return f"{type(self).__name__}({args})"


class _IterativeSchedule(_RoundSchedule):
    """Prune ``rate`` of the surviving weights at the end of each of ``rounds`` rounds.

    After round ``k`` the sparsity is ``1 - (1 - rate) ** k`` (the paper's p% per
    round); round ``k`` ends at step ``begin_step + k * steps_per_round``.
    """

    def __init__(self, rate: float, rounds: int, steps_per_round: int, begin_step: int = 0):
        if not 0.0 < rate < 1.0:
            raise ValueError(f"rate must be in (0, 1), got {rate!r}.")
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}.")
        self.rate, self.rounds = float(rate), rounds
        sparsities = [1.0 - (1.0 - rate) ** k for k in range(1, rounds + 1)]
        super().__init__(sparsities, steps_per_round, begin_step)

    def _params(self):
        return {"rate": self.rate, "rounds": self.rounds, "steps_per_round": self.steps_per_round}


class _TargetSchedule(_IterativeSchedule):
    """Reach ``target_sparsity`` after ``rounds`` equal prunings of ``1-(1-t)**(1/n)``."""

    def __init__(
        self, target_sparsity: float, rounds: int, steps_per_round: int, begin_step: int = 0
    ):
        if not 0.0 < target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {target_sparsity!r}.")
        self.target_sparsity = float(target_sparsity)
        rate = magnitude.per_round_rate(target_sparsity, rounds)
        super().__init__(rate, rounds, steps_per_round, begin_step)

    def _params(self):
        return {
            "target_sparsity": self.target_sparsity,
            "rounds": self.rounds,
            "steps_per_round": self.steps_per_round,
        }


class _OneShotSchedule(_RoundSchedule):
    """Prune once, to ``target_sparsity``, at step ``begin_step + steps_per_round``."""

    def __init__(self, target_sparsity: float, steps_per_round: int, begin_step: int = 0):
        self.target_sparsity = float(target_sparsity)
        super().__init__([target_sparsity], steps_per_round, begin_step)

    def _params(self):
        return {"target_sparsity": self.target_sparsity, "steps_per_round": self.steps_per_round}


class _FrozenSchedule:
    """Never prune: the masks stay as they are (``sparsity`` is only reported)."""

    def __init__(self, sparsity: float = 0.0):
        magnitude.check_sparsity(sparsity, "sparsity")
        self.sparsity = float(sparsity)

    def __call__(self, step):
        return tf.constant(False), tf.constant(self.sparsity, dtype=tf.float32)

    def get_config(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "config": {"sparsity": self.sparsity}}

    def __repr__(self) -> str:
        return f"FrozenSchedule(sparsity={self.sparsity!r})"


_MIXINS = {
    "IterativeSchedule": _IterativeSchedule,
    "TargetSchedule": _TargetSchedule,
    "OneShotSchedule": _OneShotSchedule,
    "FrozenSchedule": _FrozenSchedule,
}


def _build_schedules() -> None:
    """Create the public classes on top of TFMOT's ``PruningSchedule`` (once)."""
    tfmot = import_tfmot()
    base = tfmot.sparsity.keras.PruningSchedule
    from tensorflow_model_optimization.python.core.keras.compat import keras as tfmot_keras

    registry = tfmot_keras.utils.get_custom_objects()
    built = {}
    for name, mixin in _MIXINS.items():
        namespace = {"__module__": __name__, "__qualname__": name, "__doc__": mixin.__doc__}
        cls = type(base)(name, (mixin, base), namespace)
        built[name] = cls
        # Wrapped tf_keras models then deserialize their schedule by name.
        registry.setdefault(name, cls)
    globals().update(built)


def custom_objects() -> dict[str, type]:
    """``{name: class}`` of the round schedules, for ``custom_object_scope`` on load."""
    return {name: __getattr__(name) for name in _SCHEDULE_NAMES}


def __getattr__(name: str):
    if name in _SCHEDULE_NAMES:
        _build_schedules()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SCHEDULE_NAMES))


# -- gradual pruning + rewind ------------------------------------------------------


def gradual_ticket(
    model: keras.Model,
    data: Any = None,
    schedule: Schedule | None = None,
    *,
    frequency: int = 1,
    scope: str = "layerwise",
    **kwargs: Any,
) -> keras.Model:
    """Gradual magnitude pruning, then rewind the survivors and retrain (masks frozen).

    Round 0 trains a mask-aware copy of the compiled ``model`` with
    :class:`GradualPruning` ``(schedule, frequency, scope)``; the survivors are
    then reset to θ0 (or θk with ``rewind_to=k``), the optimizer to its initial
    state, and round 1 retrains with the final masks fixed.  This is
    ``find_ticket(model, data, rounds=1, gradual=...)``: every other argument
    is :func:`keras_lottery.find_ticket`'s, and so is the returned ticket.
    """
    if schedule is None:
        raise ValueError("gradual_ticket needs a schedule, e.g. TFMOT's PolynomialDecay.")
    pruner = GradualPruning(schedule, frequency=frequency, scope=scope)
    return find_ticket(model, data, rounds=1, scope=scope, gradual=pruner, **kwargs)


__all__ = [
    "GradualPruning",
    "custom_objects",
    "gradual_ticket",
    "import_tfmot",
    *_SCHEDULE_NAMES,
]

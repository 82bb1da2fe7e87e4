"""Step 4 of the search: reset the surviving weights to θ0, and the optimizer.

``strategy`` says what the survivors become: θ0 (``rewind``), the rewind point
θk (``rewind_to=k``), fresh values from reseeded initializers (``reinit``), or
their trained values (``continue``, ``finetune``, ``lr_rewind``).  Every round
starts from the optimizer's initial state.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_lottery.masks.assign import Fills, assign
from keras_lottery.masks.convert import NotPrunableError
from keras_lottery.options import Reset
from keras_lottery.search.memory import release_freed
from keras_lottery.seeding import seed_round

#: Strategies whose next round starts from the trained weights (checkpointed each round).
KEEP_TRAINED = ("continue", "finetune", "lr_rewind")


def start_round(ticket, state, rewind, optimizer0, masks, reset: Reset, seed, r) -> None:
    """Step 4 before round ``r``: reset the weights and the optimizer, apply ``masks``.

    Pruned weights, and their optimizer state unless it restarts at zeros, are
    set to exactly 0.  Each phase's per-weight temporaries are handed back to
    the system before the next phase allocates (:mod:`keras_lottery.search.memory`).
    """
    reset_survivors(ticket, state, reset.strategy, rewind, seed, r)
    release_freed()
    optimizer0.restore(ticket.optimizer, reset.rewind_to, reset.strategy, reset.finetune_lr_scale)
    release_freed()
    ticket.set_masks(masks, optimizer_state=not optimizer0.zeros)


def reset_survivors(ticket, state, strategy, rewind_values, seed, r):
    """Step 4: set the (non-mask) weights for the next round."""
    if strategy in KEEP_TRAINED:
        return  # keep training the trained weights (Han et al.)
    if strategy == "reinit":
        round_seed = None if seed is None else seed + 7919 * (r + 1)
        if round_seed is not None:
            seed_round(round_seed)
        rewind_values = fresh_values(ticket.model, round_seed)
        assert len(rewind_values) == len(state)
    for var, value in zip(state, rewind_values):
        assign(var, value)


def fresh_values(model: keras.Model, seed: int | None) -> list:
    """New initial values for every weight of ``model`` (the reinit control).

    The model is rebuilt from its config with reseeded initializers, which
    works for every model Keras can save (functional graphs with raw
    operations, subclassed models with ``get_config``, keras-hub).
    """
    try:
        fresh = type(model).from_config(reseeded(model.get_config(), seed))
        if not fresh.built or not fresh.weights:
            fresh.build_from_config(model.get_build_config())
    except Exception as e:
        raise NotPrunableError(
            f"strategy='reinit' rebuilds model '{model.name}' from its config to draw new "
            f"initial weights, which failed ({type(e).__name__}: {e}). Give the model's "
            "class a get_config()/from_config() (and a build()) so Keras can re-create it."
        ) from e
    ours, theirs = model.weights, fresh.weights
    if [tuple(v.shape) for v in ours] != [tuple(v.shape) for v in theirs]:
        raise NotPrunableError(
            f"strategy='reinit': model '{model.name}' rebuilt from its config has other "
            "weights than the original; its get_config() does not describe it fully."
        )
    return [v.value for v in theirs]


def reseeded(config: Any, seed: int | None) -> Any:
    """``config`` with every initializer ``seed`` replaced by a new one.

    Initializers built with a fixed seed (as Keras applications and our zoo
    do) would redraw θ0 exactly; each gets a new seed (``None``: unseeded).
    """
    counter = iter(range(1, 1 << 30))

    def reseed(obj):
        if isinstance(obj, dict):
            return {
                k: (None if seed is None else seed + next(counter))
                if k == "seed" and (v is None or isinstance(v, int))
                else reseed(v)
                for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [reseed(v) for v in obj]
        return obj

    return reseed(config)


class OptimizerStart:
    """The optimizer's initial state, without a copy of what a fresh optimizer holds.

    A variable holding one value everywhere (zero moments, the iteration
    counter, the learning rate) is kept as that value and re-created on
    restore; only another state (an optimizer that was already used) is
    copied, into :attr:`stored` (by index, as ``state.npz`` holds it).
    """

    def __init__(self, optimizer):
        self.fills: list[Any] = []
        self.stored: dict[str, np.ndarray] = {}
        for i, var in enumerate(optimizer.variables):
            low = keras.ops.convert_to_numpy(keras.ops.min(var))
            high = keras.ops.convert_to_numpy(keras.ops.max(var))
            self.fills.append(low if low == high else None)
            if low != high:
                self.stored[str(i)] = np.array(var)
        self._per_weight = [len(var.shape) > 0 for var in optimizer.variables]

    @property
    def zeros(self) -> bool:
        """Whether every per-weight variable (not the scalars) restores to zeros."""
        return not self.stored and all(
            fill == 0 for fill, per_weight in zip(self.fills, self._per_weight) if per_weight
        )

    def restore(self, optimizer, rewind_to, strategy, lr_scale) -> None:
        fills = Fills()  # one zeros tensor per shape on TensorFlow, not one per variable
        for i, var in enumerate(optimizer.variables):
            if str(i) in self.stored:
                assign(var, self.stored[str(i)])
            else:
                assign(var, fills(var.shape, var.dtype, self.fills[i]))
        if isinstance(rewind_to, int) and strategy in ("rewind", "lr_rewind"):
            optimizer.iterations.assign(rewind_to)
        if strategy == "finetune":
            optimizer.learning_rate = float(np.asarray(optimizer.learning_rate)) * lr_scale

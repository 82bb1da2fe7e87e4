"""Lottery-ticket rewinding for TFMOT-wrapped ``tf_keras`` models.

TensorFlow Model Optimization (TFMOT) prunes ``tf_keras`` models wrapped with
``tfmot.sparsity.keras.prune_low_magnitude``, but it has no rewind, and its
masks are recomputed from the current weights whenever its schedule says so.
:func:`find_ticket_tfmot` runs Frankle & Carbin's loop on such a model:

1. snapshot θ0 (every weight but TFMOT's ``mask``, ``threshold`` and
   ``pruning_step`` variables) and the optimizer's initial state;
2. train the round with TFMOT's ``UpdatePruningStep`` callback while every
   wrapper holds a :class:`~keras_lottery.tfmot.schedules.FrozenSchedule` (TFMOT
   never recomputes the masks);
3. prune once with TFMOT's own magnitude rule (``Pruning.conditional_mask_update``
   under a one-step ``ConstantSparsity``), multiplied by the old mask so no
   weight regrows;
4. rewind the survivors to θ0 and the optimizer to its initial state; repeat.

TFMOT is imported only when these functions run (see
:func:`keras_lottery.tfmot.schedules.import_tfmot`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_lottery.criteria import magnitude
from keras_lottery.extras import tensorflow
from keras_lottery.masks.convert import NotPrunableError
from keras_lottery.records.record import LotteryRecord, RoundRecord
from keras_lottery.tfmot import schedules
from keras_lottery.tfmot.schedules import import_tfmot

tf = tensorflow("keras_lottery.tfmot.compat (TFMOT models)")


def pruning_wrappers(model: Any) -> list[Any]:
    """The ``PruneLowMagnitude`` wrappers of a tf_keras model, in layer order."""
    import_tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude,
    )

    found, seen = [], set()

    def walk(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, PruneLowMagnitude):
            found.append(layer)
            return
        for sub in getattr(layer, "layers", []):
            walk(sub)

    walk(model)
    return found


def _name(var) -> str:
    return var.name.split(":")[0]


def tfmot_masks(model: Any) -> dict[str, np.ndarray]:
    """``{kernel name: mask}`` of every pruned weight of a TFMOT-wrapped model."""
    return {
        _name(w): np.array(m)
        for wrapper in pruning_wrappers(model)
        for w, m, _ in wrapper.pruning_vars
    }


def set_schedule(wrapper: Any, schedule: Any) -> None:
    """Give ``wrapper`` a new pruning schedule (takes effect in new train functions)."""
    wrapper.pruning_schedule = schedule
    wrapper.pruning_obj._pruning_schedule = schedule


def freeze_masks(model: Any) -> None:
    """Stop TFMOT from changing the masks of ``model`` in later training.

    Every wrapper gets a :class:`~keras_lottery.tfmot.schedules.FrozenSchedule`, and
    the model's cached train function is dropped, since it holds the schedule
    it was traced with.
    """
    for wrapper in pruning_wrappers(model):
        masks = [np.array(m) for _, m, _ in wrapper.pruning_vars]
        done = 1.0 - sum(float(m.sum()) for m in masks) / max(sum(m.size for m in masks), 1)
        set_schedule(wrapper, schedules.FrozenSchedule(min(max(done, 0.0), 0.999999)))
    model.train_function = None


def prune_now(wrapper: Any, sparsity: float) -> None:
    """Prune ``wrapper``'s weights to ``sparsity`` with TFMOT's own magnitude rule.

    The new mask is multiplied by the old one, so pruned weights never regrow;
    pruned weights are then set to 0.  The wrapper is left frozen; call
    :func:`freeze_masks` before training a model traced with another schedule.
    """
    tfmot = import_tfmot()
    old = [np.array(m) for _, m, _ in wrapper.pruning_vars]
    if int(wrapper.pruning_step.numpy()) < 0:
        wrapper.pruning_step.assign(0)
    step = int(wrapper.pruning_step.numpy())
    once = tfmot.sparsity.keras.ConstantSparsity(sparsity, step, end_step=step, frequency=1)
    set_schedule(wrapper, once)
    try:
        wrapper.pruning_obj.conditional_mask_update()
    finally:
        set_schedule(wrapper, schedules.FrozenSchedule(sparsity))
    for (_, mask, _), before in zip(wrapper.pruning_vars, old):
        mask.assign(np.array(mask) * before)
    wrapper.pruning_obj.weight_mask_op()


def _rates(names, rate, output_rate, layer_rates):
    layer_rates = dict(layer_rates or {})
    unknown = set(layer_rates) - set(names)
    if unknown:
        raise ValueError(f"layer_rates names unknown wrappers {sorted(unknown)}; have {names}.")
    out = {n: rate for n in names}
    out[names[-1]] = output_rate if output_rate is not None else rate / 2
    out.update(layer_rates)
    return out


def find_ticket_tfmot(
    model: Any,
    data: Any,
    *,
    rounds: int = 5,
    rate: float = 0.2,
    output_rate: float | None = None,
    layer_rates: Mapping[str, float] | None = None,
    target_sparsity: float | None = None,
    one_shot: bool = False,
    epochs: int = 1,
    steps: int | None = None,
    batch_size: int = 60,
    validation_data: tuple | None = None,
    test_data: tuple | None = None,
    seed: int | None = None,
    callbacks: Sequence[Any] | None = None,
    verbose: int | str = 0,
    **fit_kwargs: Any,
) -> Any:
    """Iterative magnitude pruning with rewind on a TFMOT-wrapped tf_keras model.

    ``model`` is a compiled tf_keras model whose prunable layers are wrapped by
    ``tfmot.sparsity.keras.prune_low_magnitude`` (whatever schedule they were
    given is replaced: the search decides when to prune).  It is trained in
    place, ``rounds + 1`` times (once with ``one_shot``), and returned with
    the same :class:`~keras_lottery.records.record.LotteryRecord` as
    :func:`keras_lottery.find_ticket` as ``model.lottery``; masks are keyed by
    kernel name (``"dense/kernel"``).  The returned model keeps frozen masks,
    and ``tfmot.sparsity.keras.strip_pruning`` gives the plain sparse model.

    Rates are per wrapper (layer name of the wrapped layer, e.g. ``"dense"``):
    ``rate`` of the survivors per round, ``output_rate`` (default ``rate/2``)
    for the last wrapper, ``layer_rates`` overrides; or ``target_sparsity``.
    ``data`` is ``(x, y)`` arrays or a batched ``tf.data.Dataset``;
    ``epochs``/``steps`` give each round's length.
    """
    tfmot = import_tfmot()
    from tensorflow_model_optimization.python.core.keras.compat import keras as tfmot_keras

    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}.")
    if getattr(model, "optimizer", None) is None:
        raise ValueError("find_ticket_tfmot needs a compiled model: call model.compile first.")
    wrappers = pruning_wrappers(model)
    if not wrappers:
        raise NotPrunableError(
            "No PruneLowMagnitude layer found: wrap the model with "
            "tfmot.sparsity.keras.prune_low_magnitude first."
        )
    if any(w.sparsity_m_by_n for w in wrappers):
        raise NotPrunableError("m-by-n sparsity is not supported: TFMOT prunes it at step 1.")
    if target_sparsity is not None:
        rate = magnitude.per_round_rate(target_sparsity, rounds)
    names = [w.layer.name for w in wrappers]
    rates = _rates(names, rate, output_rate, layer_rates)
    n_prunes = 1 if one_shot else rounds
    config = {
        "method": "find_ticket_tfmot",
        "rounds": rounds,
        "rate": rate,
        "output_rate": output_rate,
        "layer_rates": dict(layer_rates or {}),
        "target_sparsity": target_sparsity,
        "one_shot": one_shot,
        "epochs": epochs,
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
    }

    # 1. θ0: everything but TFMOT's own variables, and the optimizer's state.
    internal = {id(w.pruning_step) for w in wrappers}
    internal |= {id(v) for w in wrappers for _, m, t in w.pruning_vars for v in (m, t)}
    state = [v for v in model.weights if id(v) not in internal]
    model.optimizer.build(model.trainable_variables)
    theta0 = [np.array(v) for v in state]
    optimizer0 = [np.array(v) for v in model.optimizer.variables]
    freeze_masks(model)
    for w in wrappers:
        w.pruning_obj.weight_mask_op()

    record = LotteryRecord(config=config)
    for r in range(n_prunes + 1):
        if r > 0:
            # 3. TFMOT prunes once; 4. the survivors go back to θ0.
            target_round = rounds if one_shot else r
            for w, name in zip(wrappers, names):
                n = sum(int(np.prod(k.shape)) for k, _, _ in w.pruning_vars)
                keep = magnitude.keep_count(n, rates[name], target_round)
                prune_now(w, 1.0 - keep / n)
            for var, value in zip(state, theta0):
                var.assign(value)
            for var, value in zip(model.optimizer.variables, optimizer0):
                var.assign(value)
            for w in wrappers:
                w.pruning_obj.weight_mask_op()
        # 2. Train with frozen masks.
        if seed is not None:
            tfmot_keras.utils.set_random_seed(seed + r)
        cbs = [tfmot.sparsity.keras.UpdatePruningStep(), *(callbacks or [])]
        args = (epochs, steps, batch_size, validation_data, test_data, seed, cbs, verbose)
        record.rounds.append(_train_round(model, data, r, *args, fit_kwargs))
    record.rewind_weights = {_name(v): value for v, value in zip(state, theta0)}
    model.lottery = record
    return model


def _train_round(
    model, data, r, epochs, steps, batch_size, validation_data, test_data, seed, cbs, verbose, kw
) -> RoundRecord:
    start = int(model.optimizer.iterations.numpy())
    kwargs = {"validation_data": validation_data, "callbacks": cbs, "verbose": verbose, **kw}
    t0 = time.perf_counter()
    if isinstance(data, tf.data.Dataset) or steps is not None:
        if isinstance(data, tf.data.Dataset):
            ds = data
        else:
            x, y = data
            ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
            ds = ds.batch(batch_size)
        if steps is not None:
            history = model.fit(ds.repeat(), epochs=1, steps_per_epoch=steps, **kwargs)
        else:
            history = model.fit(ds, epochs=epochs, **kwargs)
    else:
        x, y = data
        history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, **kwargs)
    seconds = time.perf_counter() - t0
    masks = tfmot_masks(model)
    size = sum(m.size for m in masks.values())
    rec = RoundRecord(
        round=r,
        sparsity=1.0 - sum(float(m.sum()) for m in masks.values()) / size,
        layer_sparsity={n: 1.0 - float(m.mean()) for n, m in masks.items()},
        iterations=int(model.optimizer.iterations.numpy()) - start,
        seconds=seconds,
        masks=masks,
    )
    logs = {k: v[-1] for k, v in history.history.items()}
    rec.train_loss = _metric(logs, "loss", "")
    rec.train_accuracy = _metric(logs, "acc", "")
    rec.val_loss = _metric(logs, "loss", "val_")
    rec.val_accuracy = _metric(logs, "acc", "val_")
    if test_data is not None:
        result = model.evaluate(*test_data, batch_size=1000, verbose=0, return_dict=True)
        rec.test_loss = _metric(result, "loss", "")
        rec.test_accuracy = _metric(result, "acc", "")
    return rec


def _metric(logs, key, prefix):
    for name, value in logs.items():
        if name.startswith(prefix) and (prefix or not name.startswith("val_")) and key in name:
            return float(value)
    return None


__all__ = [
    "find_ticket_tfmot",
    "freeze_masks",
    "prune_now",
    "pruning_wrappers",
    "set_schedule",
    "tfmot_masks",
]

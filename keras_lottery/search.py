"""``find_ticket``: iterative magnitude pruning with rewinding (Frankle & Carbin).

The loop, next to the paper's algorithm (arXiv:1803.03635, section 1)::

    1. Randomly initialize a neural network f(x; θ0)      -> snapshot θ0
    2. Train the network for j iterations, arriving at θj  -> _train()
    3. Prune p% of the parameters in θj, creating mask m   -> _next_masks()
    4. Reset the remaining parameters to θ0                -> _reset()
    repeat 2-4 for each round; train the final ticket m ⊙ θ0.

The controls of the paper are branches of steps 3 and 4 (``strategy``).
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_lottery import pruning
from keras_lottery.callbacks import (
    DivergenceGuard,
    EvaluationCurve,
    Evaluator,
    StopAtIteration,
    WeightSnapshot,
    chance_accuracy,
    check_divergence,
    current_iteration,
    loss_value,
    resolve_loss,
)
from keras_lottery.checkpoint import RunCheckpoint
from keras_lottery.convert import NotPrunableError, apply_masks, make_prunable, prunable_weights
from keras_lottery.data import Dataset, check_finite, load_dataset, shuffled_batches
from keras_lottery.distributed import is_chief
from keras_lottery.fingerprint import data_fingerprint, fingerprint
from keras_lottery.record import LotteryRecord, RoundRecord

#: What happens to the survivors after each pruning (step 4), and to the mask (step 3).
STRATEGIES = ("rewind", "reinit", "rearrange", "random_prune", "continue", "finetune")
SCOPES = ("layerwise", "global")
GRANULARITIES = ("weight", "unit")


def find_ticket(
    model: keras.Model,
    data: Any = None,
    *,
    rounds: int = 5,
    rate: float = 0.2,
    output_rate: float | None = None,
    layer_rates: Mapping[str, float] | None = None,
    target_sparsity: float | None = None,
    one_shot: bool = False,
    scope: str = "layerwise",
    strategy: str = "rewind",
    rewind_to: str | int = "init",
    granularity: str = "weight",
    unit_criterion: str = "product",
    gradual: Any = None,
    epochs: int = 1,
    steps: int | None = None,
    batch_size: int = 60,
    validation_data: tuple | None = None,
    validation_split: float | None = None,
    test_data: tuple | None = None,
    eval_every: int | None = None,
    seed: int | None = None,
    finetune_lr_scale: float = 0.1,
    data_dir: str | None = None,
    run_dir: str | os.PathLike | None = None,
    data_version: str | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    verbose: int | str = "auto",
    **fit_kwargs: Any,
) -> keras.Model:
    """Find a winning ticket in ``model`` and return it trained.

    ``model`` must be a compiled Sequential or functional Keras 3 model; it is
    not modified.  (A subclassed model built from ``keras_lottery.layers.Masked*``
    layers cannot be copied and is pruned in place.)  A mask-aware copy (same
    weights = θ0) is trained, pruned
    and rewound ``rounds`` times, then trained once more; that final sparse
    model is returned, with the search's :class:`LotteryRecord` as
    ``result.lottery``.

    Args:
        data: ``(x, y)`` arrays, a batched ``tf.data.Dataset`` of ``(x, y)``, a
            :class:`~keras_lottery.data.Dataset`, or a dataset name/path for
            :func:`~keras_lottery.data.load_dataset` (its test split becomes
            ``test_data``).  ``None`` uses the embedded offline MNIST sample.
        rounds: number of prunings (n).  Final sparsity is ``1 - (1-rate)**n``.
        rate: fraction of the *remaining* weights pruned per round (paper: 0.2).
        output_rate: rate of the output layer; default ``rate / 2`` (paper).
        layer_rates: per-layer rates by layer name, overriding the two above.
        target_sparsity: instead of ``rate``, prune ``1-(1-target)**(1/n)`` per
            round so the (non-output) layers end at this sparsity.
        one_shot: prune to the final sparsity in a single round (paper's one-shot).
        scope: ``"layerwise"`` (paper) or ``"global"`` (one threshold, open_lth).
        strategy: ``"rewind"`` (lottery ticket) or a control: ``"reinit"`` (same
            masks, fresh weights from the layers' initializers), ``"rearrange"``
            (same count per layer at random positions, θ0 values),
            ``"random_prune"`` (random masks, same sparsity), ``"continue"``
            (Han et al.: keep the trained weights), ``"finetune"`` (keep them and
            retrain at ``finetune_lr_scale`` times the learning rate).
        rewind_to: ``"init"`` (θ0) or an iteration k (late rewinding, Frankle et
            al. 2019): survivors are reset to their values after k iterations
            of the first round.
        granularity: ``"weight"`` or ``"unit"`` (whole hidden units of a chain of
            Dense layers, ranked by ``unit_criterion``: ``"input"``,
            ``"output"`` or ``"product"`` of weight magnitudes; 2018 XOR).
        gradual: a pruning schedule (any TFMOT ``PruningSchedule``, e.g.
            ``PolynomialDecay``, or a :class:`keras_lottery.schedules.GradualPruning`)
            that prunes *during* the first round's training; the survivors are
            then reset by ``strategy`` and retrained with the masks frozen
            ("gradual magnitude pruning + rewind").  Needs ``rounds=1``.
        epochs, steps: training length of every round (``steps`` wins if given).
        validation_data, validation_split: for the evaluation curve and the
            early-stopping iteration (minimum validation loss).
        test_data: ``(x, y)`` evaluated with the validation curve.
        eval_every: evaluate every this many iterations (default: each epoch).
        seed: makes data order, initializers and masks reproducible.
        run_dir: checkpoint every finished round there; calling again with the
            same options resumes after the last finished round (see
            :mod:`keras_lottery.checkpoint`); a ``run_dir`` holding another
            search (θ0, data or options differ) is refused.
        data_version: a name/version of a ``tf.data`` pipeline for the run's
            fingerprint (arrays are hashed; a pipeline cannot be).
        callbacks, verbose, **fit_kwargs: passed to every ``model.fit``.

    Optimizer and learning rate: every round starts from the optimizer's
    initial state (fresh moments, iteration counter 0), so learning-rate
    schedules restart each round; with ``rewind_to=k`` the counter restarts
    at k.  Every round trains for the full ``epochs``/``steps``.
    """
    config = {
        k: v
        for k, v in locals().items()
        if k not in ("model", "data", "validation_data", "test_data", "callbacks", "fit_kwargs")
    }
    config["run_dir"] = None if run_dir is None else str(run_dir)
    config["data"] = data if isinstance(data, str) or data is None else type(data).__name__
    if gradual is not None:
        config["gradual"] = _describe(gradual)
        if rounds != 1 or one_shot or strategy == "random_prune":
            raise ValueError(
                "gradual pruning happens inside the first round: use it with rounds=1, "
                "one_shot=False and a strategy other than 'random_prune'."
            )
    _check_options(config)
    _check_compiled(model)
    if target_sparsity is not None:
        rate = pruning.per_round_rate(target_sparsity, rounds)
    n_prunes = 1 if one_shot else rounds

    if seed is not None:
        keras.utils.set_random_seed(seed)
    data_seed = seed if seed is not None else int(np.random.default_rng().integers(2**31))
    train, validation_data, test_data = _resolve_data(
        data, validation_data, validation_split, test_data, data_dir
    )
    check_finite(train, steps)
    ticket = make_prunable(model)
    if ticket is not model:
        ticket.compile_from_config(model.get_compile_config())
    train = _check_data(ticket, train, "training data")
    validation_data = validation_data and _check_data(ticket, validation_data, "validation data")
    test_data = test_data and _check_data(ticket, test_data, "test data")

    weights = prunable_weights(ticket)
    rates = _layer_rates(weights, rate, output_rate, layer_rates, scope)
    if strategy == "finetune" and not _constant_lr(ticket.optimizer):
        raise ValueError(
            "strategy='finetune' scales the learning rate, which needs a constant "
            "learning rate; the optimizer uses a schedule."
        )
    if isinstance(rewind_to, int):
        total = _total_steps(train, epochs, steps, batch_size)
        if total is not None and rewind_to >= total:
            raise ValueError(
                f"rewind_to={rewind_to} is beyond the training length of {total} "
                "iterations per round; choose k < that (e.g. 0.1%-7% of training)."
            )

    # 1. θ0: the user's weights, and the optimizer's initial state.
    ticket.optimizer.build(ticket.trainable_variables)
    state = [v for v in ticket.weights if not any(v is w.mask for w in weights)]
    saved = {
        "theta0": [np.array(v) for v in state],
        "optimizer0": [np.array(v) for v in ticket.optimizer.variables],
    }
    saved["rewind"] = saved["theta0"]
    record = LotteryRecord(config=config)
    rng = np.random.default_rng(seed)
    training = _Training.create(
        train,
        epochs=epochs,
        steps=steps,
        batch_size=batch_size,
        seed=data_seed,
        validation=Evaluator(ticket, *validation_data) if validation_data is not None else None,
        test=Evaluator(ticket, *test_data) if test_data is not None else None,
        eval_every=eval_every,
        verbose=verbose,
        fit_kwargs=fit_kwargs,
    )
    start = 0
    checkpoint = None
    if run_dir is not None:
        splits = (train, validation_data, test_data)
        data_id = data_fingerprint(data, splits, data_version)
        checkpoint = RunCheckpoint(
            run_dir, config, fingerprint(saved["theta0"], data_id, config), writable=is_chief()
        )
    if checkpoint is not None:
        resumed = checkpoint.load(ticket, rng)
        if resumed is not None:
            last, record, saved = resumed
            start = last + 1

    for r in range(start, n_prunes + 1):
        if r > 0:
            # 3. Prune p% of the trained weights, creating the next masks.
            target_round = rounds if one_shot else r
            new_masks = _next_masks(
                weights,
                rates,
                target_round,
                scope,
                strategy,
                granularity,
                unit_criterion,
                rng,
                keep_current=gradual is not None,
            )
            for w in weights:
                w.mask.assign(new_masks[w.name])
            # 4. Reset the survivors (θ0, θk, fresh, or keep trained) and the optimizer.
            _reset(ticket, state, strategy, saved["rewind"], seed, r)
            _restore_optimizer(
                ticket.optimizer, saved["optimizer0"], rewind_to, strategy, finetune_lr_scale
            )
            apply_masks(ticket)
        # 2. Train the network, arriving at θj.
        if seed is not None:
            keras.utils.set_random_seed(seed + r)  # same stream whether resumed or not
        snapshot = None
        if r == 0 and isinstance(rewind_to, int) and rewind_to > 0:
            snapshot = WeightSnapshot(state, rewind_to)
        round_callbacks = [DivergenceGuard(r), *list(callbacks or [])]
        if r == 0 and gradual is not None:
            round_callbacks.insert(0, _gradual_callback(gradual, scope))
        record.rounds.append(_train(ticket, training, r, snapshot, round_callbacks))
        check_divergence(record.rounds, chance_accuracy(ticket))
        if snapshot is not None:
            if snapshot.values is None:
                raise ValueError(f"rewind_to={rewind_to} was never reached in round 0.")
            saved["rewind"] = snapshot.values
        record.rewind_weights = {v.path: val for v, val in zip(state, saved["rewind"])}
        if checkpoint is not None:
            checkpoint.save(r, ticket, record, saved, rng)
    if checkpoint is not None:
        checkpoint.close()

    ticket.lottery = record
    return ticket


# -- checks ---------------------------------------------------------------


def _check_options(c: dict[str, Any]) -> None:
    """Name every out-of-range or unknown option of ``find_ticket`` (before anything runs)."""
    rounds, rewind_to, steps, epochs = c["rounds"], c["rewind_to"], c["steps"], c["epochs"]
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}.")
    rates = [("rate", c["rate"]), ("output_rate", c["output_rate"])]
    rates += [(f"layer_rates[{k!r}]", v) for k, v in (c["layer_rates"] or {}).items()]
    for name, value in rates:
        if value is not None and (not isinstance(value, numbers.Real) or not 0.0 < value < 1.0):
            raise ValueError(f"{name} must be in (0, 1), got {value!r} (0.2 prunes 20% per round).")
    target = c["target_sparsity"]
    if target is not None and (not isinstance(target, numbers.Real) or not 0.0 < target < 1.0):
        raise ValueError(
            f"target_sparsity must be in (0, 1), got {c['target_sparsity']!r}: "
            "a sparsity of 1 would remove every weight."
        )
    for name, allowed in [
        ("scope", SCOPES),
        ("strategy", STRATEGIES),
        ("granularity", GRANULARITIES),
        ("unit_criterion", pruning.UNIT_CRITERIA),
    ]:
        if c[name] not in allowed:
            raise ValueError(f"Unknown {name} {c[name]!r}; choose one of {', '.join(allowed)}.")
    if not (rewind_to == "init" or (isinstance(rewind_to, int) and rewind_to >= 0)):
        raise ValueError(f"rewind_to must be 'init' or an iteration >= 0, got {rewind_to!r}.")
    if c["scope"] == "global" and (c["layer_rates"] or c["granularity"] == "unit"):
        raise ValueError(
            "scope='global' uses one threshold for all layers: it cannot be "
            "combined with layer_rates or granularity='unit'."
        )
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if steps is None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}.")
    for name in ("batch_size", "eval_every"):
        value = c[name]
        if (value is not None or name == "batch_size") and (
            not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    split = c["validation_split"]
    if split is not None and (not isinstance(split, numbers.Real) or not 0.0 < split < 1.0):
        raise ValueError(f"validation_split must be in (0, 1), got {split!r}.")
    if not c["finetune_lr_scale"] > 0:
        raise ValueError(f"finetune_lr_scale must be > 0, got {c['finetune_lr_scale']!r}.")


def _check_compiled(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"find_ticket needs a keras.Model, got {type(model).__name__}.")
    if getattr(model, "optimizer", None) is None or not model.compiled:
        raise ValueError(
            f"Model '{model.name}' is not compiled. Call model.compile(optimizer=..., "
            "loss=..., metrics=[...]) first: find_ticket trains with your optimizer and loss."
        )


def _constant_lr(optimizer) -> bool:
    return not isinstance(optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule)


def _layer_rates(weights, rate, output_rate, layer_rates, scope) -> dict[str, float]:
    """Rate per prunable kernel: ``rate``, half of it for the output layer, overrides."""
    layer_rates = dict(layer_rates or {})
    names = {w.layer.name for w in weights}
    unknown = set(layer_rates) - names
    if unknown:
        raise ValueError(
            f"layer_rates names unknown layers {sorted(unknown)}; "
            f"prunable layers are {sorted(names)}."
        )
    if scope == "global":
        return {w.name: rate for w in weights}
    output_layer = weights[-1].layer
    out = {}
    for w in weights:
        if w.layer.name in layer_rates:
            out[w.name] = layer_rates[w.layer.name]
        elif w.layer is output_layer:
            out[w.name] = output_rate if output_rate is not None else rate / 2
        else:
            out[w.name] = rate
    return out


# -- data -------------------------------------------------------------------


def _resolve_data(data, validation_data, validation_split, test_data, data_dir):
    if data is None or isinstance(data, str):
        data = load_dataset(data or "mnist-5k", data_dir=data_dir)
    if isinstance(data, Dataset):
        test_data = test_data or (data.x_test, data.y_test)
        data = (data.x_train, data.y_train)
    if isinstance(data, tf.data.Dataset):
        if validation_split is not None:
            raise ValueError(
                "validation_split needs (x, y) arrays; pass validation_data with a tf.data.Dataset."
            )
        return data, validation_data, test_data
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise TypeError(
            "data must be (x, y) arrays, a tf.data.Dataset, a keras_lottery.data.Dataset "
            f"or a dataset name; got {type(data).__name__}."
        )
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}.")
    if validation_split:
        n_val = int(round(len(x) * validation_split))
        validation_data = (x[-n_val:], y[-n_val:])
        x, y = x[:-n_val], y[:-n_val]
    return (x, y), validation_data, test_data


def _check_data(model, data, what):
    """Validate shapes, values and labels against the model; reshape flat images."""
    if isinstance(data, tf.data.Dataset):
        x, y = next(iter(data.take(1)))
        _check_arrays(model, np.asarray(x), np.asarray(y), what)
        return data
    x, y = np.asarray(data[0]), np.asarray(data[1])
    x = _fit_shape(model, x, what)
    _check_arrays(model, x, y, what)
    return x, y


def _fit_shape(model, x, what):
    if not getattr(model, "inputs", None):  # subclassed model: no declared input
        return x
    expected = tuple(model.inputs[0].shape[1:])
    got = x.shape[1:]
    if len(expected) == len(got) and all(e is None or e == g for e, g in zip(expected, got)):
        return x
    if None not in expected and math.prod(expected) == math.prod(got):
        return x.reshape((len(x), *expected))
    raise ValueError(
        f"The {what} has examples of shape {got}, but model '{model.name}' expects "
        f"inputs of shape {expected}. Reshape the data or change the model's Input."
    )


def _check_arrays(model, x, y, what):
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError(f"The {what} contains NaN or inf values; clean or impute it first.")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise ValueError(f"The {what} labels contain NaN or inf values.")
    try:
        y_pred = model(_fit_shape(model, x[:4], what), training=False)
    except ValueError:
        raise
    except Exception as e:
        raise ValueError(f"The model cannot run on the {what} (shape {x.shape[1:]}): {e}") from e
    n_out = y_pred.shape[-1]
    loss = model.loss if isinstance(model.loss, str) else type(model.loss).__name__
    loss_name = str(getattr(model.loss, "name", loss)).lower()
    if "sparse" in loss_name and np.issubdtype(y.dtype, np.integer):
        if y.min() < 0 or y.max() >= n_out:
            raise ValueError(
                f"The {what} labels range over [{y.min()}, {y.max()}], but the model has "
                f"{n_out} outputs: sparse categorical labels must be in [0, {n_out - 1}]."
            )
    try:
        value = loss_value(resolve_loss(model), y[:4], y_pred)
    except Exception as e:
        raise ValueError(
            f"The {what} labels (shape {y.shape[1:]}, dtype {y.dtype}) do not fit the "
            f"model's loss {loss!r} with outputs of shape {tuple(y_pred.shape[1:])}: {e}"
        ) from e
    if not np.isfinite(float(value)):
        raise ValueError(f"The loss on the {what} is not finite; check labels and loss.")


def _total_steps(train, epochs, steps, batch_size):
    if steps is not None:
        return steps
    if isinstance(train, tf.data.Dataset):
        n = int(train.cardinality())
        return n * epochs if n > 0 else None
    return math.ceil(len(train[0]) / batch_size) * epochs


# -- training -----------------------------------------------------------


@dataclass
class _Training:
    """How every round trains: one data stream and the same ``fit`` settings.

    The stream is built once per search, so every round sees the same batches
    in the same order, and a dataset of arrays is copied into TensorFlow once
    (not once per round).
    """

    data: tf.data.Dataset
    steps_per_epoch: int | None
    epochs: int
    stop_at: int | None
    validation: Evaluator | None
    test: Evaluator | None
    eval_every: int | None
    verbose: int | str
    fit_kwargs: dict[str, Any]

    @classmethod
    def create(cls, train, *, epochs, steps, batch_size, seed, eval_every, **settings):
        if isinstance(train, tf.data.Dataset):
            data, epoch_steps = (train.repeat() if steps is not None else train), None
        else:
            data = shuffled_batches(*train, batch_size, seed)
            epoch_steps = math.ceil(len(train[0]) / batch_size)
        if steps is not None:  # fit in chunks of eval_every, stopped at exactly `steps`
            per_epoch = min(steps, eval_every or steps)
            epoch_steps, epochs = per_epoch, math.ceil(steps / per_epoch)
        return cls(data, epoch_steps, epochs, steps, eval_every=eval_every, **settings)


def _train(ticket, training: _Training, r: int, snapshot, callbacks) -> RoundRecord:
    """Train one round and describe it."""
    # The evaluation curve runs first, so user callbacks see val_loss / val_accuracy.
    extra = []
    curve = None
    if training.validation is not None:
        curve = EvaluationCurve(training.validation, training.test, training.eval_every)
        extra.append(curve)
    extra += list(callbacks or [])
    if snapshot is not None:
        extra.insert(0, snapshot)
    if training.stop_at is not None:
        extra.append(StopAtIteration(training.stop_at))
    start_iter = current_iteration(ticket)
    t0 = time.perf_counter()
    fit_kwargs = {"shuffle": False, **training.fit_kwargs}  # the stream is shuffled already
    history = ticket.fit(
        training.data,
        epochs=training.epochs,
        steps_per_epoch=training.steps_per_epoch,
        callbacks=extra,
        verbose=training.verbose,
        **fit_kwargs,
    )
    seconds = time.perf_counter() - t0
    apply_masks(ticket)  # belt and braces: e.g. EMA weights swapped in at the end

    masks = {w.name: np.array(w.mask) for w in prunable_weights(ticket)}
    sizes = sum(m.size for m in masks.values())
    rec = RoundRecord(
        round=r,
        sparsity=1.0 - sum(float(m.sum()) for m in masks.values()) / sizes,
        layer_sparsity={n: 1.0 - float(m.mean()) for n, m in masks.items()},
        iterations=current_iteration(ticket) - start_iter,
        seconds=seconds,
        masks=masks,
    )
    logs = {k: v[-1] for k, v in history.history.items()}
    rec.train_loss = _metric(logs, "loss")
    rec.train_accuracy = _metric(logs, "acc")
    if curve is not None:
        final = curve.curve[-1]
        rec.curve = curve.curve
        rec.val_loss, rec.val_accuracy = final["val_loss"], final["val_accuracy"]
        rec.test_loss, rec.test_accuracy = final.get("test_loss"), final.get("test_accuracy")
        best = curve.early_stop()
        rec.early_stop_iteration = best["iteration"]
        rec.early_stop_val_loss = best["val_loss"]
        rec.early_stop_val_accuracy = best["val_accuracy"]
        rec.early_stop_test_accuracy = best.get("test_accuracy")
    elif training.test is not None:
        rec.test_loss, rec.test_accuracy = training.test()
    return rec


def _metric(logs, key):
    for name, value in logs.items():
        if not name.startswith("val_") and key in name:
            return float(value)
    return None


# -- pruning and resetting ----------------------------------------------


def _next_masks(
    weights, rates, target_round, scope, strategy, granularity, criterion, rng, keep_current=False
):
    """Step 3: the masks after ``target_round`` prunings, by the strategy's rule.

    ``keep_current``: the masks were already pruned during training (gradual
    pruning); only the strategy's transformation (rearrange) applies.
    """
    current = {w.name: np.array(w.mask) for w in weights}
    keep = {n: pruning.keep_count(m.size, rates[n], target_round) for n, m in current.items()}
    if keep_current:
        keep = {n: int(m.sum()) for n, m in current.items()}
        scope, granularity = "layerwise", "weight"
    if strategy == "random_prune":
        return pruning.random_prune(current, keep, rng)
    trained = {w.name: np.array(w.kernel) for w in weights}
    if granularity == "unit":
        masks = _unit_masks(weights, trained, current, rates, target_round, criterion)
    elif scope == "global":
        total = sum(m.size for m in current.values())
        rate = next(iter(rates.values()))
        masks = pruning.magnitude_global(
            trained, current, pruning.keep_count(total, rate, target_round)
        )
    else:
        masks = pruning.magnitude_layerwise(trained, current, keep)
    if strategy == "rearrange":
        masks = pruning.rearrange(masks, rng)
    return masks


def _unit_masks(weights, trained, current, rates, target_round, criterion):
    if not all(isinstance(w.layer, keras.layers.Dense) and w.kernel.ndim == 2 for w in weights):
        raise NotPrunableError(
            "granularity='unit' needs a chain of Dense layers (like the XOR net)."
        )
    names = [w.name for w in weights]
    keep_units = [
        pruning.keep_count(trained[n].shape[1], rates[n], target_round) for n in names[:-1]
    ]
    new = pruning.unit_masks(
        [trained[n] for n in names], [current[n] for n in names], keep_units, criterion
    )
    return dict(zip(names, new))


def _describe(obj) -> Any:
    """A JSON-ready description of a schedule or callback (for the run's config)."""
    inner = getattr(obj, "schedule", obj)
    config = getattr(inner, "get_config", None)
    return {"class": type(inner).__name__, **(config() if callable(config) else {})}


def _gradual_callback(gradual, scope):
    from keras_lottery.schedules import GradualPruning

    return gradual if isinstance(gradual, GradualPruning) else GradualPruning(gradual, scope=scope)


def _reseeded_clone(seed: int | None):
    """A clone function whose layers draw new initial values.

    Initializers built with a fixed ``seed`` (as Keras applications and our zoo
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

    def clone(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        return type(layer).from_config(reseed(layer.get_config()))

    return clone


def _reset(ticket, state, strategy, rewind_values, seed, r):
    """Step 4: set the (non-mask) weights for the next round."""
    if strategy in ("continue", "finetune"):
        return  # keep training the trained weights (Han et al.)
    if strategy == "reinit":
        round_seed = None if seed is None else seed + 7919 * (r + 1)
        if round_seed is not None:
            keras.utils.set_random_seed(round_seed)
        fresh = keras.models.clone_model(
            ticket, clone_function=_reseeded_clone(round_seed), recursive=True
        )
        masks = {id(w.mask) for w in prunable_weights(ticket)}
        fresh_masks = {id(w.mask) for w in prunable_weights(fresh)}
        values = [np.array(v) for v in fresh.weights if id(v) not in fresh_masks]
        assert len(values) == len([v for v in ticket.weights if id(v) not in masks])
        rewind_values = values
    for var, value in zip(state, rewind_values):
        var.assign(value)


def _restore_optimizer(optimizer, initial, rewind_to, strategy, lr_scale):
    for var, value in zip(optimizer.variables, initial):
        var.assign(value)
    if isinstance(rewind_to, int) and strategy == "rewind":
        optimizer.iterations.assign(rewind_to)
    if strategy == "finetune":
        optimizer.learning_rate = float(np.asarray(optimizer.learning_rate)) * lr_scale

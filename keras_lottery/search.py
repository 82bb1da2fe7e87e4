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

import contextlib
import fnmatch
import functools
import math
import numbers
import os
import random
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_lottery import pruning, structure
from keras_lottery.assign import Fills, assign
from keras_lottery.bitmasks import PackedMasks
from keras_lottery.callbacks import (
    DivergenceGuard,
    EvaluationCurve,
    Evaluator,
    StopAtIteration,
    WeightSnapshot,
    chance_accuracy,
    check_divergence,
    current_iteration,
)
from keras_lottery.checkpoint import RunCheckpoint
from keras_lottery.compact import effective_sparsity_or_none
from keras_lottery.convert import NotPrunableError, make_prunable, sparsity
from keras_lottery.coverage import REASONS
from keras_lottery.data import (
    Dataset,
    check_finite,
    load_dataset,
    numpy_batches,
    shuffled_batches,
)
from keras_lottery.distributed import is_chief
from keras_lottery.early_bird import EarlyBird, EarlyBirdStop
from keras_lottery.extras import is_tf_dataset
from keras_lottery.fingerprint import data_fingerprint, fingerprint
from keras_lottery.gradual import GradualPruning
from keras_lottery.memory import release_freed
from keras_lottery.options import GRANULARITIES, GROUPS, UNSET, Pruning, Reset, Training
from keras_lottery.options import SCOPES as SCOPES  # the choices, also as search.SCOPES
from keras_lottery.options import STRATEGIES as STRATEGIES
from keras_lottery.record import LotteryRecord, RoundRecord

#: Strategies whose next round starts from the trained weights (checkpointed each round).
_KEEP_TRAINED = ("continue", "finetune", "lr_rewind")


def find_ticket(
    model: keras.Model,
    data: Any = None,
    *,
    pruning: Pruning | None = None,
    reset: Reset | None = None,
    training: Training | None = None,
    early_bird: bool | EarlyBird | Mapping | None = None,
    rounds: int = UNSET,
    rate: float = UNSET,
    output_rate: float | None = UNSET,
    layer_rates: Mapping[str, float] | None = UNSET,
    target_sparsity: float | None = UNSET,
    one_shot: bool = UNSET,
    scope: str = UNSET,
    granularity: str = UNSET,
    unit_criterion: str = UNSET,
    strategy: str = UNSET,
    rewind_to: str | int = UNSET,
    finetune_lr_scale: float = UNSET,
    epochs: int = UNSET,
    steps: int | None = UNSET,
    batch_size: int = UNSET,
    eval_every: int | None = UNSET,
    seed: int | None = UNSET,
    include: Any = None,
    exclude: Any = None,
    gradual: Any = None,
    validation_data: tuple | None = None,
    validation_split: float | None = None,
    test_data: tuple | None = None,
    data_dir: str | None = None,
    run_dir: str | os.PathLike | None = None,
    data_version: str | None = None,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    verbose: int | str = "auto",
    **fit_kwargs: Any,
) -> keras.Model:
    """Find a winning ticket in ``model`` and return it trained.

    ``model`` is any compiled Keras 3 model (Sequential, functional,
    subclassed, keras-hub); its weights are θ0.  It is wrapped with masks
    (:func:`~keras_lottery.make_prunable`) and trained *in place*, like
    ``fit`` does: pass ``keras.models.clone_model(model)`` to keep it.  The
    wrapped model is trained, pruned and rewound ``rounds`` times, then trained
    once more; that final sparse model is returned (a
    :class:`~keras_lottery.MaskedModel`), with the search's
    :class:`LotteryRecord` as ``result.lottery``.

    The options come in three groups, each an object or its fields as
    keywords (``rounds=3, rate=0.3`` is ``pruning=Pruning(rounds=3, rate=0.3)``;
    giving an object and one of its keywords is an error):

    * ``pruning``: a :class:`~keras_lottery.Pruning` -- ``rounds``, ``rate``,
      ``output_rate``, ``layer_rates``, ``target_sparsity``, ``one_shot``,
      ``scope``, ``granularity``, ``unit_criterion``;
    * ``reset``: a :class:`~keras_lottery.Reset` -- ``strategy``,
      ``rewind_to``, ``finetune_lr_scale``;
    * ``training``: a :class:`~keras_lottery.Training` -- ``epochs``,
      ``steps``, ``batch_size``, ``eval_every``, ``seed``.

    Args:
        data: ``(x, y)`` arrays (``x``/``y`` may be dicts, lists or tuples of
            arrays for several inputs/outputs), a batched ``tf.data.Dataset`` of
            such ``(x, y)``, a ``keras.utils.PyDataset``, a
            :class:`~keras_lottery.data.Dataset`, or a dataset name/path for
            :func:`~keras_lottery.data.load_dataset` (its test split becomes
            ``test_data``).  ``None`` uses the embedded offline MNIST sample.
        early_bird: ``True`` or an :class:`~keras_lottery.EarlyBird`: stop each
            pruning round's training once the mask pruning would produce has
            settled (You et al. 2020); the final ticket trains for the full
            length.  Each round's record holds ``early_bird_iteration``,
            ``early_bird_reason`` and ``mask_distances``.
        include: which weights to prune instead of the default (every
            trainable weight matrix): globs over variable paths, compiled
            regexes or predicates (see :func:`keras_lottery.coverage`).
        exclude: weights not to prune, selected the same way.
        gradual: a pruning schedule (any TFMOT ``PruningSchedule``, e.g.
            ``PolynomialDecay``, or a :class:`keras_lottery.gradual.GradualPruning`)
            that prunes *during* the first round's training; the survivors are
            then reset by ``strategy`` and retrained with the masks frozen
            ("gradual magnitude pruning + rewind").  Needs ``rounds=1``.
        validation_data: ``(x, y)`` for the evaluation curve and the
            early-stopping iteration (minimum validation loss).
        validation_split: instead, hold out this last fraction of ``(x, y)``.
        test_data: ``(x, y)`` evaluated with the validation curve.
        data_dir: where :func:`~keras_lottery.data.load_dataset` finds a named dataset.
        run_dir: checkpoint every finished round there; calling again with the
            same options resumes after the last finished round (see
            :mod:`keras_lottery.checkpoint`); a ``run_dir`` holding another
            search (θ0, data or options differ) is refused.
        data_version: a name/version of a ``tf.data`` pipeline for the run's
            fingerprint (arrays are hashed; a pipeline cannot be).
        callbacks: Keras callbacks for every round's ``fit``.
        verbose: ``fit``'s verbosity.
        **fit_kwargs: passed to every ``model.fit``.

    Optimizer and learning rate: every round starts from the optimizer's
    initial state (fresh moments, iteration counter 0), so learning-rate
    schedules restart each round; with ``rewind_to=k`` the counter restarts
    at k.  Every round trains for the full ``epochs``/``steps``.
    """
    opts = _Search.of(locals())
    _check_compiled(model)
    p, reset, seed = opts.pruning, opts.reset, opts.training.seed
    ticket, splits, data_seed = _prepare(model, data, opts, validation_data, test_data, data_dir)
    weights = ticket.prunable_weights()
    rates = _layer_rates(ticket, opts.rate, p.output_rate, p.layer_rates, p.scope)
    _check_model(ticket, opts)
    trainer = _trainer(ticket, splits, opts.training, data_seed, verbose, fit_kwargs)
    _check_rewind_point(opts.reset, trainer)
    _check_steps_per_execution(ticket.steps_per_execution, trainer, opts)

    # 1. θ0: the user's weights (the one copy a search holds), and the optimizer's start.
    ticket.optimizer.build(ticket.trainable_variables)
    rows = ticket.coverage().rows  # every weight of the model, once, with a unique path
    state = [row.variable for row in rows]
    paths = [row.path for row in rows]
    theta0 = [np.array(v) for v in state]
    rewind = theta0  # θ0, or θk once round 0 reaches iteration k
    optimizer0 = _OptimizerStart(ticket.optimizer)
    record = LotteryRecord(config=opts.config)
    rng = np.random.default_rng(seed)
    start, next_masks, checkpoint = 0, None, None  # next_masks: made by the last pruning
    if run_dir is not None:
        checkpoint = RunCheckpoint(
            run_dir,
            opts.config,
            fingerprint(theta0, data_fingerprint(data, splits, data_version), opts.config),
            writable=is_chief(),
        )
        resumed = _resume(checkpoint, rng, ticket, state, optimizer0)
        if resumed is not None:
            start, record, next_masks, stored_rewind = resumed
            if stored_rewind is not None:
                rewind = stored_rewind
    if rewind is not theta0 and start > 0:
        theta0 = None  # stored in the run directory already; θk is the rewind point

    for r in range(start, p.prunings + 1):
        if r > 0:
            # 4. Reset the survivors (θ0, θk, fresh, or keep trained) and the optimizer,
            # and apply the masks the last pruning made.
            _start_round(ticket, state, rewind, optimizer0, next_masks, reset, seed, r)
        # 2. Train the network, arriving at θj.
        round_record, snapshot = _train_round(
            ticket, trainer, r, opts, state, weights, rates, callbacks
        )
        record.rounds.append(round_record)
        check_divergence(record.rounds, chance_accuracy(ticket))
        if snapshot is not None:
            if snapshot.values is None:
                raise ValueError(f"rewind_to={reset.rewind_to} was never reached in round 0.")
            rewind = snapshot.values
        record.rewind_weights = dict(zip(paths, rewind))
        # 3. Prune p% of the trained weights, creating the next round's masks.
        next_masks = None
        if r < p.prunings:
            next_masks = _prune(weights, rates, r, opts, rng)
        if checkpoint is not None:
            keep_weights = next_masks is None or reset.strategy in _KEEP_TRAINED
            checkpoint.save(
                r,
                record,
                rng,
                state=_stored_state(paths, theta0, rewind, optimizer0),
                next_masks=next_masks,
                weights=zip(paths, state) if keep_weights else None,
            )
        if rewind is not theta0:
            theta0 = None  # written with round 0; only the rewind point θk is needed now
    if checkpoint is not None:
        checkpoint.close()

    ticket.lottery = record
    return ticket


# -- options ----------------------------------------------------------------

#: The keys of a search's configuration (its record's ``config``), in order.
_CONFIG_KEYS = (
    "rounds",
    "rate",
    "output_rate",
    "layer_rates",
    "include",
    "exclude",
    "target_sparsity",
    "one_shot",
    "scope",
    "strategy",
    "rewind_to",
    "granularity",
    "unit_criterion",
    "gradual",
    "early_bird",
    "epochs",
    "steps",
    "batch_size",
    "validation_split",
    "eval_every",
    "seed",
    "finetune_lr_scale",
    "data_dir",
    "run_dir",
    "data_version",
    "verbose",
    "data",
)


@dataclass(frozen=True)
class _Search:
    """A search's checked options, and the configuration its record and checkpoints hold."""

    pruning: Pruning
    reset: Reset
    training: Training
    early_bird: EarlyBird | None
    gradual: Any
    include: Any
    exclude: Any
    validation_split: float | None
    config: dict[str, Any]

    @classmethod
    def of(cls, args: Mapping[str, Any]) -> _Search:
        """From ``find_ticket``'s arguments: the option objects or their flat keywords."""
        groups = {kw: group.gather(args[kw], args) for kw, group in GROUPS.items()}
        p, reset = groups["pruning"], groups["reset"]
        gradual, split = args["gradual"], args["validation_split"]
        random_prune = reset.strategy == "random_prune"
        if gradual is not None and (p.rounds != 1 or p.one_shot or random_prune):
            raise ValueError(
                "gradual pruning happens inside the first round: use it with rounds=1, "
                "one_shot=False and a strategy other than 'random_prune'."
            )
        eb = EarlyBird.of(args["early_bird"])
        if eb is not None and (random_prune or gradual is not None):
            raise ValueError(
                "early_bird watches the magnitude mask during training: it cannot be combined "
                "with strategy='random_prune' or gradual pruning."
            )
        if split is not None and (not isinstance(split, numbers.Real) or not 0.0 < split < 1.0):
            raise ValueError(f"validation_split must be in (0, 1), got {split!r}.")
        data, run_dir = args["data"], args["run_dir"]
        config = {
            **{k: v for group in groups.values() for k, v in group.to_dict().items()},
            "include": _describe_selector(args["include"]),
            "exclude": _describe_selector(args["exclude"]),
            "gradual": None if gradual is None else _describe(gradual),
            "early_bird": None if eb is None else eb.to_config(),
            "validation_split": split,
            "data_dir": args["data_dir"],
            "run_dir": None if run_dir is None else str(run_dir),
            "data_version": args["data_version"],
            "verbose": args["verbose"],
            "data": data if isinstance(data, str) or data is None else type(data).__name__,
        }
        config = {k: config[k] for k in _CONFIG_KEYS}
        return cls(
            **groups,
            early_bird=eb,
            gradual=gradual,
            include=args["include"],
            exclude=args["exclude"],
            validation_split=split,
            config=config,
        )

    @property
    def rate(self) -> float:
        """The rate of each pruning (from ``target_sparsity`` if it is given)."""
        p = self.pruning
        if p.target_sparsity is None:
            return p.rate
        return pruning.per_round_rate(p.target_sparsity, p.rounds)


def _prepare(model, data, opts: _Search, validation_data, test_data, data_dir):
    """Seed, load and check the data, and wrap ``model`` with masks.

    Returns the mask-aware model, the checked ``(train, validation, test)`` data
    and the seed of the data order.
    """
    seed = opts.training.seed
    if seed is not None:
        keras.utils.set_random_seed(seed)
    data_seed = seed if seed is not None else int(np.random.default_rng().integers(2**31))
    train, validation_data, test_data = _resolve_data(
        data, validation_data, opts.validation_split, test_data, data_dir
    )
    check_finite(train, opts.training.steps)
    _build(model, train)
    ticket = make_prunable(model, include=opts.include, exclude=opts.exclude)
    if ticket is not model:
        ticket.compile_from_config(model.get_compile_config())
    train = _check_data(ticket, train, "training data")
    validation_data = validation_data and _check_data(ticket, validation_data, "validation data")
    test_data = test_data and _check_data(ticket, test_data, "test data")
    return ticket, (train, validation_data, test_data), data_seed


def _check_model(ticket, opts: _Search) -> None:
    """Refuse options the model cannot follow; say which weights stay dense."""
    _warn_dense(ticket)
    if opts.reset.strategy == "finetune" and not _constant_lr(ticket.optimizer):
        raise ValueError(
            "strategy='finetune' scales the learning rate, which needs a constant "
            "learning rate; the optimizer uses a schedule."
        )


def _check_rewind_point(reset: Reset, training: _Training) -> None:
    """Refuse a rewind point k that a round never reaches."""
    total = training.total_steps
    if isinstance(reset.rewind_to, int) and total is not None and reset.rewind_to >= total:
        raise ValueError(
            f"rewind_to={reset.rewind_to} is beyond the training length of {total} "
            "iterations per round; choose k < that (e.g. 0.1%-7% of training)."
        )


def _trainer(ticket, splits, t: Training, data_seed, verbose, fit_kwargs) -> _Training:
    """How every round trains: the data stream, evaluations and ``fit`` settings."""
    train, validation_data, test_data = splits
    return _Training.create(
        train,
        epochs=t.epochs,
        steps=t.steps,
        batch_size=t.batch_size,
        seed=data_seed,
        validation=Evaluator(ticket, *validation_data) if validation_data is not None else None,
        test=Evaluator(ticket, *test_data) if test_data is not None else None,
        eval_every=t.eval_every,
        verbose=verbose,
        fit_kwargs=fit_kwargs,
    )


def _resume(checkpoint: RunCheckpoint, rng, ticket, state, optimizer0):
    """Load the last finished round of ``checkpoint`` into the search; ``None`` if there is none.

    Returns the round to start with, the record so far, the masks of that round
    and the stored rewind point θk (``None``: θ0).
    """
    resumed = checkpoint.load(rng)
    if resumed is None:
        return None
    # Stored in model order: this model's layer names may differ (Keras numbers them).
    names = [w.name for w in ticket.prunable_weights()]
    rewind = list(resumed.state["rewind"].values()) if resumed.state["rewind"] else None
    optimizer0.stored.update(resumed.state["optimizer0"])
    if resumed.weights is not None:  # kept-trained weights, or the finished ticket
        for var, value in zip(state, resumed.weights.values()):
            var.assign(value)
    last = resumed.next_masks or resumed.record.final.masks
    next_masks = PackedMasks(dict(zip(names, last.packed.values())))
    if resumed.next_masks is None:  # a finished search: the ticket's masks
        ticket.set_masks(next_masks)
    return resumed.round + 1, resumed.record, next_masks, rewind


def _train_round(ticket, trainer, r, opts: _Search, state, weights, rates, callbacks):
    """Step 2 of round ``r``: seed it, train it, describe it; and its θk snapshot (or None)."""
    seed, rewind_to = opts.training.seed, opts.reset.rewind_to
    release_freed()  # what set-up or the last reset freed, before training allocates
    if seed is not None:
        _seed_round(seed + r)  # same stream whether resumed or not
    snapshot = None
    if r == 0 and isinstance(rewind_to, int) and rewind_to > 0:
        snapshot = WeightSnapshot(state, rewind_to)
    round_callbacks = [DivergenceGuard(r), *list(callbacks or [])]
    if r == 0 and opts.gradual is not None:
        round_callbacks.insert(0, _gradual_callback(opts.gradual, opts.pruning.scope))
    early = None
    if opts.early_bird is not None and r < opts.pruning.prunings:  # not the final ticket
        early = _early_bird_callback(
            opts.early_bird,
            weights,
            rates,
            r,
            opts.pruning,
            trainer.total_steps,
            ticket.steps_per_execution,
        )
        round_callbacks.append(early)
    round_record = _train(ticket, trainer, r, snapshot, round_callbacks)
    if early is not None:
        round_record.early_bird_iteration = early.stopped_at
        round_record.mask_distances = early.distances
        round_record.early_bird_reason = early.reason
    return round_record, snapshot


def _prune(weights, rates, r, opts: _Search, rng) -> PackedMasks:
    """Step 3 after round ``r``: the masks of the next round, by the strategy's rule."""
    p = opts.pruning
    release_freed()  # the training step's temporaries
    masks = _next_masks(
        weights,
        rates,
        p.rounds_after(r),
        p.scope,
        opts.reset.strategy,
        p.granularity,
        p.unit_criterion,
        rng,
        keep_current=opts.gradual is not None,
    )
    return PackedMasks.pack(masks)


# -- checks ---------------------------------------------------------------


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


def _layer_rates(ticket, rate, output_rate, layer_rates, scope) -> dict[str, float]:
    """Rate per pruned weight: ``rate``, half of it for the output layer, overrides.

    ``layer_rates`` keys match a weight's path exactly, as a glob, or by the
    name of the layer holding it; a key that matches nothing is an error.
    """
    weights = ticket.prunable_weights()
    layer_rates = dict(layer_rates or {})
    matched = {key: [w for w in weights if _rate_key_matches(key, w)] for key in layer_rates}
    unknown = [k for k, hits in matched.items() if not hits]
    if unknown:
        raise ValueError(
            f"layer_rates names {unknown}, which match no pruned weight: use a weight "
            "path, a glob over paths or a layer name; the pruned weights are "
            f"{[w.name for w in weights]} (keras_lottery.coverage(model) lists all)."
        )
    if scope == "global":
        return {w.name: rate for w in weights}
    out = {}
    for w in weights:
        out[w.name] = output_rate if output_rate is not None and w.is_output else rate
        if w.is_output and output_rate is None:
            out[w.name] = rate / 2
        for key, hits in matched.items():  # later keys win, as in a dict update
            if w in hits:
                out[w.name] = layer_rates[key]
    return out


def _rate_key_matches(key: str, w) -> bool:
    return key == w.name or fnmatch.fnmatchcase(w.name, key) or key == w.layer.name


def _warn_dense(ticket) -> None:
    """Say once which weight matrices the search leaves dense, and why."""
    dense = ticket.coverage().dense_matrices
    if dense:
        listed = "; ".join(f"{r.path} ({REASONS[r.reason]})" for r in dense)
        warnings.warn(
            f"find_ticket leaves {len(dense)} weight matri{'x' if len(dense) == 1 else 'ces'} "
            f"of model '{ticket.model.name}' dense: {listed}. "
            "keras_lottery.coverage(model) prints the full table.",
            stacklevel=4,
        )


def _describe_selector(selector) -> Any:
    """A JSON-ready form of include/exclude for the run's configuration."""
    if selector is None or isinstance(selector, str):
        return selector
    items = [selector] if not isinstance(selector, list | tuple) else list(selector)
    return [
        s
        if isinstance(s, str)
        else f"re:{s.pattern}"
        if hasattr(s, "pattern")
        else f"callable:{getattr(s, '__qualname__', type(s).__name__)}"
        for s in items
    ]


def _build(model, train) -> None:
    """Build a subclassed model that has no variables yet by calling it on one example."""
    if not isinstance(model, keras.Model) or (model.built and model.weights):
        return
    if is_tf_dataset(train):
        x = next(iter(train.take(1)))[0]
    elif isinstance(train, keras.utils.PyDataset):
        x = train[0][0]
    else:
        x = structure.take(train[0], slice(0, 1))
    model(x, training=False)


# -- data -------------------------------------------------------------------


def _resolve_data(data, validation_data, validation_split, test_data, data_dir):
    if data is None or isinstance(data, str):
        data = load_dataset(data or "mnist-5k", data_dir=data_dir)
    if isinstance(data, Dataset):
        test_data = test_data or (data.x_test, data.y_test)
        data = (data.x_train, data.y_train)
    if is_tf_dataset(data) or isinstance(data, keras.utils.PyDataset):
        if validation_split is not None:
            raise ValueError(
                "validation_split needs (x, y) arrays; pass validation_data with a "
                f"{type(data).__name__}."
            )
        return data, validation_data, test_data
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise TypeError(
            "data must be (x, y) arrays (x and y may be dicts/lists of arrays), a "
            "tf.data.Dataset, a keras.utils.PyDataset, a keras_lottery.data.Dataset or a "
            f"dataset name; got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, tuple | list) else "")
            + "."
        )
    x, y = structure.as_arrays(data[0]), structure.as_arrays(data[1])
    n = structure.num_examples(x, y)
    if validation_split:
        n_val = int(round(n * validation_split))
        validation_data = (
            structure.take(x, slice(n - n_val, n)),
            structure.take(y, slice(n - n_val, n)),
        )
        x, y = structure.take(x, slice(0, n - n_val)), structure.take(y, slice(0, n - n_val))
    return (x, y), validation_data, test_data


def _check_data(model, data, what):
    """Validate structure, shapes, values and labels against the model (before training)."""
    if is_tf_dataset(data) or isinstance(data, keras.utils.PyDataset):
        # Check the first batch; the stream itself is used as it is.
        batch = next(iter(data.take(1))) if is_tf_dataset(data) else data[0]
        if not (isinstance(batch, tuple | list) and len(batch) in (2, 3)):
            raise ValueError(
                f"The {what} (a {type(data).__name__}) must give (x, y) or "
                f"(x, y, sample_weight) batches; its first batch is a {type(batch).__name__}."
            )
        x, y = keras.tree.map_structure(np.asarray, tuple(batch[:2]))
        _check_arrays(model, structure.check_structure(model, x, what), y, what)
        return data
    x, y = structure.as_arrays(data[0]), structure.as_arrays(data[1])
    structure.num_examples(x, y)
    x = structure.check_structure(model, x, what)
    _check_arrays(model, x, y, what)
    return x, y


def _check_arrays(model, x, y, what):
    for name, tree in (("", x), (" labels", y)):
        for leaf in structure.leaves(tree):
            if np.issubdtype(leaf.dtype, np.floating) and not np.isfinite(leaf).all():
                raise ValueError(f"The {what}{name} contain NaN or inf values; clean them first.")
    x4, y4 = structure.take(x, slice(0, 4)), structure.take(y, slice(0, 4))
    try:
        y_pred = model(x4, training=False)
    except ValueError:
        raise
    except Exception as e:
        shapes = keras.tree.map_structure(lambda a: tuple(a.shape[1:]), x)
        raise ValueError(f"The model cannot run on the {what} (shapes {shapes}): {e}") from e
    structure.check_outputs(model, y, y_pred, what)
    if not isinstance(y_pred, dict | list | tuple):
        _check_labels(model, y, y_pred, what)
    try:
        value = model.compute_loss(x=x4, y=y4, y_pred=y_pred, training=False)
    except Exception as e:
        shapes = keras.tree.map_structure(lambda a: (tuple(a.shape[1:]), str(a.dtype)), y)
        outs = keras.tree.map_structure(lambda a: tuple(a.shape[1:]), y_pred)
        raise ValueError(
            f"The {what} labels (shape, dtype {shapes}) do not fit the model's loss "
            f"{_loss_name(model)!r} with outputs of shape {outs}: {e}"
        ) from e
    if not np.isfinite(float(keras.ops.convert_to_numpy(value))):
        raise ValueError(f"The loss on the {what} is not finite; check labels and loss.")


def _loss_name(model) -> str:
    loss = model.loss
    return loss if isinstance(loss, str) else type(loss).__name__


def _check_labels(model, y, y_pred, what):
    """Sparse categorical labels within the number of outputs."""
    n_out = y_pred.shape[-1]
    loss_name = str(getattr(model.loss, "name", _loss_name(model))).lower()
    y = np.asarray(y)
    if "sparse" in loss_name and np.issubdtype(y.dtype, np.integer):
        if y.min() < 0 or y.max() >= n_out:
            raise ValueError(
                f"The {what} labels range over [{y.min()}, {y.max()}], but the model has "
                f"{n_out} outputs: sparse categorical labels must be in [0, {n_out - 1}]."
            )


def _total_steps(train, epochs, steps, batch_size):
    if steps is not None:
        return steps
    if is_tf_dataset(train):
        n = int(train.cardinality())
        return n * epochs if n > 0 else None
    if isinstance(train, keras.utils.PyDataset):
        n = train.num_batches
        return n * epochs if n else None
    return math.ceil(structure.num_examples(*train) / batch_size) * epochs


# -- training -----------------------------------------------------------


@dataclass
class _Training:
    """How every round trains: one data stream and the same ``fit`` settings.

    The stream is built once per search, so every round sees the same batches
    in the same order, and a dataset of arrays is copied into TensorFlow once
    (not once per round).
    """

    data: Any  # a tf.data.Dataset, a keras.utils.PyDataset or a batch generator factory
    steps_per_epoch: int | None
    epochs: int
    stop_at: int | None
    total_steps: int | None  # iterations of a whole round, if known
    validation: Evaluator | None
    test: Evaluator | None
    eval_every: int | None
    verbose: int | str
    fit_kwargs: dict[str, Any]

    @classmethod
    def create(cls, train, *, epochs, steps, batch_size, seed, eval_every, **settings):
        total = _total_steps(train, epochs, steps, batch_size)
        if is_tf_dataset(train):
            data, epoch_steps = (train.repeat() if steps is not None else train), None
        elif isinstance(train, keras.utils.PyDataset):
            data, epoch_steps = train, None
        elif keras.backend.backend() == "tensorflow":
            data = shuffled_batches(*train, batch_size, seed)
            epoch_steps = math.ceil(structure.num_examples(*train) / batch_size)
        else:  # the same batches as NumPy: no per-step tf.data conversion on JAX/PyTorch
            data = functools.partial(numpy_batches, *train, batch_size, seed)
            epoch_steps = math.ceil(structure.num_examples(*train) / batch_size)
        stop_at = None
        if steps is not None:  # fit in chunks of eval_every, stopped at exactly `steps`
            per_epoch = min(steps, eval_every or steps)
            epoch_steps, epochs = per_epoch, math.ceil(steps / per_epoch)
            # A step-counting callback costs a host sync per step: only when chunks overshoot.
            stop_at = steps if steps % per_epoch else None
        return cls(data, epoch_steps, epochs, stop_at, total, eval_every=eval_every, **settings)

    def stream(self):
        """What one round's ``fit`` reads: the dataset, or a fresh generator of it."""
        return self.data() if callable(self.data) else self.data


def _check_steps_per_execution(spe: int, training: _Training, opts: _Search) -> None:
    """Every iteration the search acts on must end a compiled call of ``spe`` steps.

    Keras calls back once per ``spe`` steps and, on an endless stream, runs whole
    calls: an epoch of ``steps_per_epoch`` not divisible by ``spe`` would train
    longer than asked, and θk or an early-bird check would land late.
    """
    if spe == 1:
        return
    steps, rewind_to, eb = opts.training.steps, opts.reset.rewind_to, opts.early_bird
    counts = {
        "the iterations per fit epoch (eval_every, or one pass over the data)": (
            training.steps_per_epoch
        ),
        "steps": steps,
        "rewind_to": rewind_to if isinstance(rewind_to, int) else None,
        "the early-bird check_every": None if eb is None else eb.check_every,
    }
    for what, n in counts.items():
        if n and n % spe:
            raise ValueError(
                f"steps_per_execution={spe} (from the model's compile()) must divide {what}, "
                f"which is {n}: Keras runs whole calls of {spe} steps. Use a multiple of {spe} "
                f"there, or compile with a steps_per_execution that divides {n}."
            )


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
    # After round 0, _start_round's set_masks has just zeroed the pruned weights.
    zeroed = ticket._zeroed_already() if r > 0 else contextlib.nullcontext()
    with zeroed:
        history = ticket.fit(
            training.stream(),
            epochs=training.epochs,
            steps_per_epoch=training.steps_per_epoch,
            callbacks=extra,
            verbose=training.verbose,
            **fit_kwargs,
        )
    seconds = time.perf_counter() - t0
    moved = ticket.apply_masks()
    if moved:
        warnings.warn(
            f"Round {r}: {moved} pruned weights were not 0 after training and were set back "
            "to 0. Pruned weights get zero gradient, so only an optimizer that changes "
            "weights without gradients (EMA weights, custom updates) moves them.",
            stacklevel=2,
        )
    masks = PackedMasks.pack({w.name: w.mask for w in ticket.prunable_weights()})
    every = sparsity(ticket)
    rec = RoundRecord(
        round=r,
        sparsity=every.pop("overall"),
        layer_sparsity=every,
        iterations=current_iteration(ticket) - start_iter,
        seconds=seconds,
        masks=masks,
    )
    effective = effective_sparsity_or_none(ticket)
    rec.effective_sparsity = None if effective is None else effective["overall"]
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
    if keep_current:
        scope, granularity = "layerwise", "weight"
    n_m = _n_m(granularity)
    if scope == "layerwise" and granularity == "weight" and strategy != "random_prune":
        # The default rule reads one weight at a time: no copy of the whole model.
        masks = {}
        for w in weights:
            mask = np.asarray(w.mask)
            k = int(mask.sum()) if keep_current else _keep(w, rates, target_round)
            new = pruning.top_k(_magnitudes(w.kernel), mask, k)
            masks.update(PackedMasks.pack({w.name: new}).packed)
        masks = PackedMasks(masks)
        return pruning.rearrange(masks, rng) if strategy == "rearrange" else masks
    current = {w.name: np.array(w.mask) for w in weights}
    keep = {n: pruning.keep_count(m.size, rates[n], target_round) for n, m in current.items()}
    if keep_current:
        keep = {n: int(m.sum()) for n, m in current.items()}
    if strategy == "random_prune" and granularity == "weight":
        return pruning.random_prune(current, keep, rng)
    trained = {w.name: np.array(w.kernel) for w in weights}
    if strategy == "random_prune":  # random units / random N:M groups
        trained = {n: rng.random(v.shape) for n, v in trained.items()}
    if n_m is not None:
        masks = {
            w.name: pruning.n_m_mask(trained[w.name], current[w.name], *n_m)
            if _n_m_axis_ok(w)
            else current[w.name]
            for w in weights
        }
    elif granularity == "unit":
        masks = _unit_masks(weights, trained, current, rates, target_round, criterion)
    elif scope == "global":
        total = sum(m.size for m in current.values())
        rate = next(iter(rates.values()))
        masks = pruning.magnitude_global(
            trained, current, pruning.keep_count(total, rate, target_round)
        )
    else:
        masks = pruning.magnitude_layerwise(trained, current, keep)
    if strategy == "rearrange" and granularity == "unit":
        masks = _rearrange_units(weights, masks, rng)
    elif strategy == "rearrange":
        masks = pruning.rearrange(masks, rng)
    return masks


def _magnitudes(variable) -> np.ndarray:
    """``|w|`` on the host, in place when the host copy is our own (one copy, not two)."""
    values = np.asarray(variable)  # TensorFlow: a fresh copy; JAX: may be a read-only view
    if values.flags.owndata and values.flags.writeable:
        return np.abs(values, out=values)
    return np.abs(values)


def _keep(w, rates, target_round) -> int:
    return pruning.keep_count(int(np.prod(w.kernel.shape)), rates[w.name], target_round)


def _early_bird_callback(eb, weights, rates, r, p: Pruning, total, spe=1) -> EarlyBirdStop:
    """Watch the mask round ``r``'s pruning would make (magnitude rule, before any control).

    Checked every ``eb.check_every`` iterations, by default 20 times per round
    of ``total`` iterations (each epoch if ``total`` is unknown), rounded up to
    whole calls of ``spe`` steps.
    """

    def predict():
        args = (p.scope, "rewind", p.granularity, p.unit_criterion, None)
        return _next_masks(weights, rates, p.rounds_after(r), *args)

    alive = {w.name: np.array(w.mask) for w in weights}
    every = eb.check_every or (None if total is None else spe * max(1, -(-(total // 20) // spe)))
    return EarlyBirdStop(eb, predict, alive, every, total)


def _unit_masks(weights, trained, current, rates, target_round, criterion):
    dense = all(isinstance(w.layer, keras.layers.Dense) and w.kernel.ndim == 2 for w in weights)
    if not dense or criterion not in pruning.UNIT_CRITERIA:
        return _filter_masks(weights, trained, current, rates, target_round, criterion)
    names = [w.name for w in weights]
    keep_units = [
        pruning.keep_count(trained[n].shape[1], rates[n], target_round) for n in names[:-1]
    ]
    new = pruning.unit_masks(
        [trained[n] for n in names], [current[n] for n in names], keep_units, criterion
    )
    return dict(zip(names, new))


def _unit_axis(w) -> int | None:
    """The axis of ``w``'s kernel that holds its units (Dense columns, conv filters)."""
    layer, ndim = w.layer, w.kernel.ndim
    if getattr(layer, "kernel", None) is not w.kernel:
        return None
    if isinstance(layer, keras.layers.DepthwiseConv1D | keras.layers.DepthwiseConv2D):
        return ndim - 2
    transposed = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose)
    if isinstance(layer, transposed + (keras.layers.Conv3DTranspose,)):
        return None
    if isinstance(layer, keras.layers.Dense) and ndim == 2:
        return 1
    if "Conv" in type(layer).__name__ and ndim >= 3:
        return ndim - 1
    return None


def _outgoing(weights, i, trained, current, units) -> np.ndarray | None:
    """L1 of each unit's weights in the next weight (in model order) that it feeds."""
    if i + 1 >= len(weights):
        return None
    nxt = weights[i + 1]
    w = np.abs(trained[nxt.name] * current[nxt.name])
    if nxt.kernel.ndim == 2 and w.shape[0] % units == 0:  # Dense, maybe after a Flatten
        return w.sum(axis=1).reshape(-1, units).sum(axis=0)
    if nxt.kernel.ndim >= 3 and w.shape[-2] == units:  # conv or depthwise: input channels
        return np.moveaxis(w, -2, -1).reshape(-1, units).sum(axis=0)
    return None


def _filter_masks(weights, trained, current, rates, target_round, criterion):
    """Whole units of any Dense/Conv layer: Dense columns, conv filters, depthwise channels.

    Units are ranked by their filter's magnitude (``"l1"``/``"input"``, ``"l2"``)
    or also by their weights in the next layer (``"output"``, ``"product"``).
    A removed unit's filter is masked; its outgoing weights then carry a
    constant, which :func:`keras_lottery.compact` folds away.  The output layer
    keeps all its units.
    """
    masks = {n: m.copy() for n, m in current.items()}
    done = 0
    for i, w in enumerate(weights):
        axis = _unit_axis(w)
        if w.is_output or axis is None:
            continue
        units = trained[w.name].shape[axis]
        outgoing = None
        if criterion in ("output", "product"):
            outgoing = _outgoing(weights, i, trained, current, units)
        try:
            scores = pruning.filter_scores(
                trained[w.name], current[w.name], axis, criterion, outgoing
            )
        except ValueError as e:
            raise NotPrunableError(f"granularity='unit' on '{w.name}': {e}") from None
        k = pruning.keep_count(units, rates[w.name], target_round)
        kept = pruning.keep_units(current[w.name], axis, scores, k)
        shape = [1] * trained[w.name].ndim
        shape[axis] = units
        masks[w.name] = masks[w.name] * kept.reshape(shape).astype(masks[w.name].dtype)
        done += 1
    if not done:
        raise NotPrunableError(
            "granularity='unit' found no Dense or convolution kernel to prune by units "
            "(the output layer keeps its units); use granularity='weight'."
        )
    return masks


def _rearrange_units(weights, masks, rng):
    """The unit-level rearrange control: the same number of units, at random positions."""
    out = dict(masks)
    for w in weights:
        axis = _unit_axis(w)
        if w.is_output or axis is None:
            continue
        perm = rng.permutation(masks[w.name].shape[axis])
        out[w.name] = np.take(masks[w.name], perm, axis=axis)
    return out


def _n_m(granularity: str) -> tuple[int, int] | None:
    """``(n, m)`` for an N:M granularity such as ``"2:4"``; ``None`` for weight/unit."""
    if granularity in GRANULARITIES:
        return None
    parts = str(granularity).split(":")
    if len(parts) == 2 and all(p.isdigit() for p in parts) and 0 < int(parts[0]) < int(parts[1]):
        return int(parts[0]), int(parts[1])
    raise ValueError(
        f"Unknown granularity {granularity!r}; choose one of {', '.join(GRANULARITIES)} or "
        "an N:M pattern such as '2:4' (keep N of every M consecutive inputs)."
    )


def _n_m_axis_ok(w) -> bool:
    """N:M groups run along the input axis: Dense and (non-depthwise) conv kernels."""
    axis = _unit_axis(w)
    return axis is not None and axis == w.kernel.ndim - 1


def _describe(obj) -> Any:
    """A JSON-ready description of a schedule or callback (for the run's config)."""
    inner = getattr(obj, "schedule", obj)
    config = getattr(inner, "get_config", None)
    return {"class": type(inner).__name__, **(config() if callable(config) else {})}


def _gradual_callback(gradual, scope):
    return gradual if isinstance(gradual, GradualPruning) else GradualPruning(gradual, scope=scope)


def _reseeded(config: Any, seed: int | None) -> Any:
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


def _fresh_values(model: keras.Model, seed: int | None) -> list:
    """New initial values for every weight of ``model`` (the reinit control).

    The model is rebuilt from its config with reseeded initializers, which
    works for every model Keras can save (functional graphs with raw
    operations, subclassed models with ``get_config``, keras-hub).
    """
    try:
        fresh = type(model).from_config(_reseeded(model.get_config(), seed))
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


def _seed_round(seed: int) -> None:
    """Seed Python, NumPy and Keras's random generator as ``keras.utils.set_random_seed``.

    On TensorFlow it leaves TF's global seed (set once per search) alone: setting
    it clears TensorFlow's kernel caches, so the next call of the already traced
    train step re-optimises its whole graph (10-30 s a round for ResNet50 here).
    Keras's random ops and the search's data streams take no seed from it.
    """
    if keras.backend.backend() != "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    try:
        from keras.src.backend.common import global_state
        from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
        from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    except ImportError:  # another Keras layout: the public call, caches and all
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def _start_round(ticket, state, rewind, optimizer0, masks, reset: Reset, seed, r) -> None:
    """Step 4 before round ``r``: reset the weights and the optimizer, apply ``masks``.

    Pruned weights, and their optimizer state unless it restarts at zeros, are
    set to exactly 0.  Each phase's per-weight temporaries are handed back to
    the system before the next phase allocates (:mod:`keras_lottery.memory`).
    """
    _reset(ticket, state, reset.strategy, rewind, seed, r)
    release_freed()
    optimizer0.restore(ticket.optimizer, reset.rewind_to, reset.strategy, reset.finetune_lr_scale)
    release_freed()
    ticket.set_masks(masks, optimizer_state=not optimizer0.zeros)


def _reset(ticket, state, strategy, rewind_values, seed, r):
    """Step 4: set the (non-mask) weights for the next round."""
    if strategy in _KEEP_TRAINED:
        return  # keep training the trained weights (Han et al.)
    if strategy == "reinit":
        round_seed = None if seed is None else seed + 7919 * (r + 1)
        if round_seed is not None:
            _seed_round(round_seed)
        rewind_values = _fresh_values(ticket.model, round_seed)
        assert len(rewind_values) == len(state)
    for var, value in zip(state, rewind_values):
        assign(var, value)


class _OptimizerStart:
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


def _stored_state(paths, theta0, rewind, optimizer0) -> dict[str, dict[str, Any]]:
    """What ``state.npz`` holds: θ0, θk if it differs, an optimizer start not re-creatable."""
    state: dict[str, dict[str, Any]] = {"optimizer0": optimizer0.stored}
    if theta0 is not None:
        state["theta0"] = dict(zip(paths, theta0))
    if rewind is not theta0:
        state["rewind"] = dict(zip(paths, rewind))
    return state

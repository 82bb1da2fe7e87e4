"""``find_ticket``: iterative magnitude pruning with rewinding (Frankle & Carbin).

The loop, next to the paper's algorithm (arXiv:1803.03635, section 1); each
step's rules live in the module named on its right::

    1. Randomly initialize a neural network f(x; θ0)      -> snapshot θ0 (below)
    2. Train the network for j iterations, arriving at θj  -> training.train_round()
    3. Prune p% of the parameters in θj, creating mask m   -> masking.prune_round()
    4. Reset the remaining parameters to θ0                -> reset.start_round()
    repeat 2-4 for each round; train the final ticket m ⊙ θ0.

Before round 0 the data and the model are checked (:mod:`~keras_lottery.search.checks`);
after each pruning the round is committed to the run directory, from which a
search resumes (:mod:`~keras_lottery.search.resume`).  The controls of the paper are
branches of steps 3 and 4 (``strategy``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_lottery.callbacks import chance_accuracy, check_divergence
from keras_lottery.criteria.early_bird import EarlyBird
from keras_lottery.data.datasets import check_finite
from keras_lottery.data.distributed import is_chief
from keras_lottery.data.splits import resolve_splits
from keras_lottery.data.structure import build_on_data
from keras_lottery.masks.convert import make_prunable
from keras_lottery.options import GRANULARITIES as GRANULARITIES  # the choices, also here
from keras_lottery.options import SCOPES as SCOPES
from keras_lottery.options import STRATEGIES as STRATEGIES
from keras_lottery.options import UNSET, Pruning, Reset, Training
from keras_lottery.records.checkpoint import RunCheckpoint
from keras_lottery.records.cost import Cost, ImpBaseline, Ledger
from keras_lottery.records.fingerprint import data_fingerprint, fingerprint
from keras_lottery.records.record import LotteryRecord
from keras_lottery.search.checks import (
    check_compiled,
    check_data,
    check_model,
)
from keras_lottery.search.masking import prune_round, rates_per_layer
from keras_lottery.search.options import SearchOptions
from keras_lottery.search.reset import KEEP_TRAINED, OptimizerStart, start_round
from keras_lottery.search.resume import resume_run, stored_state
from keras_lottery.search.training import (
    check_rewind_point,
    check_steps_per_execution,
    make_trainer,
    train_round,
)
from keras_lottery.seeding import set_random_seed


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
            :class:`~keras_lottery.data.datasets.Dataset`, or a dataset name/path for
            :func:`~keras_lottery.data.datasets.load_dataset` (its test split becomes
            ``test_data``).  ``None`` uses the embedded offline MNIST sample.
        early_bird: ``True`` or an :class:`~keras_lottery.EarlyBird`: stop each
            pruning round's training once the mask pruning would produce has
            settled (You et al. 2020); the final ticket trains for the full
            length.  Each round's record holds ``early_bird_iteration``,
            ``early_bird_reason`` and ``mask_distances``.
        include: which weights to prune instead of the default (every
            trainable weight matrix): globs over variable paths, compiled
            regexes or predicates (see :func:`keras_lottery.masks.coverage`).
        exclude: weights not to prune, selected the same way.
        gradual: a pruning schedule (any TFMOT ``PruningSchedule``, e.g.
            ``PolynomialDecay``, or a :class:`keras_lottery.criteria.gradual.GradualPruning`)
            that prunes *during* the first round's training; the survivors are
            then reset by ``strategy`` and retrained with the masks frozen
            ("gradual magnitude pruning + rewind").  Needs ``rounds=1``.
        validation_data: ``(x, y)`` for the evaluation curve and the
            early-stopping iteration (minimum validation loss).
        validation_split: instead, hold out this last fraction of ``(x, y)``.
        test_data: ``(x, y)`` evaluated with the validation curve.
        data_dir: where :func:`~keras_lottery.data.datasets.load_dataset` finds a named dataset.
        run_dir: checkpoint every finished round there; calling again with the
            same options resumes after the last finished round (see
            :mod:`keras_lottery.records.checkpoint`); a ``run_dir`` holding another
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
    started = time.perf_counter()
    opts = SearchOptions.of(locals())
    check_compiled(model)
    p, reset, seed = opts.pruning, opts.reset, opts.training.seed
    ticket, splits, data_seed = _prepare(model, data, opts, validation_data, test_data, data_dir)
    weights = ticket.prunable_weights()
    rates = rates_per_layer(ticket, opts.rate, p.output_rate, p.layer_rates, p.scope)
    check_model(ticket, opts)
    trainer = make_trainer(ticket, splits, opts.training, data_seed, verbose, fit_kwargs)
    check_rewind_point(opts.reset, trainer)
    check_steps_per_execution(ticket.steps_per_execution, trainer, opts)

    # 1. θ0: the user's weights (the one copy a search holds), and the optimizer's start.
    ticket.optimizer.build(ticket.trainable_variables)
    rows = ticket.coverage().rows  # every weight of the model, once, with a unique path
    state = [row.variable for row in rows]
    paths = [row.path for row in rows]
    theta0 = [np.array(v) for v in state]
    rewind = theta0  # θ0, or θk once round 0 reaches iteration k
    optimizer0 = OptimizerStart(ticket.optimizer)
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
        resumed = resume_run(checkpoint, rng, ticket, state, optimizer0)
        if resumed is not None:
            start, record, next_masks, stored_rewind = resumed
            if stored_rewind is not None:
                rewind = stored_rewind
    if rewind is not theta0 and start > 0:
        theta0 = None  # stored in the run directory already; θk is the rewind point
    # The cost: the stored one of a resumed search, else this search's (after a pruning
    # at init, what that cost).
    if record.cost is None:  # a new search, or one resumed from a record before the ledger
        record.cost = search_cost(opts, model, record.rounds)
    ledger = Ledger(record.cost, started=started)
    ledger.add("setup", time.perf_counter() - started)

    for r in range(start, p.prunings + 1):
        before = dict(ledger.cost.outside)
        if r > 0:
            # 4. Reset the survivors (θ0, θk, fresh, or keep trained) and the optimizer,
            # and apply the masks the last pruning made.
            with ledger.outside("reset"):
                start_round(ticket, state, rewind, optimizer0, next_masks, reset, seed, r)
        # 2. Train the network, arriving at θj.
        round_record, snapshot = train_round(
            ticket, trainer, r, opts, state, weights, rates, callbacks, ledger
        )
        record.rounds.append(round_record)
        with ledger.outside("records"):
            check_divergence(record.rounds, chance_accuracy(ticket))
        if snapshot is not None:
            if snapshot.values is None:
                raise ValueError(f"rewind_to={reset.rewind_to} was never reached in round 0.")
            rewind = snapshot.values
        record.rewind_weights = dict(zip(paths, rewind))
        # 3. Prune p% of the trained weights, creating the next round's masks.
        next_masks = None
        if r < p.prunings:
            with ledger.outside("masks"):
                next_masks = prune_round(weights, rates, r, opts, rng, model=ticket.model)
        round_record.outside = _since(before, ledger.cost.outside)
        if r > start and "compile" in round_record.outside:  # known once a warm call ran
            compiled = record.rounds[start].outside
            compiled["compile"] = round_record.outside.pop("compile")
        # Commit the round: its record, the next masks and the weights the next round keeps.
        if checkpoint is not None:
            keep_weights = next_masks is None or reset.strategy in KEEP_TRAINED
            ledger.sync()
            with ledger.outside("checkpoint"):
                checkpoint.save(
                    r,
                    record,
                    rng,
                    state=stored_state(paths, theta0, rewind, optimizer0),
                    next_masks=next_masks,
                    weights=zip(paths, state) if keep_weights else None,
                )
            round_record.outside["checkpoint"] = ledger.cost.outside["checkpoint"] - before.get(
                "checkpoint", 0.0
            )
        if rewind is not theta0:
            theta0 = None  # written with round 0; only the rewind point θk is needed now
    if checkpoint is not None:
        checkpoint.close()

    ledger.close()
    ticket.lottery = record
    return ticket


def search_cost(opts: SearchOptions, model: keras.Model, done=()) -> Cost:
    """The cost a search starts from, named by its method, with IMP to compare it to.

    IMP's baseline prunes at the search's rate to the sparsity it asks for
    (``1 - (1 - rate) ** rounds``), or to the sparsity of a pruning at init
    if that is higher.  A model pruned at init brings that pruning's cost;
    rounds ``done`` (resumed from a record without a cost) bring their
    training as their records tell it (their wall outside ``fit`` is unknown).
    """
    p = opts.pruning
    method = "imp"
    if opts.gradual is not None:
        method = "gradual"
    elif opts.early_bird is not None:
        method = "early_bird"
    elif p.one_shot:
        method = "one_shot"
    asked = 1.0 - (1.0 - opts.rate) ** p.rounds
    at_init = getattr(model, "at_init", None)
    cost = Cost(method=method)
    if isinstance(at_init, dict) and isinstance(at_init.get("cost"), Cost):
        cost = Cost.from_dict(at_init["cost"].to_dict())
        cost.method = f"{cost.method}+{method}"
        asked = max(asked, at_init["sparsity"])
    cost.imp = ImpBaseline(sparsity=asked, rate=opts.rate)
    for rd in done:
        cost.iterations += rd.iterations
        cost.examples = None  # unknown for the rounds done
        cost.seconds += rd.seconds
        cost.training_seconds += rd.seconds
        cost.trainings += 1
    return cost


def _since(before: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    """Wall time booked per place since ``before`` (places with none left out)."""
    return {
        k: v - before.get(k, 0.0) for k, v in now.items() if k != "other" and v > before.get(k, 0.0)
    }


def _prepare(model, data, opts: SearchOptions, validation_data, test_data, data_dir):
    """Seed, load and check the data, and wrap ``model`` with masks.

    Returns the mask-aware model, the checked ``(train, validation, test)`` data
    and the seed of the data order.
    """
    seed = opts.training.seed
    if seed is not None:
        set_random_seed(seed)
    data_seed = seed if seed is not None else int(np.random.default_rng().integers(2**31))
    train, validation_data, test_data = resolve_splits(
        data, validation_data, opts.validation_split, test_data, data_dir
    )
    check_finite(train, opts.training.steps)
    build_on_data(model, train)
    ticket = make_prunable(model, include=opts.include, exclude=opts.exclude)
    if ticket is not model:
        ticket.compile_from_config(model.get_compile_config())
    train = check_data(ticket, train, "training data")
    validation_data = validation_data and check_data(ticket, validation_data, "validation data")
    test_data = test_data and check_data(ticket, test_data, "test data")
    return ticket, (train, validation_data, test_data), data_seed

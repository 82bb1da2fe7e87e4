"""Step 2 of the search: train the network for j iterations, arriving at θj.

Every round trains the same way: one data stream, built once per search (the
same batches in the same order each round), the same ``fit`` settings and
length, and callbacks for the θk snapshot, the evaluation curve, divergence,
gradual pruning and early-bird.  A round ends with its
:class:`~keras_lottery.RoundRecord`.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import keras

from keras_lottery.callbacks import (
    CallClock,
    DivergenceGuard,
    EvaluationCurve,
    Evaluator,
    StopAtIteration,
    WeightSnapshot,
    current_iteration,
)
from keras_lottery.compact.compaction import effective_sparsity_or_none
from keras_lottery.criteria.gradual import GradualPruning
from keras_lottery.data import structure
from keras_lottery.data.datasets import array_batches
from keras_lottery.extras import is_tf_dataset
from keras_lottery.masks.bitmasks import PackedMasks
from keras_lottery.masks.convert import sparsity
from keras_lottery.options import Reset, Training
from keras_lottery.records.cost import Ledger
from keras_lottery.records.record import RoundRecord
from keras_lottery.search.masking import early_bird_callback
from keras_lottery.search.memory import release_freed
from keras_lottery.search.options import SearchOptions
from keras_lottery.seeding import seed_round


def train_round(
    ticket, trainer, r, opts: SearchOptions, state, weights, rates, callbacks, ledger: Ledger
):
    """Step 2 of round ``r``: seed it, train it, describe it; and its θk snapshot (or None).

    The round's training, and the wall time around it by place, go into ``ledger``.
    """
    seed, rewind_to = opts.training.seed, opts.reset.rewind_to
    release_freed()  # what set-up or the last reset freed, before training allocates
    if seed is not None:
        seed_round(seed + r)  # same stream whether resumed or not
    snapshot = None
    if r == 0 and isinstance(rewind_to, int) and rewind_to > 0:
        snapshot = WeightSnapshot(state, rewind_to)
    round_callbacks = [DivergenceGuard(r), *list(callbacks or [])]
    if r == 0 and opts.gradual is not None:
        round_callbacks.insert(0, _gradual_callback(opts.gradual, opts.pruning.scope))
    early = None
    if opts.early_bird is not None and r < opts.pruning.prunings:  # not the final ticket
        early = early_bird_callback(
            opts.early_bird,
            weights,
            rates,
            r,
            opts.pruning,
            trainer.total_steps,
            ticket.steps_per_execution,
            model=ticket.model,
        )
        early.predict = ledger.timed("masks", early.predict)
        round_callbacks.append(early)
    final = r == opts.pruning.prunings
    round_record = _train(ticket, trainer, r, snapshot, round_callbacks, ledger, final)
    if early is not None:
        round_record.early_bird_iteration = early.stopped_at
        round_record.mask_distances = early.distances
        round_record.early_bird_reason = early.reason
    return round_record, snapshot


def _gradual_callback(gradual, scope):
    return gradual if isinstance(gradual, GradualPruning) else GradualPruning(gradual, scope=scope)


def _train(
    ticket, training: _Training, r: int, snapshot, callbacks, ledger: Ledger, final: bool
) -> RoundRecord:
    """Train one round and describe it."""
    clock = CallClock()
    extra: list[keras.callbacks.Callback] = [clock]
    # The evaluation curve runs first, so user callbacks see val_loss / val_accuracy.
    curve = None
    if training.validation is not None:
        curve = EvaluationCurve(
            ledger.timed("evaluation", training.validation),
            training.test and ledger.timed("evaluation", training.test),
            training.eval_every,
        )
        extra.append(curve)
    extra += list(callbacks or [])
    if snapshot is not None:
        extra.insert(0, snapshot)
    if training.stop_at is not None:
        extra.append(StopAtIteration(training.stop_at))
    start_iter = current_iteration(ticket)
    compiles = ticket.train_function is None  # this fit traces and compiles the step
    booked = ledger.cost.outside_seconds
    t0 = time.perf_counter()
    fit_kwargs = {"shuffle": False, **training.fit_kwargs}  # the stream is shuffled already
    # After round 0, start_round's set_masks has just zeroed the pruned weights.
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
    iterations = current_iteration(ticket) - start_iter
    inside = ledger.cost.outside_seconds - booked  # evaluations, early-bird checks
    ledger.trained(iterations, training.examples(iterations), seconds - inside, final=final)
    training.compile_time.fit_ended(clock.calls, compiles, ledger)
    with ledger.outside("reset"):
        moved = ticket.apply_masks()
    with ledger.outside("records"):
        rec = _describe(ticket, r, iterations, seconds, history, curve, moved)
    if curve is None and training.test is not None:
        with ledger.outside("evaluation"):
            rec.test_loss, rec.test_accuracy = training.test()
    return rec


def _describe(ticket, r, iterations, seconds, history, curve, moved) -> RoundRecord:
    """The round's record: masks, sparsity, metrics (``moved``: pruned weights set back to 0)."""
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
        iterations=iterations,
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
    return rec


def _metric(logs, key):
    for name, value in logs.items():
        if not name.startswith("val_") and key in name:
            return float(value)
    return None


def make_trainer(ticket, splits, t: Training, data_seed, verbose, fit_kwargs) -> _Training:
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


@dataclass
class _Training:
    """How every round trains: one data stream and the same ``fit`` settings.

    The stream is built once per search, so every round sees the same batches
    in the same order, and a dataset of arrays is copied into TensorFlow once
    (not once per round).
    """

    data: Any  # a tf.data.Dataset, a keras.utils.PyDataset or array_batches' factory
    steps_per_epoch: int | None
    epochs: int
    stop_at: int | None
    total_steps: int | None  # iterations of a whole round, if known
    validation: Evaluator | None
    test: Evaluator | None
    eval_every: int | None
    verbose: int | str
    fit_kwargs: dict[str, Any]
    #: ``(examples per pass, batch size)``; a pipeline's pass is unknown (``None``), and
    #: so may be its batch size
    pass_shape: tuple[int | None, int | None] = (None, None)
    compile_time: CompileTime = field(default_factory=lambda: CompileTime())

    @classmethod
    def create(cls, train, *, epochs, steps, batch_size, seed, eval_every, **settings):
        total = _total_steps(train, epochs, steps, batch_size)
        if is_tf_dataset(train):
            data, epoch_steps = (train.repeat() if steps is not None else train), None
            first = keras.tree.flatten(train.element_spec)[0]
            settings["pass_shape"] = (None, first.shape[0] if first.shape.rank else None)
        elif isinstance(train, keras.utils.PyDataset):
            data, epoch_steps = train, None
            settings["pass_shape"] = (None, getattr(train, "batch_size", None))
        else:  # arrays: one stream for the whole search, the same batches on every backend
            data = array_batches(*train, batch_size, seed)
            n = structure.num_examples(*train)
            epoch_steps = math.ceil(n / batch_size)
            settings["pass_shape"] = (n, batch_size)
        stop_at = None
        if steps is not None:  # fit in chunks of eval_every, stopped at exactly `steps`
            per_epoch = min(steps, eval_every or steps)
            epoch_steps, epochs = per_epoch, math.ceil(steps / per_epoch)
            # A step-counting callback costs a host sync per step: only when chunks overshoot.
            stop_at = steps if steps % per_epoch else None
        return cls(data, epoch_steps, epochs, stop_at, total, eval_every=eval_every, **settings)

    def stream(self):
        """What one round's ``fit`` reads: the dataset, or what the batch factory gives."""
        return self.data() if callable(self.data) else self.data

    def examples(self, iterations: int) -> int | None:
        """Examples read by the first ``iterations`` batches of the stream (``None``: unknown).

        Over arrays exactly (a pass ends with its one short batch); over a
        pipeline ``iterations`` times its batch size, where that is known.
        """
        n, batch = self.pass_shape
        if batch is None:
            return None
        if n is None:
            return iterations * int(batch)
        full, rest = divmod(iterations, math.ceil(n / batch))
        return full * n + rest * batch


class CompileTime:
    """Books the first training call's time beyond a warm call as ``compile`` (once).

    The fit that traces and compiles the training step gives its first call;
    the median of every other call measured (that fit's later calls, then the
    next fits') is a warm one.
    """

    def __init__(self):
        self.first: float | None = None
        self.warm: list[float] = []
        self.booked = False

    def fit_ended(self, calls: list[float], compiled: bool, ledger: Ledger) -> None:
        if self.booked:
            return
        if compiled and calls:
            self.first, calls = calls[0], calls[1:]
        self.warm += calls
        if self.first is not None and self.warm:
            ledger.compiled(self.first - statistics.median(self.warm))
            self.booked = True


def check_rewind_point(reset: Reset, training: _Training) -> None:
    """Refuse a rewind point k that a round never reaches."""
    total = training.total_steps
    if isinstance(reset.rewind_to, int) and total is not None and reset.rewind_to >= total:
        raise ValueError(
            f"rewind_to={reset.rewind_to} is beyond the training length of {total} "
            "iterations per round; choose k < that (e.g. 0.1%-7% of training)."
        )


def check_steps_per_execution(spe: int, training: _Training, opts: SearchOptions) -> None:
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

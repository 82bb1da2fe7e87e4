"""``method="learned"``: learn which weights to keep in one training, then train the ticket.

IMP finds its masks by pruning the smallest trained weights a little at a
time, one full training per round (16 trainings to 3.6% of LeNet-300-100 at
20% a round).  Here the masks are learned in *one* training instead (the
mask phase, round 0 of the search):

1. every pruned weight ``w`` gets a trainable score ``s``, and the network
   computes with ``w * mask * g``, ``g = sigmoid(beta * (s - tau))``
   (:mod:`keras_lottery.criteria.gates`): ``tau`` keeps a share of the scores
   above it that ramps from all of them to the asked count, and ``beta``
   anneals from 1 to 200, so each gate ends at 0 or 1;
2. weights and scores train together with the model's own optimizer, loss and
   data stream, for ``mask_phase`` trainings (default 1; 0.5 to 4);
3. the masks keep exactly the highest scores: per layer the count IMP's
   ``rounds`` prunings would keep (``scope="global"``: that total over all
   layers), so a learned ticket and an IMP ticket of the same options have the
   same size layer by layer;
4. the search goes on as after any pruning: the survivors are reset by
   ``strategy`` (θ0 for the ticket, or the controls ``reinit``,
   ``rearrange``, ``random_prune``) and the ticket trains once, in full.

Why this member of the family.  It is the annealed sigmoid gate of
Continuous Sparsification (Savarese et al., NeurIPS 2020), which trains the
weights with the gates, with the gate's threshold placed at the asked sparsity
instead of CS's L1 penalty: the mask lands on the sparsity asked without
searching a penalty, which is what a one-argument fast path needs.  Scores
learned on weights held at θ0 (GEM-MINER, edge-popup) choose a mask for the
untrained weights, not for what training makes of them; in a prototype on
LeNet-300-100 at 3.6% of the weights such tickets trailed those of gates
trained with the weights by points, so that variant is not offered.  Results:
experiments/README.md, section 9.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np

from keras_lottery.callbacks import DivergenceGuard, StopAtIteration, WeightSnapshot
from keras_lottery.criteria import gates
from keras_lottery.criteria.magnitude import keep_count
from keras_lottery.masks.bitmasks import PackedMasks
from keras_lottery.masks.convert import sparsity
from keras_lottery.records.record import RoundRecord
from keras_lottery.search.memory import release_freed
from keras_lottery.search.options import SearchOptions
from keras_lottery.seeding import seed_round


class GatedModel(keras.Model):
    """A mask-aware model whose pruned weights are multiplied by learned gates.

    Holds one trainable score per weight of ``weights`` and a step counter;
    calling it calls the wrapped model with ``weight * mask * gate`` in place
    of every pruned weight.  The gates follow :func:`gates.schedule` over
    ``steps`` training steps.

    Args:
        ticket: the :class:`~keras_lottery.MaskedModel` (used in place).
        weights: its pruned weights to gate.
        final_sparsity: ``{path: sparsity}`` (per layer) or one float (one
            threshold over all layers).
        steps: the length of the mask phase, in training steps.
    """

    def __init__(self, ticket, weights, final_sparsity, steps: int, **kwargs):
        super().__init__(name=f"gated_{ticket.name}", **kwargs)
        self.ticket = ticket
        object.__setattr__(self, "_gated", list(weights))
        object.__setattr__(self, "_final", final_sparsity)
        self.total = float(steps)
        self.scores = []
        for i, w in enumerate(weights):
            alive = np.asarray(w.mask)
            score = self.add_weight(
                name=f"score_{i}", shape=tuple(w.kernel.shape), initializer="zeros"
            )
            score.assign(gates.initial_scores(np.asarray(w.kernel), alive))
            self.scores.append(score)
        self.step = self.add_weight(
            name="gate_step", shape=(), initializer="zeros", trainable=False
        )
        self.built = True

    def gates(self) -> dict:
        """``{path: gate}`` at the current step."""
        progress = self.step / self.total
        if isinstance(self._final, dict):
            out = {}
            for w, s in zip(self._gated, self.scores):
                share, beta = gates.schedule(progress, self._final[w.name])
                out[w.name] = gates.gate(s, gates.threshold([s], 1.0 - share), beta)
            return out
        share, beta = gates.schedule(progress, self._final)
        tau = gates.threshold(self.scores, 1.0 - share)
        return {w.name: gates.gate(s, tau, beta) for w, s in zip(self._gated, self.scores)}

    def call(self, inputs, training=None):
        factors = self.gates()
        if training:
            self.step.assign(self.step + 1.0)
        with self.ticket.masks_applied(factors=factors):
            return self.ticket.model(inputs, training=training)

    def prunable_weights(self):
        """The wrapped ticket's pruned weights (for callbacks that inspect them)."""
        return self.ticket.prunable_weights()

    def learned_scores(self) -> dict[str, np.ndarray]:
        """``{path: scores}`` on the host."""
        return {w.name: np.array(s) for w, s in zip(self._gated, self.scores)}


def keep_counts(weights, rates, opts: SearchOptions) -> int | dict[str, int]:
    """What the masks keep: per weight IMP's count after ``rounds`` prunings (global: the total)."""
    p = opts.pruning
    if p.scope == "global":
        total = sum(int(np.prod(w.kernel.shape)) for w in weights)
        return keep_count(total, next(iter(rates.values())), p.rounds)
    return {
        w.name: keep_count(int(np.prod(w.kernel.shape)), rates[w.name], p.rounds) for w in weights
    }


def learn_round(ticket, trainer, opts: SearchOptions, state, weights, rates, callbacks, ledger):
    """Round 0 of ``method="learned"``: train weights and gates; the record, θk snapshot, scores.

    The scores (``{path: array}``) rank the weights for the pruning that
    follows (:func:`keras_lottery.search.masking.prune_round`).  The phase is
    one training in ``ledger`` (its wall time includes tracing the gated step).
    """
    total = trainer.total_steps
    if total is None:
        raise ValueError(
            "method='learned' anneals its gates over a known number of steps, and the length "
            "of this training data is unknown: pass steps=N."
        )
    seed, rewind_to = opts.training.seed, opts.reset.rewind_to
    release_freed()
    if seed is not None:
        seed_round(seed)
    steps = max(1, int(round(opts.pruning.mask_phase * total)))
    keep = keep_counts(weights, rates, opts)
    if isinstance(keep, dict):
        final = {
            w.name: gates.final_sparsity(keep[w.name], int(np.prod(w.kernel.shape)))
            for w in weights
        }
    else:
        final = gates.final_sparsity(keep, sum(int(np.prod(w.kernel.shape)) for w in weights))
    gated = GatedModel(ticket, weights, final, steps)
    gated.compile_from_config(ticket.get_compile_config())

    snapshot = None
    extra = [DivergenceGuard(0), *list(callbacks or [])]
    if isinstance(rewind_to, int) and rewind_to > 0:
        snapshot = WeightSnapshot(state, rewind_to)
        extra.insert(0, snapshot)
    epochs = trainer.epochs
    if steps > total:  # a phase longer than one training: more passes over the same stream
        epochs = math.ceil(trainer.epochs * steps / total)
    if steps != total or trainer.stop_at is not None:
        extra.append(StopAtIteration(steps))
    t0 = time.perf_counter()
    history = gated.fit(
        trainer.stream(),
        epochs=epochs,
        steps_per_epoch=trainer.steps_per_epoch,
        callbacks=extra,
        verbose=trainer.verbose,
        **{"shuffle": False, **trainer.fit_kwargs},
    )
    seconds = time.perf_counter() - t0
    iterations = int(np.asarray(gated.optimizer.iterations))
    ledger.trained(iterations, trainer.examples(iterations), seconds)
    with ledger.outside("masks"):
        scores = gated.learned_scores()
        del gated
        release_freed()
    every = sparsity(ticket)
    logs = {k: v[-1] for k, v in history.history.items()}
    record = RoundRecord(
        round=0,
        sparsity=every.pop("overall"),
        layer_sparsity=every,
        iterations=iterations,
        seconds=seconds,
        masks=PackedMasks.pack({w.name: w.mask for w in weights}),
        train_loss=_float(logs.get("loss")),
        train_accuracy=_float(next((v for k, v in logs.items() if "acc" in k), None)),
    )
    return record, snapshot, scores


def _float(value):
    return None if value is None else float(value)

"""Data-efficient IMP: pruning rounds that train on a chosen subset of the examples.

With ``prune_subset=f`` the rounds between the first and the last train on a
fraction ``f`` of the training examples, for the same number of epochs, so each
costs about ``f`` of a training; round 0 (the dense network, which makes the
first choice) and the ticket's final training use all the data.

Which examples (``subset_rule``):

* ``"critical"``: after each pruning, the examples the *pruned* network gets
  most wrong -- the highest loss of the trained weights under the new masks.
  Zhang et al. (ICML 2021, "Efficient lottery ticket finding: less data is
  more") build their pruning-aware critical set from the examples that pruning
  makes the network forget or that it finds hard; the loss of the just-pruned
  network measures both at once, with one pass of inference over the data
  and nothing to track during training;
* ``"random"``: a uniform random subset (the control).

The chosen examples of each round are stored in its record
(``RoundRecord.next_subset``), so a resumed search trains on the same ones.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from keras import ops

from keras_lottery.callbacks import labels_like, resolve_loss
from keras_lottery.data import structure
from keras_lottery.extras import is_tf_dataset


def check_data(train, opts) -> None:
    """Refuse data a subset cannot be taken of, and a rule the model cannot be scored by."""
    if opts.training.prune_subset is None:
        return
    if is_tf_dataset(train) or not isinstance(train, tuple):
        raise ValueError(
            "prune_subset picks training examples by index: pass the training data as (x, y) "
            f"arrays, not a {type(train).__name__}."
        )


def subset_size(n: int, fraction: float) -> int:
    """Examples in a subset of ``fraction`` of ``n`` (at least 1)."""
    return max(1, int(round(n * fraction)))


def subset_training(training, fraction: float):
    """The :class:`~keras_lottery.options.Training` of a subset round: ``steps`` scaled.

    Given in epochs, a round over the subset is already ``fraction`` as long; given
    in ``steps``, it trains ``round(steps * fraction)`` of them.
    """
    if training.steps is None:
        return training
    return dataclasses.replace(training, steps=max(1, int(round(training.steps * fraction))))


def select(ticket, train, next_masks, fraction: float, rule: str, seed) -> list[int]:
    """The indices (sorted) of the examples the next pruning round trains on.

    ``seed`` (an int or a sequence of them) seeds the random rule.
    """
    x, y = train
    n = structure.num_examples(x, y)
    k = subset_size(n, fraction)
    if rule == "random":
        chosen = np.random.default_rng(seed).choice(n, size=k, replace=False)
        return sorted(int(i) for i in chosen)
    losses = pruned_losses(ticket, x, y, next_masks)
    # The k highest losses; ties to the lower index (a stable order).
    order = np.argsort(-losses, kind="stable")[:k]
    return sorted(int(i) for i in order)


def pruned_losses(ticket, x, y, masks, batch_size: int = 1000) -> np.ndarray:
    """Per-example loss of the trained weights under ``masks`` (not yet applied)."""
    try:
        loss = resolve_loss(ticket)
    except ValueError as e:
        raise ValueError(
            f"subset_rule='critical' ranks examples by their loss: {e} Use subset_rule='random'."
        ) from None
    per_example = getattr(loss, "call", loss)  # a Loss object's unreduced form
    factors = {name: ops.convert_to_tensor(np.asarray(m), "float32") for name, m in masks.items()}
    n = structure.num_examples(x, y)
    out = []
    with ticket.masks_applied(factors=factors):
        for start in range(0, n, batch_size):
            index = slice(start, start + batch_size)
            y_pred = ticket.model(structure.take(x, index), training=False)
            y_true = labels_like(structure.take(y, index), y_pred)
            values = ops.convert_to_numpy(per_example(y_true, y_pred))
            out.append(values.reshape(len(values), -1).mean(axis=1))
    return np.concatenate(out)

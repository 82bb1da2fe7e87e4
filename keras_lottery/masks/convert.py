"""Make any Keras model mask-aware, and back (``strip``); masks and sparsity helpers."""

from __future__ import annotations

import keras
import numpy as np

from keras_lottery.masks.coverage import REASONS, Coverage, discover
from keras_lottery.masks.masked_model import MaskedModel, PrunableWeight


class NotPrunableError(ValueError):
    """The model cannot be made mask-aware (unbuilt, or nothing to prune)."""


def make_prunable(model: keras.Model, include=None, exclude=None) -> MaskedModel:
    """Wrap ``model`` with a pruning mask on each of its weight matrices (all 1).

    Any built Keras 3 model works: Sequential, functional (raw operations,
    nested models, shared layers), subclassed, keras-hub.  The model is used in
    place (its variables are the ticket's); pass ``keras.models.clone_model``
    of it to keep the original.  The compile state is *not* copied: compile the
    result, or let :func:`keras_lottery.find_ticket` do it.

    Args:
        include: variables to prune instead of every weight matrix: a glob over
            variable paths, a compiled regex, a predicate, or a list of these
            (see :func:`keras_lottery.masks.coverage`).
        exclude: variables not to prune, selected the same way.

    Raises:
        NotPrunableError: the model is not built or has no weight to prune.
        ValueError: an ``include`` selector matches no variable.
    """
    if isinstance(model, MaskedModel):
        if include is not None or exclude is not None:
            raise ValueError(
                "The model is mask-aware already; include/exclude apply when it is made "
                "prunable: call make_prunable on the plain model (masked.model) instead."
            )
        return model
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise NotPrunableError(
            f"Model '{model.name}' is not built: give it an input shape "
            "(keras.Input(...), model.build(input_shape), or call it on a batch) first."
        )
    if not model.weights:
        raise NotPrunableError(
            f"Model '{model.name}' has no weights: a layer-less model, or a subclassed model "
            "marked built without creating its variables; call it on a batch of data first."
        )
    masked = MaskedModel(model, include=include, exclude=exclude)
    if not masked.prunable_weights():
        reasons = sorted({REASONS[r.reason] for r in masked.coverage().rows if not r.pruned})
        raise NotPrunableError(
            f"Model '{model.name}' has nothing to prune: no variable is a trainable "
            f"floating-point weight matrix selected for pruning ({'; '.join(reasons)}). "
            "keras_lottery.coverage(model) lists every variable and why."
        )
    return masked


def prunable_weights(model: keras.Model) -> list[PrunableWeight]:
    """The pruned weights of a mask-aware model (``[]`` for a plain model)."""
    return model.prunable_weights() if isinstance(model, MaskedModel) else []


def apply_masks(model: keras.Model) -> None:
    """Set every pruned weight of a mask-aware ``model`` to exactly 0."""
    if isinstance(model, MaskedModel):
        model.apply_masks()


def sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of zero weights per weight matrix (pruned or not), plus ``"overall"``.

    Every weight matrix counts, dense ones included, so ``"overall"`` agrees
    with the sparsity of an exported file.  For a mask-aware model a pruned
    weight's entry is its mask's sparsity.
    """
    if isinstance(model, MaskedModel):  # sparsity from the kept counts, read once
        table = model.coverage()
    else:
        table = Coverage(discover(model))
    out, zeros, total = {}, 0, 0
    for row in table.rows:
        if not row.is_matrix:
            continue
        size = int(np.prod(row.variable.shape))
        if row.path in table.sparsity:  # 1 - kept / size: rounding gives the count back
            n_zero = round(table.sparsity[row.path] * size)
        else:
            n_zero = size - int(np.count_nonzero(np.asarray(row.variable)))
        out[row.path] = n_zero / size
        zeros += n_zero
        total += size
    out["overall"] = zeros / total if total else 0.0
    return out


def strip(model: keras.Model) -> keras.Model:
    """The plain Keras model: masks multiplied into the weights, no mask variables.

    For a mask-aware model this is the wrapped model itself (its pruned
    weights are exactly 0), so it saves and loads without keras_lottery and
    gives the same outputs.  A plain model is returned as it is.
    """
    if isinstance(model, MaskedModel):
        return model.strip()
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    return model

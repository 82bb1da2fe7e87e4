"""Before a search trains: its data and its model checked against each other.

Everything here runs once, before round 0, so that a mistake (an uncompiled
model, NaN inputs, labels out of range, a loss that does not fit the outputs,
an option the model cannot follow) is reported with its cause rather than as a
crash or a diverging round.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np

from keras_lottery.data import structure
from keras_lottery.extras import is_tf_dataset
from keras_lottery.masks.coverage import REASONS
from keras_lottery.search.options import SearchOptions


def check_compiled(model):
    if not isinstance(model, keras.Model):
        raise TypeError(f"find_ticket needs a keras.Model, got {type(model).__name__}.")
    if getattr(model, "optimizer", None) is None or not model.compiled:
        raise ValueError(
            f"Model '{model.name}' is not compiled. Call model.compile(optimizer=..., "
            "loss=..., metrics=[...]) first: find_ticket trains with your optimizer and loss."
        )


def check_model(ticket, opts: SearchOptions) -> None:
    """Refuse options the model cannot follow; say which weights stay dense."""
    _warn_dense(ticket)
    if opts.reset.strategy == "finetune" and not _constant_lr(ticket.optimizer):
        raise ValueError(
            "strategy='finetune' scales the learning rate, which needs a constant "
            "learning rate; the optimizer uses a schedule."
        )


def _constant_lr(optimizer) -> bool:
    return not isinstance(optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule)


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


def check_data(model, data, what):
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

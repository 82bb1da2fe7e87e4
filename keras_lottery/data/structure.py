"""Training data against a model: structures, example counts, shapes and labels.

``x`` and ``y`` may be arrays or nests of them (dicts, lists, tuples) for
models with several inputs or outputs; a ``tf.data.Dataset`` yields such
``(x, y)`` batches; a ``keras.utils.PyDataset`` is used as Keras uses it.
Every check runs before any training and names what is wrong.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from keras_lottery.extras import is_tf_dataset

Nest = Any  # an array, or a dict / list / tuple of arrays


def leaves(tree: Nest) -> list:
    return keras.tree.flatten(tree)


def as_arrays(tree: Nest) -> Nest:
    """NumPy arrays in the same structure (lists of arrays stay lists)."""
    if isinstance(tree, dict):
        return {k: as_arrays(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple) and tree and not np.isscalar(tree[0]):
        if all(hasattr(t, "shape") or isinstance(t, dict | list | tuple) for t in tree):
            return type(tree)(as_arrays(t) for t in tree)
    return np.asarray(tree)


def num_examples(x: Nest, y: Nest) -> int:
    """The common first dimension of every array of ``x`` and ``y``."""
    counts = {}
    for name, tree in (("x", x), ("y", y)):
        for path, leaf in _named_leaves(tree, name):
            if np.ndim(leaf) == 0:
                raise ValueError(f"{path} is a scalar; every array needs one row per example.")
            counts[path] = len(leaf)
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{p} has {n}" for p, n in counts.items())
        raise ValueError(f"The arrays of (x, y) differ in their number of examples: {listed}.")
    return next(iter(counts.values()))


def take(tree: Nest, index) -> Nest:
    """``tree`` with every array indexed by ``index`` (a slice or index array)."""
    return keras.tree.map_structure(lambda a: a[index], tree)


def _named_leaves(tree: Nest, prefix: str):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _named_leaves(v, f"{prefix}[{k!r}]")
    elif isinstance(tree, list | tuple):
        for i, v in enumerate(tree):
            yield from _named_leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, tree


# -- against the model ------------------------------------------------------


def input_names(model: keras.Model) -> list[str] | None:
    """Names of a functional model's inputs (``None`` for subclassed models)."""
    inputs = _declared(model, "inputs")
    if not inputs:
        return None
    return [t.name for t in inputs]


def _declared(model, attribute):
    inner = getattr(model, "model", None)  # a MaskedModel: look at the wrapped model
    if inner is not None and isinstance(inner, keras.Model):
        model = inner
    try:
        return getattr(model, attribute, None)
    except (AttributeError, ValueError):
        return None


def check_structure(model: keras.Model, x: Nest, what: str) -> Nest:
    """``x`` reshaped to the model's single input if needed; structure errors named.

    Flat images (``(n, 784)`` for a ``(28, 28)`` input) are reshaped, as before.
    """
    inputs = _declared(model, "inputs")
    if not inputs:
        return x  # subclassed model: no declared inputs; the trial call checks
    struct = _declared(model, "_inputs_struct")
    names = [t.name for t in inputs]
    if len(inputs) == 1:
        if isinstance(x, dict) and len(x) == 1:
            return x
        if isinstance(x, list | tuple) and len(x) == 1:
            return x
        if isinstance(x, dict | list | tuple):
            raise ValueError(
                f"The {what} has {len(x)} input arrays, but model '{model.name}' has one "
                f"input ({names[0]!r}); pass x as a single array."
            )
        return _fit_shape(model, inputs[0], x, what)
    if isinstance(x, dict):
        expected = set(struct.keys()) if isinstance(struct, dict) else set(names)
        missing, extra = expected - set(x), set(x) - expected
        if missing or extra:
            raise ValueError(
                f"The {what}'s x is a dict with keys {sorted(x)}, but model '{model.name}' "
                f"takes inputs {sorted(expected)}"
                + (f" (missing {sorted(missing)})" if missing else "")
                + (f" (unknown {sorted(extra)})" if extra else "")
                + "."
            )
        return x
    if isinstance(x, list | tuple):
        if len(x) != len(inputs):
            raise ValueError(
                f"The {what}'s x holds {len(x)} arrays, but model '{model.name}' takes "
                f"{len(inputs)} inputs {names}; pass one array per input (a list in that "
                "order, or a dict keyed by input name)."
            )
        return x
    raise ValueError(
        f"The {what}'s x is one array, but model '{model.name}' takes {len(inputs)} inputs "
        f"{names}; pass a list of arrays in that order or a dict keyed by input name."
    )


def _fit_shape(model, tensor, x, what):
    expected = tuple(tensor.shape[1:])
    x = np.asarray(x)
    got = x.shape[1:]
    if len(expected) == len(got) and all(e is None or e == g for e, g in zip(expected, got)):
        return x
    if None not in expected and math.prod(expected) == math.prod(got):
        return x.reshape((len(x), *expected))
    raise ValueError(
        f"The {what} has examples of shape {got}, but model '{model.name}' expects "
        f"inputs of shape {expected}. Reshape the data or change the model's Input."
    )


def check_outputs(model: keras.Model, y: Nest, y_pred: Nest, what: str) -> None:
    """Structure of the labels against the model's outputs (dict keys, list length)."""
    if isinstance(y_pred, dict):
        if not isinstance(y, dict):
            raise ValueError(
                f"Model '{model.name}' returns a dict of outputs {sorted(y_pred)}, but the "
                f"{what}'s y is {type(y).__name__}: pass y as a dict with those keys."
            )
        missing = set(y_pred) - set(y)
        extra = set(y) - set(y_pred)
        if extra or (missing and not _losses_cover(model, y)):
            raise ValueError(
                f"The {what}'s y has keys {sorted(y)}, but model '{model.name}' returns "
                f"outputs {sorted(y_pred)}."
            )
    elif isinstance(y_pred, list | tuple) and len(y_pred) > 1:
        if isinstance(y, dict):
            names = list(getattr(model, "output_names", None) or [])
            unknown = set(y) - set(names)
            if unknown:
                raise ValueError(
                    f"The {what}'s y has keys {sorted(unknown)} that are not outputs of model "
                    f"'{model.name}' (its outputs: {names})."
                )
        elif not isinstance(y, list | tuple) or len(y) != len(y_pred):
            n = len(y) if isinstance(y, list | tuple) else 1
            raise ValueError(
                f"Model '{model.name}' has {len(y_pred)} outputs, but the {what}'s y holds "
                f"{n} array(s): pass one label array per output (a list in output order, or "
                "a dict keyed by output name)."
            )
    elif isinstance(y, dict | list | tuple) and len(leaves(y)) > 1:
        raise ValueError(
            f"Model '{model.name}' has one output, but the {what}'s y holds "
            f"{len(leaves(y))} arrays."
        )


def _losses_cover(model, y) -> bool:
    loss = getattr(model, "loss", None)
    return isinstance(loss, dict) and set(loss) <= set(y)


def build_on_data(model: keras.Model, train) -> None:
    """Build a subclassed model that has no variables yet by calling it on one example."""
    if not isinstance(model, keras.Model) or (model.built and model.weights):
        return
    if is_tf_dataset(train):
        x = next(iter(train.take(1)))[0]
    elif isinstance(train, keras.utils.PyDataset):
        x = train[0][0]
    else:
        x = take(train[0], slice(0, 1))
    model(x, training=False)

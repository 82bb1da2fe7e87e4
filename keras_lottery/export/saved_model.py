"""``format="saved_model"``: a TensorFlow SavedModel with a ``serve`` endpoint.

``serve`` takes the model's inputs in the model's own structure (one tensor, a
list, or a dict by input name) and returns its outputs likewise; its batch
dimension is unknown, or fixed with ``export(..., batch_size=n)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_lottery.export.inputs import batches, exact_batches, flat, stack_outputs
from keras_lottery.export.report import ExportError, kernel_stats, weight_matrices
from keras_lottery.export.writer import Format, Options


def tensor_specs(template, batch_size: int | None = None) -> Any:
    """``tf.TensorSpec`` structure of an input template (``batch_size`` None: any batch)."""
    import tensorflow as tf

    return keras.tree.map_structure(
        lambda s: tf.TensorSpec((batch_size, *s.shape), tf.as_dtype(s.dtype), name=s.name),
        template,
    )


def write(model: keras.Model, tmp: Path, x, options: Options) -> dict[str, Any]:
    import tensorflow as tf

    try:
        model.export(
            str(tmp),
            format="tf_saved_model",
            input_signature=[tensor_specs(options.template, options.batch_size)],
            verbose=False,
        )
    except Exception as e:
        raise ExportError(f"Keras could not export the model as a SavedModel: {e}") from e
    try:
        loaded = tf.saved_model.load(str(tmp))
        chunks = (
            ((b, len(flat(b)[0])) for b in batches(x))
            if options.batch_size is None
            else exact_batches(x, options.batch_size)
        )
        parts = [([np.asarray(o) for o in flat(loaded.serve(b))], n) for b, n in chunks]
        outputs = stack_outputs(parts)
    except Exception as e:
        raise ExportError(f"The exported SavedModel does not load or run: {e}") from e
    if not all(np.isfinite(o).all() for o in outputs):
        raise ExportError("The exported SavedModel computes NaN or inf outputs.")
    paths = {p for p, _ in weight_matrices(model)}
    layers = {}
    for var in loaded.variables:
        path = var.name.removesuffix(":0")
        if path in paths:
            layers[path] = kernel_stats(var.numpy())
    return {"outputs": outputs, "layers": layers}


FORMAT = Format("saved_model", ".saved_model", write, directory=True, signature=True)

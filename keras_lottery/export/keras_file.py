"""``format="keras"``: the stripped model as a ``.keras`` file (any backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_lottery.export.inputs import predict
from keras_lottery.export.report import ExportError, kernel_stats, weight_matrices
from keras_lottery.export.writer import Format, Options


def write(model: keras.Model, tmp: Path, x, options: Options) -> dict[str, Any]:
    model.save(tmp)
    try:
        loaded = keras.models.load_model(tmp, compile=False)
    except Exception as e:
        raise ExportError(
            f"The exported .keras file does not load: {type(e).__name__}: {e}. A subclassed "
            "model or custom layer must be registered with "
            "@keras.saving.register_keras_serializable() and implement get_config()."
        ) from e
    outputs = predict(loaded, x)
    if not all(np.isfinite(o).all() for o in outputs):
        raise ExportError("The exported .keras model computes NaN or inf outputs.")
    # By position: the reloaded model may name nested layers differently (Bidirectional).
    layers = [(p, kernel_stats(v)) for p, v in weight_matrices(loaded)]
    return {"outputs": outputs, "layers": layers}


FORMAT = Format("keras", ".keras", write, needs_tensorflow=False)

"""``format="keras"``: the stripped model as a ``.keras`` file (any backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_lottery.export.inputs import predict
from keras_lottery.export.report import ExportError, kernel_stats, weight_matrices
from keras_lottery.export.writer import Format, Options


def save_and_reload(model: keras.Model, tmp: Path, x, what: str = "exported"):
    """Save ``model`` to ``tmp``, load it back and run it on ``x``: (loaded, outputs).

    Refuses a file that does not load or computes NaN or inf outputs.
    """
    model.save(tmp)
    try:
        loaded = keras.models.load_model(tmp, compile=False)
    except Exception as e:
        raise ExportError(
            f"The {what} .keras file does not load: {type(e).__name__}: {e}. A subclassed "
            "model or custom layer must be registered with "
            "@keras.saving.register_keras_serializable() and implement get_config()."
        ) from e
    outputs = predict(loaded, x)
    if not all(np.isfinite(o).all() for o in outputs):
        raise ExportError(f"The {what} .keras model computes NaN or inf outputs.")
    return loaded, outputs


def write(model: keras.Model, tmp: Path, x, options: Options) -> dict[str, Any]:
    loaded, outputs = save_and_reload(model, tmp, x)
    # By position: the reloaded model may name nested layers differently (Bidirectional).
    layers = [(p, kernel_stats(v)) for p, v in weight_matrices(loaded)]
    return {"outputs": outputs, "layers": layers}


FORMAT = Format("keras", ".keras", write, needs_tensorflow=False)

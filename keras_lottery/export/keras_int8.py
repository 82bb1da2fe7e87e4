"""``format="keras-int8"``: the stripped model quantized by Keras itself, as ``.keras``.

A copy of the model goes through ``model.quantize("int8")``: the layers Keras
can quantize (``Dense``, ``EinsumDense``, ``Embedding``) store int8 kernels
with a float scale per output unit (abs-max, so a weight that is 0 stays
exactly 0) and quantize their inputs on each call; the other layers (the
convolutions, in Keras 3.15) stay float32 and ``report.notes`` names them.
Written on any backend, loaded back and run like ``format="keras"``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import keras

from keras_lottery.export.keras_file import save_and_reload
from keras_lottery.export.prepare import rebuild
from keras_lottery.export.report import ExportError, kernel_stats, weight_matrices
from keras_lottery.export.writer import Format, Options
from keras_lottery.masks.coverage import layer_tree

MODE = "int8"


def quantized_copy(model: keras.Model) -> tuple[keras.Model, list[str], list[str]]:
    """``(copy, quantized, kept)``: an int8 copy of ``model`` and the layer names of each kind.

    ``kept``: the weight matrices' layers that Keras left in float (no int8 form).
    The caller's model is never changed.
    """
    copy = rebuild(model, [])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a `quantize` method.*")
        copy.quantize(MODE)
    quantized = [
        layer.name for layer in layer_tree(copy) if getattr(layer, "quantization_mode", None)
    ]
    kept = list(dict.fromkeys(path.rpartition("/")[0] for path, _ in weight_matrices(copy)))
    if not quantized:
        raise ExportError(
            f"Model '{model.name}' has no layer that Keras can quantize to int8 (Dense, "
            "EinsumDense, Embedding): export format='tflite-int8' or 'tflite-int8-full' "
            "instead, which quantize convolutions too."
        )
    return copy, quantized, kept


def stored_matrices(model: keras.Model) -> list[tuple[str, Any]]:
    """``(path, stats)`` of each weight matrix as stored: int8 kernels and float ones."""
    floats = {path for path, _ in weight_matrices(model)}
    found = []
    for v in model.weights:
        int8 = keras.backend.standardize_dtype(v.dtype) == "int8" and len(v.shape) >= 2
        if int8 or v.path in floats:
            found.append((v.path, kernel_stats(keras.ops.convert_to_numpy(v))))
    return found


def write(model: keras.Model, tmp: Path, x, options: Options) -> dict[str, Any]:
    copy, quantized, kept = quantized_copy(model)
    loaded, outputs = save_and_reload(copy, tmp, x, "int8")
    notes = [f"Keras int8 ({len(quantized)} layers): {', '.join(quantized)}"]
    if kept:
        notes.append(f"kept float32 (Keras has no int8 form for them): {', '.join(kept)}")
    return {"outputs": outputs, "layers": stored_matrices(loaded), "notes": notes}


FORMAT = Format("keras-int8", ".int8.keras", write, needs_tensorflow=False)

"""The Keras model an export writes: the stripped ticket, rebuilt when a format needs it.

* no compile state: a compiled model is rebuilt from its config with the same
  weights, so no optimizer variables are saved;
* float32: TFLite runs float32 (or quantizes from it), so a mixed-precision
  model (``mixed_float16`` / ``mixed_bfloat16`` layers) is rebuilt with float32
  dtype policies and the same weights;
* unrolled RNNs: TFLite has no builtin kernel for the loops Keras's RNN layers
  run (tensor-list ops), so with ``rnn="unroll"`` every RNN layer is rebuilt
  with ``unroll=True`` (a fixed sequence length is needed), which converts to
  builtin ops only (FULLY_CONNECTED, LOGISTIC, TANH ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from keras_lottery.masks.convert import strip
from keras_lottery.masks.coverage import layer_tree

#: Values of ``export(..., rnn=...)``.
RNN_OPTIONS = ("unroll",)


@dataclass
class Prepared:
    """The model to write, and what was changed to get it."""

    model: keras.Model
    stripped: keras.Model
    conversion: list[str] = field(default_factory=list)

    @property
    def rebuilt(self) -> bool:
        return self.model is not self.stripped


def is_mixed(model: keras.Model) -> bool:
    """Whether some layer computes in float16 / bfloat16 (a mixed-precision policy)."""
    return any(
        getattr(layer, "dtype_policy", None) is not None
        and str(layer.dtype_policy.name).startswith("mixed_")
        for layer in layer_tree(model)
    )


def recurrent_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """RNN layers (LSTM, GRU, SimpleRNN, ConvLSTM, inside Bidirectional too) not unrolled."""
    return [
        layer
        for layer in layer_tree(model)
        if isinstance(layer, keras.layers.RNN) and not getattr(layer, "unroll", False)
    ]


def prepare(model: keras.Model, *, serializable: bool, float32: bool, unroll: bool) -> Prepared:
    """Strip ``model``; rebuild it without compile state / in float32 / unrolled as asked.

    Args:
        serializable: the model will be saved to a ``.keras`` file (rebuild a
            compiled model so that no optimizer state is saved).
        float32: rebuild a mixed-precision model in float32.
        unroll: rebuild RNN layers with ``unroll=True``.
    """
    stripped = strip(model)
    conversion = []
    if float32 and is_mixed(stripped):
        conversion.append("float32")
    if unroll and recurrent_layers(stripped):
        conversion.append("unrolled_rnn")
    if not conversion and not (serializable and stripped.compiled):
        return Prepared(stripped, stripped)
    return Prepared(rebuild(stripped, conversion), stripped, conversion)


def rebuild(model: keras.Model, conversion: list[str]) -> keras.Model:
    """A fresh copy of ``model`` from its config, with its weights, changed as listed.

    The copy is not compiled: Keras compiles a model rebuilt with its compile
    config and builds the optimizer, whose variables a saved file would carry.
    """
    config = dict(keras.saving.serialize_keras_object(model))
    config.pop("compile_config", None)
    if "float32" in conversion:
        config = _walk(config, _float32_policy)
    if "unrolled_rnn" in conversion:
        config = _walk(config, _unrolled)
    try:
        copy = keras.saving.deserialize_keras_object(config)
        copy.set_weights(model.get_weights())
    except Exception as e:
        from keras_lottery.export.report import ExportError

        first = (str(e).strip().splitlines() or [""])[0]
        hint = ""
        if "unrolled_rnn" in conversion and "time dimension" in str(e):
            hint = (
                " rnn='unroll' needs a fixed sequence length: build the model with "
                "keras.Input((steps, features)) instead of (None, features)."
            )
        why = ", ".join(conversion) or "to drop its compile state"
        raise ExportError(
            f"Could not rebuild model '{model.name}' from its config ({why}): "
            f"{type(e).__name__}: {first}.{hint or _SERIALIZABLE}"
        ) from e
    return copy


_SERIALIZABLE = (
    " A subclassed model or custom layer must be registered with "
    "@keras.saving.register_keras_serializable() and implement get_config() so that "
    "it can be saved and rebuilt."
)


def _walk(obj, fn):
    if isinstance(obj, dict):
        return {k: _walk(v, fn) for k, v in fn(obj).items()}
    if isinstance(obj, list):
        return [_walk(v, fn) for v in obj]
    return obj


def _float32_policy(d: dict) -> dict:
    if d.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        name = str(d.get("config", {}).get("name", ""))
        if name.startswith("mixed_"):
            return {**d, "config": {**d["config"], "name": "float32"}}
    if isinstance(d.get("dtype"), str) and d["dtype"].startswith("mixed_"):
        return {**d, "dtype": "float32"}
    return d


def _unrolled(d: dict) -> dict:
    return {**d, "unroll": True} if d.get("unroll") is False else d

"""The export formats: one module per format, each defining a :class:`Format`.

A new format is a new module defining a ``Format`` (the types are in
:mod:`~keras_lottery.export.writer`: a format module never imports this one)
and a line in :func:`registry`.
"""

from __future__ import annotations

from keras_lottery.export import keras_file, keras_int8, saved_model, tflite
from keras_lottery.export.writer import Format as Format  # the writer types, also here
from keras_lottery.export.writer import Options as Options


def registry() -> dict[str, Format]:
    """Every format by name, in the order the docs list them."""
    formats = [keras_file.FORMAT, keras_int8.FORMAT, saved_model.FORMAT, *tflite.FORMATS]
    return {f.name: f for f in formats}

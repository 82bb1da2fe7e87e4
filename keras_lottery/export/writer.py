"""What an export format is: a :class:`Format` (its writer), and the :class:`Options` it gets.

A writer gets the prepared Keras model, a temporary path, the verification
inputs and the :class:`Options`; it writes the file, loads it back, runs it and
returns ``{"outputs": [flat arrays], "layers": ..., **report fields}``.  The
format modules take these types from here; :mod:`~keras_lottery.export.formats`
imports the format modules and lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras


@dataclass
class Options:
    """What a writer needs besides the model: input/output names and format settings."""

    template: Any  # keras_lottery.export.inputs template, dtypes filled in
    input_names: list[str]
    output_names: list[str]
    calibration: Any = None
    sparse: bool | str = "auto"
    batch_size: int | None = None  # a fixed batch for the signature (None: any batch)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Format:
    """One export format."""

    name: str
    suffix: str
    write: Callable[[keras.Model, Path, Any, Options], dict[str, Any]]
    directory: bool = False  # writes a folder
    needs_tensorflow: bool = True  # written by TensorFlow (another backend goes through it)
    tflite: bool = False  # runs float32 builtin ops only (mixed precision, RNN loops)
    signature: bool = False  # a TF signature with a batch dimension that can be fixed

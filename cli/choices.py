"""The CLI's option defaults and choices, without importing TensorFlow.

``--help`` must be instant.  The search options (their defaults, choices and
help) come from ``keras_lottery_options``, which imports only the standard
library; the run options around them (model, dataset, ...) and the model and
export names mirror :mod:`keras_lottery.runs.directory`, :mod:`keras_lottery.zoo` and
:mod:`keras_lottery.export`, and a test checks that they are equal.
"""

from __future__ import annotations

from typing import Any

from keras_lottery_options import (
    AT_INIT_SPECS,
    GRANULARITIES,
    SCOPES,
    STRATEGIES,
    UNIT_CRITERIA,
    run_defaults,
)

#: Every key of a run configuration and its default (:data:`keras_lottery.runs.directory.DEFAULTS`).
DEFAULTS: dict[str, Any] = {
    "model": "lenet_300_100",
    "dataset": "mnist-5k",
    "data_dir": None,
    "train_size": None,
    "test_size": None,
    "optimizer": None,
    "lr": None,
    **run_defaults(),
    "validation_split": 0.1,
    "early_bird": False,
    "steps_per_execution": 1,
    **{key: None for key in AT_INIT_SPECS},
}
MODELS = ("lenet_300_100", "lenet5", "conv2", "conv4", "conv6", "xor")
EXPORT_FORMATS = (
    "keras",
    "keras-int8",
    "saved_model",
    "tflite",
    "tflite-int8",
    "tflite-float16",
    "tflite-int8-full",
)

__all__ = [
    "DEFAULTS",
    "EXPORT_FORMATS",
    "GRANULARITIES",
    "MODELS",
    "SCOPES",
    "STRATEGIES",
    "UNIT_CRITERIA",
]

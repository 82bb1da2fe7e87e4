"""The CLI's option defaults and choices, without importing TensorFlow.

``--help`` must be instant, so these mirror the library's constants
(:data:`keras_lottery.runs.DEFAULTS`, ``search.STRATEGIES`` ...); a test checks
that they are equal.
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    "model": "lenet_300_100",
    "dataset": "mnist-5k",
    "data_dir": None,
    "train_size": None,
    "test_size": None,
    "optimizer": None,
    "lr": None,
    "rounds": 5,
    "rate": 0.2,
    "output_rate": None,
    "layer_rates": {},
    "target_sparsity": None,
    "one_shot": False,
    "scope": "layerwise",
    "strategy": "rewind",
    "rewind_to": "init",
    "granularity": "weight",
    "unit_criterion": "product",
    "epochs": 8,
    "steps": None,
    "batch_size": 60,
    "validation_split": 0.1,
    "eval_every": None,
    "early_bird": False,
    "steps_per_execution": 1,
    "seed": 0,
}
MODELS = ("lenet_300_100", "lenet5", "conv2", "conv4", "conv6", "xor")
STRATEGIES = ("rewind", "reinit", "rearrange", "random_prune", "continue", "finetune", "lr_rewind")
SCOPES = ("layerwise", "global")
GRANULARITIES = ("weight", "unit")  # and "N:M" patterns such as "2:4"
UNIT_CRITERIA = ("input", "l1", "l2", "output", "product")
EXPORT_FORMATS = (
    "keras",
    "saved_model",
    "tflite",
    "tflite-int8",
    "tflite-float16",
    "tflite-int8-full",
)

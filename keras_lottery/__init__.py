"""keras-lottery: find winning lottery tickets in Keras 3 models.

>>> ticket = keras_lottery.find_ticket(model, (x, y), rounds=5)
>>> ticket.lottery.summary()
"""

import importlib.metadata

from keras_lottery import zoo
from keras_lottery.analysis import (
    Instability,
    RewindScan,
    connectivity,
    coverage,
    instability,
    stable_rewind_point,
    weight_movement,
)
from keras_lottery.compact import (
    CompactionError,
    CompactionReport,
    compact,
    effective_sparsity,
)
from keras_lottery.criteria import EarlyBird
from keras_lottery.data import Dataset, load_dataset
from keras_lottery.export import ExportReport, export
from keras_lottery.masks import (
    Coverage,
    MaskedModel,
    NotPrunableError,
    PrunableWeight,
    apply_masks,
    make_prunable,
    prunable_weights,
    sparsity,
    strip,
)
from keras_lottery.options import STRATEGIES, Pruning, Reset, Training
from keras_lottery.records import LotteryRecord, RoundRecord
from keras_lottery.search import find_ticket, prune_at_init

__version__ = importlib.metadata.version("keras-lottery")

__all__ = [
    "CompactionError",
    "CompactionReport",
    "Coverage",
    "Dataset",
    "EarlyBird",
    "ExportReport",
    "Instability",
    "LotteryRecord",
    "MaskedModel",
    "NotPrunableError",
    "PrunableWeight",
    "Pruning",
    "Reset",
    "RewindScan",
    "RoundRecord",
    "STRATEGIES",
    "Training",
    "apply_masks",
    "compact",
    "connectivity",
    "coverage",
    "effective_sparsity",
    "export",
    "find_ticket",
    "instability",
    "zoo",
    "load_dataset",
    "make_prunable",
    "prunable_weights",
    "prune_at_init",
    "sparsity",
    "stable_rewind_point",
    "strip",
    "weight_movement",
]

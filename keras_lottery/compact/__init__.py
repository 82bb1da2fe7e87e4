"""Compaction: a ticket's dead units removed, as a smaller dense Keras model computing
the same function."""

from keras_lottery.compact.compaction import (
    CompactionError,
    CompactionReport,
    compact,
    effective_sparsity,
)

__all__ = ["CompactionError", "CompactionReport", "compact", "effective_sparsity"]

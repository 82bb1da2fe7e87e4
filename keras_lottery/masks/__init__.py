"""The mask machinery: :class:`MaskedModel` (any Keras model plus one mask per pruned
weight), which weights of a model are prunable (:mod:`~keras_lottery.masks.coverage`),
turning a model into a ticket and back (:mod:`~keras_lottery.masks.convert`), packed
masks (:mod:`~keras_lottery.masks.bitmasks`) and cheap variable writes
(:mod:`~keras_lottery.masks.assign`)."""

from keras_lottery.masks.convert import (
    NotPrunableError,
    apply_masks,
    make_prunable,
    prunable_weights,
    sparsity,
    strip,
)
from keras_lottery.masks.coverage import Coverage
from keras_lottery.masks.masked_model import MaskedModel, PrunableWeight

__all__ = [
    "Coverage",
    "MaskedModel",
    "NotPrunableError",
    "PrunableWeight",
    "apply_masks",
    "make_prunable",
    "prunable_weights",
    "sparsity",
    "strip",
]

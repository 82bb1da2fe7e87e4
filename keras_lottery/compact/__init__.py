"""Compaction: a ticket's dead units removed, as a smaller dense Keras model computing
the same function.

:func:`compact` rewrites chains and functional graphs; :class:`Graph` finds the units
that go together; :func:`register_rule` (with :class:`LayerRule`) teaches compaction a
layer it has no rule for.
"""

from keras_lottery.compact.compaction import (
    CompactionError,
    CompactionReport,
    compact,
    effective_sparsity,
)
from keras_lottery.compact.graph import Graph
from keras_lottery.compact.rules import (
    CARRY,
    CONSUME,
    PRODUCE,
    Call,
    Keep,
    LayerRule,
    LayerSpec,
    Link,
    Slice,
    register_rule,
)

__all__ = [
    "CARRY",
    "CONSUME",
    "Call",
    "CompactionError",
    "CompactionReport",
    "Graph",
    "Keep",
    "LayerRule",
    "LayerSpec",
    "Link",
    "PRODUCE",
    "Slice",
    "compact",
    "effective_sparsity",
    "register_rule",
]

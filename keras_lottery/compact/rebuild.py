"""The smaller model: a functional graph rebuilt without its removable units.

A unit (:mod:`keras_lottery.compact.graph`) is *removable* when it is not
frozen and every weight that consumes it is zero: nothing downstream reads it,
so its producers, its per-channel parameters and its consumers' zero slices go
without changing any output.  Every tensor and inner axis keeps at least one
channel.  Each layer is re-created from its rule's config, called on the new
tensors as in the original graph, and given its weights sliced to the kept
units.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from keras_lottery.compact.graph import Graph
from keras_lottery.compact.rules import CONSUME, PRODUCE, Keep, width


class RebuildError(ValueError):
    """A layer could not be re-created at its new width (the message says which)."""


@dataclass
class Rebuilt:
    """The smaller model and what changed (read by :func:`keras_lottery.compact.compact`)."""

    model: keras.Model
    units: dict[str, tuple[int, int]]
    groups: dict[str, tuple[int, int]]
    kept: list[str]
    removed: int


def removable(graph: Graph, values) -> np.ndarray:
    """Per unit: can it go (not frozen, every consuming weight zero)?  One kept per port."""
    used = graph.per_unit(values, (CONSUME,), "nonzero")
    keep = graph.is_frozen | (used > 0)
    ports = graph.all_ports()
    changed = True
    while changed:
        changed = False
        for units in ports:
            if len(units) and not keep[units].any():
                keep[units[0]] = True
                changed = True
    return ~keep


def rebuild(graph: Graph, keep: np.ndarray, values) -> Rebuilt:
    """``graph``'s model with only the units where ``keep`` is True.

    ``values(variable)`` gives each weight's value (masked for a ticket).
    """
    fn = graph.function
    tensors: dict[int, object] = {}
    new_inputs = []
    for t in graph.inputs:
        op = t._keras_history.operation
        x = keras.Input(batch_shape=t.shape, dtype=t.dtype, name=op.name if op else None)
        tensors[id(t)] = x
        new_inputs.append(x)
    made: dict[int, tuple] = {}
    for info in graph.calls:
        call, layer = info.call, info.call.layer
        if isinstance(layer, keras.layers.Layer):
            if id(layer) not in made:
                made[id(layer)] = (layer, _new_layer(graph, info, keep))
            op = made[id(layer)][1]
        else:
            op = layer  # a raw operation holds no weights: call it again
        args, kwargs = info.node.arguments.fill_in(tensors)
        outputs = op(*args, **kwargs)
        for x, y in zip(call.outputs, keras.tree.flatten(outputs)):
            tensors[id(x)] = y
    outputs = [tensors[id(t)] for t in graph.outputs]
    model = keras.Model(
        keras.tree.pack_sequence_as(fn._inputs_struct, new_inputs),
        keras.tree.pack_sequence_as(fn._outputs_struct, outputs),
        name=f"{graph.model.name}_compact",
    )
    for layer, new in made.values():
        if not layer.weights:
            continue
        sliced = [_sliced(graph, v, keep, values) for v in layer.weights]
        shapes = [tuple(w.shape) for w in new.weights]
        if [s.shape for s in sliced] != shapes:
            raise RebuildError(
                f"'{layer.name}' ({type(layer).__name__}) re-created from its rule's config "
                f"has weights of shapes {shapes}, but the sliced weights have "
                f"{[s.shape for s in sliced]}: its rule's config() does not match its slices."
            )
        new.set_weights(sliced)
    return Rebuilt(model, *_summary(graph, keep), removed=int((~keep).sum()))


def _new_layer(graph: Graph, info, keep: np.ndarray):
    layer, call = info.call.layer, info.call

    def kept(port) -> np.ndarray:
        return np.flatnonzero(keep[graph.port_units(call, port)])

    try:
        config = info.rule.config(layer, call, Keep(kept)) if info.rule else layer.get_config()
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer)
        return type(layer).from_config(config)
    except Exception as e:
        raise RebuildError(
            f"'{layer.name}' ({type(layer).__name__}) cannot be re-created from its config "
            f"({type(e).__name__}: {e}); give it get_config/from_config, or register a rule "
            "(keras_lottery.compact.register_rule)."
        ) from e


def _sliced(graph: Graph, variable, keep: np.ndarray, values) -> np.ndarray:
    value = np.asarray(values(variable))
    axes: dict[int, np.ndarray] = {}
    for bs in graph.slices:
        if bs.variable is variable:
            kept = keep[bs.units]
            axes[bs.axis] = kept if bs.axis not in axes else axes[bs.axis] & kept
    for axis, kept in axes.items():
        value = np.take(value, np.flatnonzero(kept), axis=axis)
    return value


def _summary(graph: Graph, keep: np.ndarray):
    units: dict[str, tuple[int, int]] = {}
    for info in graph.calls:
        call = info.call
        producing = {id(s.port) for s in info.spec.slices if s.role == PRODUCE}
        for t in call.outputs:
            if id(t) in producing:
                u = graph.tensor_units(t)
                units[call.layer.name] = (width(t), int(keep[u].sum()))
        for name in info.spec.inner:
            u = graph.port_units(call, name)
            units[f"{call.layer.name} {name}"] = (len(u), int(keep[u].sum()))
    groups, kept = {}, []
    for c in graph.couplings:
        groups[c.name] = (len(c.units), int(keep[c.units].sum()))
        for why, n in c.frozen.items():
            kept.append(f"{c.name}: {n} of {len(c.units)} units kept, {why}")
    return units, groups, kept

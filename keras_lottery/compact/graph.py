"""Coupled units of a functional Keras model: what must be scored and removed together.

Every channel of every tensor of the graph (and every inner axis a rule names,
such as attention heads) is a node; the links of the layer rules
(:mod:`keras_lottery.compact.rules`) join nodes into *units*: a residual
stream's channel ``c`` in every block it passes, a channel through
BatchNormalization and a depthwise convolution, an attention head's query, key,
value and output weights.  A unit is removed as a whole or not at all.

Units whose width must stay are *frozen*, with the reason: the model's inputs
and outputs, a width a LayerNormalization normalizes over, a layer without a
rule.  Units joined through any tensor form a *coupling* (the units that are
ranked against each other: a convolution's filters, a residual stage's
channels, a DenseNet block's concatenated features).

The analysis only reads the model; :mod:`keras_lottery.compact.rebuild`
builds the smaller one, and the search's unit granularity scores and masks
the units (:meth:`Graph.scores`, :meth:`Graph.multiplier`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from keras_lottery.compact.rules import (
    CARRY,
    CONSUME,
    PRODUCE,
    Call,
    LayerSpec,
    Slice,
    freeze_all,
    rule_for,
    width,
)

_HUB = []  # the keras-hub rules are registered once a model uses a keras-hub layer


def _register_hub_rules() -> None:
    if not _HUB:
        _HUB.append(True)
        from keras_lottery.compact import hub

        hub.register()


class GraphError(ValueError):
    """The model is not a functional graph of layers that compaction can read."""


@dataclass
class BoundSlice:
    """A rule's :class:`Slice`, with the unit of each position along its axis."""

    slice: Slice
    layer: keras.layers.Layer
    units: np.ndarray

    variable = property(lambda self: self.slice.variable)
    axis = property(lambda self: self.slice.axis)
    role = property(lambda self: self.slice.role)


@dataclass
class Coupling:
    """Units ranked against each other; ``frozen`` counts the ones that must stay, by reason."""

    name: str
    units: np.ndarray
    frozen: dict[str, int] = field(default_factory=dict)


@dataclass
class CallInfo:
    call: Call
    node: object
    spec: LayerSpec
    rule: object


def functional_of(model: keras.Model):
    """The functional graph of a Sequential or functional model."""
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise GraphError(
                f"Sequential model '{model.name}' has no known input: build it with "
                "keras.Input(...) first."
            )
        return graph
    if not getattr(model, "_nodes_by_depth", None) or not getattr(model, "outputs", None):
        raise GraphError(
            f"Model '{model.name}' ({type(model).__name__}) is subclassed: compaction "
            "rewrites a graph of layers and needs a Sequential or functional model."
        )
    return model


class Graph:
    """The units of ``model`` and the weights that hold them (see the module doc)."""

    def __init__(self, model: keras.Model):
        self.model = model
        fn = functional_of(model)
        self.function = fn
        self.inputs = list(keras.tree.flatten(fn.inputs))
        self.outputs = list(keras.tree.flatten(fn.outputs))
        self.calls: list[CallInfo] = []
        self._ports: dict[tuple, int] = {}  # port key -> index
        self._offsets: list[int] = []
        self._widths: list[int] = []
        self._port_names: list[str] = []
        for t in self.inputs:
            op = getattr(getattr(t, "_keras_history", None), "operation", None)
            self._add_port(("t", id(t)), width(t), op.name if op is not None else t.name)
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                if node.is_input or node.operation is None:
                    continue
                self.calls.append(self._read(node))
        self._link()

    # -- reading the calls ------------------------------------------------------------
    def _add_port(self, key, n, name) -> None:
        if key in self._ports:
            return
        self._ports[key] = len(self._widths)
        self._offsets.append(sum(self._widths))
        self._widths.append(n)
        self._port_names.append(name)

    def _read(self, node) -> CallInfo:
        op = node.operation
        args, kwargs = node.arguments.args, node.arguments.kwargs
        call = Call(op, list(node.input_tensors), list(node.output_tensors), args, kwargs)
        for t in call.outputs:
            self._add_port(("t", id(t)), width(t), f"{op.name} output")
        rule = rule_for(op)
        if rule is None and type(op).__module__.startswith("keras_hub."):
            _register_hub_rules()
            rule = rule_for(op)
        if isinstance(op, keras.Model):
            spec = freeze_all(
                call,
                f"{call.name} is a nested model: compaction keeps its widths (call its layers "
                "in the outer model to compact through them)",
            )
        elif rule is None:
            kind = "layer" if isinstance(op, keras.layers.Layer) else "raw operation"
            spec = freeze_all(
                call,
                f"{call.name} is a {kind} compaction has no rule for (register one with "
                "keras_lottery.compact.register_rule)",
            )
        else:
            spec = rule.spec(op, call)
        for name, n in spec.inner.items():
            self._add_port(("i", id(op), name), int(n), f"{op.name} {name}")
        return CallInfo(call, node, spec, rule)

    def port(self, call: Call, port) -> int:
        """The index of a port of ``call`` (a tensor of the call or an inner axis name)."""
        if isinstance(port, str):
            key = ("i", id(call.layer), port)
        else:
            key = ("t", id(port))
            if not any(port is t for t in [*call.inputs, *call.outputs]):
                raise GraphError(
                    f"The rule of {call.name} names a tensor that is not one of its inputs "
                    "or outputs."
                )
        if key not in self._ports:
            raise GraphError(f"The rule of {call.name} names an unknown inner axis {port!r}.")
        return self._ports[key]

    def nodes(self, port_index: int, index=None) -> np.ndarray:
        """Channel node ids of a port (``index``: of those channels only)."""
        n = self._widths[port_index]
        chosen = np.arange(n) if index is None else np.asarray(index, np.int64)
        if len(chosen) and (chosen.min() < 0 or chosen.max() >= n):
            raise GraphError(
                f"A rule indexes channel {int(chosen.max())} of '{self._port_names[port_index]}', "
                f"which has {n}."
            )
        return self._offsets[port_index] + chosen

    # -- units ------------------------------------------------------------------------
    def _link(self) -> None:
        total = sum(self._widths)
        parent = list(range(total))
        port_parent = list(range(len(self._widths)))

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        def find_port(i):
            while port_parent[i] != i:
                port_parent[i] = port_parent[port_parent[i]]
                i = port_parent[i]
            return i

        frozen_nodes: dict[int, str] = {}
        shared: dict[int, CallInfo] = {}  # a layer called twice: its calls share channels
        for info in self.calls:
            call, spec = info.call, info.spec
            links = [
                (self.port(call, lk.a), lk.a_index, self.port(call, lk.b), lk.b_index)
                for lk in spec.links
            ]
            first = shared.setdefault(id(call.layer), info)
            if first is not info:
                for a, b in zip(
                    [*first.call.inputs, *first.call.outputs], [*call.inputs, *call.outputs]
                ):
                    links.append((self.port(first.call, a), None, self.port(call, b), None))
            for a, ai, b, bi in links:
                na, nb = self.nodes(a, ai), self.nodes(b, bi)
                if len(na) != len(nb):
                    raise GraphError(
                        f"The rule of {call.name} links {len(na)} channels of "
                        f"'{self._port_names[a]}' to {len(nb)} of '{self._port_names[b]}'."
                    )
                for x, y in zip(na.tolist(), nb.tolist()):
                    rx, ry = find(x), find(y)
                    if rx != ry:
                        parent[rx] = ry
                pa, pb = find_port(a), find_port(b)
                if pa != pb:
                    port_parent[pa] = pb
            for port, why in spec.frozen:
                for n in self.nodes(self.port(call, port)).tolist():
                    frozen_nodes.setdefault(n, why)
            mentioned = {id(s.port) for s in spec.slices} | {id(p) for p, _ in spec.frozen}
            mentioned |= {id(lk.a) for lk in spec.links} | {id(lk.b) for lk in spec.links}
            for t in [*call.inputs, *call.outputs]:
                if id(t) not in mentioned:
                    side = "input" if any(t is x for x in call.inputs) else "output"
                    for n in self.nodes(self.port(call, t)).tolist():
                        frozen_nodes.setdefault(
                            n, f"{call.name} does not say how its {side} is sliced"
                        )
        for t in self.inputs:
            for n in self.nodes(self._ports[("t", id(t))]).tolist():
                frozen_nodes.setdefault(n, "a model input")
        for t in self.outputs:
            for n in self.nodes(self._ports[("t", id(t))]).tolist():
                frozen_nodes.setdefault(n, "a model output")

        roots = np.array([find(i) for i in range(total)], np.int64)
        _, self.unit_of = np.unique(roots, return_inverse=True)
        self.n_units = int(self.unit_of.max()) + 1 if total else 0
        self.frozen: dict[int, str] = {}
        for n, why in frozen_nodes.items():
            self.frozen.setdefault(int(self.unit_of[n]), why)
        self.is_frozen = np.zeros(self.n_units, bool)
        self.is_frozen[list(self.frozen)] = True

        # Slices, with the unit of each position.
        self.slices: list[BoundSlice] = []
        for info in self.calls:
            for s in info.spec.slices:
                p = self.port(info.call, s.port)
                n_axis = int(s.variable.shape[s.axis])
                index = np.arange(n_axis) if s.index is None else np.asarray(s.index)
                if len(index) != n_axis:
                    raise GraphError(
                        f"The rule of {info.call.name} gives {len(index)} channels for axis "
                        f"{s.axis} of {s.variable.path}, which has {n_axis} entries."
                    )
                units = self.unit_of[self.nodes(p, index)]
                self.slices.append(BoundSlice(s, info.call.layer, units))

        # Couplings: ports joined by links; a unit belongs to its first node's port's.
        port_root = np.array([find_port(i) for i in range(len(self._widths))])
        node_port = np.repeat(np.arange(len(self._widths)), self._widths)
        first_node = np.full(self.n_units, -1)
        first_node[self.unit_of[::-1]] = np.arange(total)[::-1]
        coupling_of = port_root[node_port[first_node]] if total else np.zeros(0, int)
        names: dict[int, list[str]] = {}
        for bs in self.slices:
            if bs.role == PRODUCE and len(bs.units):
                key = int(coupling_of[bs.units[0]])
                port = bs.slice.port
                name = bs.layer.name + (f" {port}" if isinstance(port, str) else "")
                if name not in names.setdefault(key, []):
                    names[key].append(name)
        self.couplings: list[Coupling] = []
        self.coupling_of = np.zeros(self.n_units, np.int64)
        for i, root in enumerate(np.unique(coupling_of)):
            units = np.flatnonzero(coupling_of == root)
            self.coupling_of[units] = i
            layer_names = names.get(int(root)) or [self._port_names[int(root)]]
            name = "+".join(layer_names[:3]) + (
                f" (+{len(layer_names) - 3} more)" if len(layer_names) > 3 else ""
            )
            frozen: dict[str, int] = {}
            for u in units[self.is_frozen[units]].tolist():
                frozen[self.frozen[u]] = frozen.get(self.frozen[u], 0) + 1
            self.couplings.append(Coupling(name, units, frozen))

    # -- what the search and compaction read ------------------------------------------
    def port_units(self, call: Call, port) -> np.ndarray:
        """The unit of each channel of a port of ``call``."""
        return self.unit_of[self.nodes(self.port(call, port))]

    def tensor_units(self, tensor) -> np.ndarray:
        return self.unit_of[self.nodes(self._ports[("t", id(tensor))])]

    def all_ports(self) -> list[np.ndarray]:
        """Per port (tensor or inner axis), the unit of each channel."""
        return [self.unit_of[self.nodes(i)] for i in range(len(self._widths))]

    def per_unit(self, values, role_filter, reduce="l1", variables=None) -> np.ndarray:
        """Sum over slices of the given roles of a per-position reduction of ``values``.

        ``values(variable)`` gives the array to read; ``reduce``: ``"l1"`` (sum of
        ``|v|``), ``"l2sq"`` (sum of squares) or ``"nonzero"`` (count of nonzeros).
        ``variables``: ids of the variables to read (others are skipped).
        """
        out = np.zeros(self.n_units)
        for bs in self.slices:
            if bs.role not in role_filter:
                continue
            if variables is not None and id(bs.variable) not in variables:
                continue
            a = np.asarray(values(bs.variable))
            a = np.moveaxis(a, bs.axis, 0).reshape(a.shape[bs.axis], -1)
            if reduce == "l1":
                per = np.abs(a).sum(axis=1, dtype=np.float64)
            elif reduce == "l2sq":
                per = np.square(a, dtype=np.float64).sum(axis=1)
            else:
                per = np.count_nonzero(a, axis=1).astype(np.float64)
            np.add.at(out, bs.units, per)
        return out

    def scores(self, values, criterion: str, variables=None) -> np.ndarray:
        """Each unit's score by a unit criterion: ``input``/``l1``, ``l2``, ``output``, ``product``.

        Input side: the weights that produce or carry the unit; output side: the
        weights that consume it.
        """
        if criterion in ("input", "l1"):
            return self.per_unit(values, (PRODUCE, CARRY), "l1", variables)
        if criterion == "l2":
            return np.sqrt(self.per_unit(values, (PRODUCE, CARRY), "l2sq", variables))
        out = self.per_unit(values, (CONSUME,), "l1", variables)
        if criterion == "output":
            return out
        if criterion == "product":
            return self.per_unit(values, (PRODUCE, CARRY), "l1", variables) * out
        raise ValueError(
            f"Unknown unit criterion {criterion!r}; choose input, l1, l2, output or product."
        )

    def multiplier(self, variable, keep: np.ndarray) -> np.ndarray | None:
        """0/1 array over ``variable``: 1 where every unit its entry belongs to is kept."""
        out = None
        for bs in self.slices:
            if bs.variable is not variable:
                continue
            shape = [1] * len(variable.shape)
            shape[bs.axis] = len(bs.units)
            part = keep[bs.units].reshape(shape)
            out = part if out is None else out & part
        return out

    def describe(self) -> list[str]:
        """One line per coupling: its units and the frozen ones with their reasons."""
        lines = []
        for c in self.couplings:
            frozen = "; ".join(f"{n} kept: {why}" for why, n in c.frozen.items())
            lines.append(f"{c.name}: {len(c.units)} units" + (f" ({frozen})" if frozen else ""))
        return lines

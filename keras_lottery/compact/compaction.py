"""Compaction: a ticket as a smaller *dense* model that computes the same function.

Pruning only zeroes weights; a dense kernel full of zeros runs as fast as one
without.  What makes a network faster is fewer units.  A ticket leaves units
that are dead in one of two ways:

* **no surviving output** (every outgoing weight pruned): the unit is dropped;
* **no surviving input** (every incoming weight pruned): its output is the
  constant ``act(bias)``, which is folded into the next layer's bias
  (``bias += act(bias) @ outgoing``); then it has no output either.

Both are repeated until nothing changes.  Conv channels work alike: a channel
reaching a ``Flatten`` feeds several rows of the next Dense kernel; pooling,
activations and BatchNormalization keep a constant a constant
(BatchNormalization is carried, its parameters sliced); a constant folds into
a ``"same"``-padded convolution only when it is 0 (the zero padding would see
the difference otherwise).

Chains -- Sequential and functional models where each layer takes the output
of the one before (nested chains are flattened) -- of ``Dense``, ``Conv2D`` and
``DepthwiseConv2D`` (depth multiplier 1) with element-wise activations,
``BatchNormalization``, ``Dropout``, pooling, ``Flatten``,
``Activation``/``ReLU``/``LeakyReLU`` get all of the above; any other
single-input layer keeps the width on both of its sides (``report.kept`` says
which and why).

Any other functional graph (residual adds, concatenations, squeeze-and-excitation
gates, attention, several inputs or outputs) is compacted through its coupled
units (:mod:`keras_lottery.compact.graph`): channels that must go together --
through ``Add``/``Multiply``/..., ``Concatenate``, BatchNormalization,
depthwise, separable and grouped convolutions, pooling, reshapes keeping the
channel axis, the heads of ``MultiHeadAttention`` and ``GroupQueryAttention``
-- go as one unit when every weight that reads the unit is zero, which is what
a ticket of ``granularity="unit"`` leaves.  Widths that cannot change without
changing the function (a model input or output, the width a
LayerNormalization normalizes over, a layer without a rule) stay, and
``report.kept`` says which and why; :func:`keras_lottery.compact.register_rule`
teaches it other layers.  A subclassed model is refused with
:class:`CompactionError`.

:func:`effective_sparsity` uses the same analysis: a weight is *effective* if
it lies on a path of surviving weights from an input to an output (Vysogorets
& Kempe, "Connectivity Matters: Neural Network Pruning Through the Lens of
Effective Sparsity", JMLR 2023); the others influence the output at most
through a constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from keras_lottery.compact.graph import Graph, GraphError
from keras_lottery.compact.rebuild import RebuildError, rebuild, removable
from keras_lottery.compact.rules import Frozen, rule_for
from keras_lottery.masks.convert import sparsity
from keras_lottery.masks.masked_model import MaskedModel

#: Activations acting on each value alone (a constant stays constant, channels stay apart).
ELEMENTWISE = frozenset(
    "linear relu relu6 sigmoid tanh elu selu gelu silu swish softplus softsign hard_sigmoid "
    "hard_silu hard_swish leaky_relu exponential mish celu log_sigmoid sparse_plus "
    "squareplus".split()
)
_NOISE = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
)
_POOL = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)
_ACTIVATION_LAYERS = (keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU)


class CompactionError(ValueError):
    """The model is not something :func:`compact` can rewrite (the message says why)."""


class _NotAChain(CompactionError):
    """A functional model that is not a chain: compacted through its graph instead."""


@dataclass
class CompactionReport:
    """What :func:`compact` removed, folded and kept.

    ``units``: per weighted layer, ``(before, after)`` output units or channels.
    ``folded``: per layer, how many constant units were folded into the next bias.
    ``inputs``: indices the first layer still uses (into the flattened input if
    the first weighted layer follows a ``Flatten``, else input channels);
    ``dropped_inputs``: the compact model takes only those
    (``x.reshape(len(x), -1)[:, report.inputs]`` or ``x[..., report.inputs]``).
    ``kept``: layers whose width was kept, and why.  ``max_abs_diff``: largest
    difference from the original model's outputs on random inputs.

    For a model compacted through its graph (not a chain), ``units`` also holds
    inner axes (``"mha heads"``), ``groups`` the coupled units by name
    (``(before, after)``; ``"conv2+shortcut"`` for channels joined by a residual
    add), ``kept`` each coupling's units that stay and why;
    ``effective_sparsity`` is ``None`` and no constant is folded.
    """

    params_before: int
    params_after: int
    units: dict[str, tuple[int, int]]
    folded: dict[str, int]
    inputs: list[int]
    input_size: int
    dropped_inputs: bool
    kept: list[str]
    sparsity: float
    effective_sparsity: float | None
    max_abs_diff: float
    passes: int
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def unused_inputs(self) -> int:
        return self.input_size - len(self.inputs)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "unused_inputs": self.unused_inputs}

    def summary(self) -> str:
        lines = [
            f"parameters {self.params_before:,} -> {self.params_after:,} "
            f"({self.params_after / max(self.params_before, 1):.1%}); sparsity "
            f"{self.sparsity:.1%}"
            + (
                ""
                if self.effective_sparsity is None
                else f", effective sparsity {self.effective_sparsity:.1%}"
            )
        ]
        for name, (a, b) in self.units.items():
            folded = (
                f" ({self.folded[name]} constant units folded)" if self.folded.get(name) else ""
            )
            lines.append(f"  {name}: {a} -> {b}{folded}")
        if self.input_size:
            lines.append(
                f"  inputs used: {len(self.inputs)} of {self.input_size}"
                + (" (the compact model takes only those)" if self.dropped_inputs else "")
            )
        lines += [f"  group {k}: {a} -> {b}" for k, (a, b) in self.groups.items() if a != b]
        lines += [f"  kept: {k}" for k in self.kept]
        lines.append(f"  max |compact - original| on random inputs: {self.max_abs_diff:.3g}")
        return "\n".join(lines)


def compact(model: keras.Model, allow_input_change: bool = False):
    """A smaller dense model computing what ``model`` (a ticket or plain model) computes.

    Args:
        model: a mask-aware ticket (:func:`keras_lottery.find_ticket`) or a plain
            Keras model whose pruned weights are 0; it is not changed.
        allow_input_change: also drop the inputs the first layer never uses; the
            compact model then takes ``report.inputs`` of the (flattened) input.

            Chains only: a graph's inputs keep their width.

    Returns:
        ``(compact_model, report)``: a new, uncompiled Keras model (Sequential
        for a chain, functional for a graph) and a :class:`CompactionReport`.

    Raises:
        CompactionError: a subclassed model, or a layer that cannot be re-created
            at its new width (see the module doc).
    """
    masks, inner = _masks_and_model(model)
    try:
        nodes, input_shape = _chain(inner, masks)
    except _NotAChain:
        return _compact_graph(model, inner, masks)
    segments = _segments(nodes, input_shape)
    effective = _effective(segments)
    before = {n.layer.name: _width(n) for n in nodes if n.weighted}
    folded: dict[str, int] = {}
    passes = _compact(segments, allow_input_change, folded)
    first = segments[0]
    dropped = allow_input_change and first.input_droppable and len(first.kept) < first.size
    if not dropped:  # report the unused inputs without removing them
        first.kept = np.flatnonzero(_used(first)) if first.consumer is not None else first.kept
    new = _build(inner, nodes, input_shape, first, dropped)
    diff = _check(inner if masks is None else model, new, input_shape, first, dropped)
    report = CompactionReport(
        params_before=int(inner.count_params()),
        params_after=int(new.count_params()),
        units={k: (v, _width(n)) for (k, v), n in zip(before.items(), _weighted(nodes))},
        folded=folded,
        inputs=[int(i) for i in first.kept],
        input_size=int(first.size),
        dropped_inputs=bool(dropped),
        kept=[s.locked for s in segments if s.locked and s.locked not in _QUIET],
        sparsity=float(sparsity(model)["overall"]),
        effective_sparsity=effective["overall"],
        max_abs_diff=diff,
        passes=passes,
    )
    return new, report


def effective_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of each weight matrix that cannot influence the output, plus ``"overall"``.

    A weight is effective when it is nonzero, its input unit is reachable from
    the model's input and its output unit reaches the output through nonzero
    weights (biases ignored, as in Vysogorets & Kempe).  Layers compaction
    keeps at full width count as connected.

    Raises:
        CompactionError: ``model`` is not a chain of layers.
    """
    masks, inner = _masks_and_model(model)
    nodes, input_shape = _chain(inner, masks)
    return _effective(_segments(nodes, input_shape))


def effective_sparsity_or_none(model: keras.Model) -> dict[str, float] | None:
    """:func:`effective_sparsity`, or ``None`` for models that are not chains."""
    try:
        return effective_sparsity(model)
    except Exception:  # a statistic: never fail a search or a table because of it
        return None


def unit_outgoing(model: keras.Model, kernels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per weighted layer's kernel path: the L1 norm of each unit's outgoing weights.

    ``kernels`` overrides the kernel values (masked, by path).  Units feeding
    the output, a kept layer or a Flatten-free convolution... are measured in
    the next weighted layer's kernel; the last layer gets ``None`` entries.

    Raises:
        CompactionError: ``model`` is not a chain of layers.
    """
    masks, inner = _masks_and_model(model)
    nodes, input_shape = _chain(inner, masks)
    for n in nodes:
        if n.weighted and n.path in kernels:
            n.params[0] = np.asarray(kernels[n.path])
    out = {}
    for seg in _segments(nodes, input_shape):
        if seg.producer is None:
            continue
        if seg.consumer is None or seg.locked:
            out[seg.producer.path] = None
            continue
        k = np.abs(seg.consumer.params[0])
        if seg.consumer.kind == "dense":
            out[seg.producer.path] = k.sum(axis=1).reshape(seg.spatial, seg.width).sum(axis=0)
        elif seg.consumer.kind == "conv":
            out[seg.producer.path] = k.sum(axis=(0, 1, 3))
        else:
            out[seg.producer.path] = k.sum(axis=(0, 1, 3))
    return out


# -- a graph that is not a chain ------------------------------------------------------


def _compact_graph(model, inner: keras.Model, masks):
    """:func:`compact` through the coupled units of a functional graph."""
    try:
        graph = Graph(inner)
    except GraphError as e:
        raise CompactionError(str(e)) from None
    cache: dict[int, np.ndarray] = {}

    def values(variable) -> np.ndarray:
        if id(variable) not in cache:
            value = np.array(variable)
            if masks is not None and id(variable) in masks:
                value = np.where(masks[id(variable)], value, 0).astype(value.dtype)
            cache[id(variable)] = value
        return cache[id(variable)]

    keep = ~removable(graph, values)
    try:
        rebuilt = rebuild(graph, keep, values)
    except RebuildError as e:
        raise CompactionError(str(e)) from None
    diff, scale = _check_graph(inner if masks is None else model, rebuilt.model, graph.inputs)
    if not diff <= 1e-3 * (1.0 + scale):
        raise CompactionError(
            f"The compacted model's outputs differ from the original's by {diff:.3g} (outputs "
            f"up to {scale:.3g}): a slicing rule is wrong. Export the ticket without "
            "compaction, and report the model."
        )
    report = CompactionReport(
        params_before=int(inner.count_params()),
        params_after=int(rebuilt.model.count_params()),
        units=rebuilt.units,
        folded={},
        inputs=[],
        input_size=0,
        dropped_inputs=False,
        kept=rebuilt.kept,
        sparsity=float(sparsity(model)["overall"]),
        effective_sparsity=None,
        max_abs_diff=diff,
        passes=1,
        groups=rebuilt.groups,
    )
    return rebuilt.model, report


def _random_inputs(tensors, rng) -> list[np.ndarray]:
    out = []
    for t in tensors:
        shape = (4, *(d if d is not None else 8 for d in t.shape[1:]))
        if "int" in str(t.dtype) or "bool" in str(t.dtype):
            out.append(rng.integers(0, 2, size=shape).astype(str(t.dtype)))
        else:
            out.append(rng.normal(size=shape).astype(str(t.dtype)))
    return out


def _check_graph(reference, new: keras.Model, inputs) -> tuple[float, float]:
    """Largest ``|new - reference|`` over every output on random inputs, and the outputs' scale."""
    x = _random_inputs(inputs, np.random.default_rng(0))
    x = keras.tree.pack_sequence_as(new._inputs_struct, x)
    expected = keras.tree.flatten(reference(x, training=False))
    got = keras.tree.flatten(new(x, training=False))
    diff, scale = 0.0, 0.0
    for e, g in zip(expected, got):
        e, g = keras.ops.convert_to_numpy(e), keras.ops.convert_to_numpy(g)
        diff = max(diff, float(np.abs(e.astype(np.float64) - g).max()))
        scale = max(scale, float(np.abs(e).max()))
    return diff, scale


# -- the chain --------------------------------------------------------------------


@dataclass
class _Node:
    layer: keras.layers.Layer
    kind: str  # dense, conv, depthwise, bn, elementwise, pool, flatten, barrier
    in_shape: tuple
    out_shape: tuple
    params: list[np.ndarray]
    why: str = ""
    bias_added: bool = False

    @property
    def weighted(self) -> bool:
        return self.kind in ("dense", "conv", "depthwise")

    @property
    def path(self) -> str:
        return self.layer.weights[0].path

    def has_bias(self) -> bool:
        return bool(self.layer.use_bias) or self.bias_added


def _weighted(nodes):
    return [n for n in nodes if n.weighted]


def _width(node: _Node) -> int:
    k = node.params[0]
    return int(k.shape[2] if node.kind == "depthwise" else k.shape[-1])


def _masks_and_model(model):
    if isinstance(model, MaskedModel):
        return {id(pw.kernel): np.asarray(pw.mask) for pw in model.prunable_weights()}, model.model
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    return None, model


def _layers_of(model: keras.Model) -> list:
    """The layers of a chain model, in order (nested chains flattened)."""
    if isinstance(model, keras.Sequential):
        found = []
        for layer in model.layers:
            found += _layers_of(layer) if isinstance(layer, keras.Model) else [layer]
        return found
    if not getattr(model, "_operations", None) or not getattr(model, "outputs", None):
        raise CompactionError(
            f"Model '{model.name}' ({type(model).__name__}) is subclassed: compaction "
            "rewrites a graph of layers and needs a Sequential or functional model."
        )
    outputs = keras.tree.flatten(model.outputs)
    if len(model.inputs) != 1 or len(outputs) != 1:
        raise _NotAChain(
            f"Model '{model.name}' has {len(model.inputs)} inputs and {len(outputs)} outputs; "
            "compaction handles chains with one input and one output."
        )
    order, tensor, start = [], outputs[0], model.inputs[0]
    while tensor is not start:
        op, node_index, _ = tensor._keras_history
        node = op._inbound_nodes[node_index]
        if len(node.input_tensors) != 1:
            names = [t._keras_history[0].name for t in node.input_tensors]
            raise _NotAChain(
                f"'{op.name}' ({type(op).__name__}) takes {len(node.input_tensors)} tensors "
                f"(from {names}): compaction handles chains of layers, not residual adds, "
                "concatenations or attention; export the ticket without compaction, or "
                "compact a chain model."
            )
        if not isinstance(op, keras.layers.Layer):
            raise _NotAChain(
                f"'{op.name}' is a raw operation ({type(op).__name__}), not a layer: wrap it "
                "in a layer, or export the ticket without compaction."
            )
        order.append(op)
        tensor = node.input_tensors[0]
    found = []
    for layer in reversed(order):
        found += _layers_of(layer) if isinstance(layer, keras.Model) else [layer]
    return found


def _elementwise_activation(layer) -> bool:
    act = getattr(layer, "activation", None)
    return act is None or getattr(act, "__name__", "") in ELEMENTWISE


def _classify(layer, in_shape) -> tuple[str, str]:
    """``(kind, why its width is kept)`` of one layer of the chain."""
    name = f"'{layer.name}' ({type(layer).__name__})"
    if isinstance(layer, keras.layers.Dense) and type(layer) is keras.layers.Dense:
        if len(in_shape) != 2:
            return "barrier", f"{name} acts on a {len(in_shape) - 1}-D input; only 1-D is compacted"
        kind = "dense"
    elif type(layer) is keras.layers.DepthwiseConv2D:
        if layer.depth_multiplier != 1 or layer.data_format != "channels_last":
            return "barrier", f"{name} has depth_multiplier > 1 or channels_first data"
        kind = "depthwise"
    elif type(layer) is keras.layers.Conv2D:
        if layer.groups != 1 or layer.data_format != "channels_last":
            return "barrier", f"{name} is grouped or channels_first"
        kind = "conv"
    elif isinstance(layer, keras.layers.BatchNormalization):
        if layer.axis not in (-1, len(in_shape) - 1):
            return "barrier", f"{name} normalises axis {layer.axis}, not the channels"
        return "bn", ""
    elif isinstance(layer, _ACTIVATION_LAYERS):
        if isinstance(layer, keras.layers.Activation) and not _elementwise_activation(layer):
            return "barrier", f"{name} is not element-wise (softmax mixes channels)"
        return "elementwise", ""
    elif isinstance(layer, _NOISE):
        return "elementwise", ""
    elif isinstance(layer, _POOL):
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return "barrier", f"{name} is channels_first"
        if getattr(layer, "keepdims", False):
            return "barrier", f"{name} keeps its spatial dimensions"
        return "pool", ""
    elif isinstance(layer, keras.layers.Flatten):
        return "flatten", ""
    else:
        return "barrier", f"{name} is a layer compaction does not rewrite"
    return kind, ""


def _chain(model: keras.Model, masks) -> tuple[list[_Node], tuple]:
    layers = _layers_of(model)
    if not model.built or not getattr(model, "inputs", None):
        raise CompactionError(
            f"Model '{model.name}' has no known input: build it with keras.Input(...) first."
        )
    shape = tuple(model.inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise CompactionError(
            f"Model '{model.name}' has an input of unknown size {shape}: compaction needs "
            "fixed input dimensions (except the batch)."
        )
    nodes, in_shape = [], shape
    for layer in layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if sum(1 for other in layers if other is layer) > 1:
            raise _NotAChain(f"Layer '{layer.name}' is used twice; compaction needs each once.")
        out_shape = tuple(layer.compute_output_shape(in_shape))
        kind, why = _classify(layer, in_shape)
        if kind == "barrier" and not isinstance(rule_for(layer), Frozen | None):
            raise _NotAChain(f"{why}, but its graph rule can: compacted as a graph")
        params = []
        for w in layer.weights:
            value = np.array(w)
            if masks is not None and id(w) in masks:
                value = np.where(masks[id(w)], value, 0).astype(value.dtype)
            params.append(value)
        nodes.append(_Node(layer, kind, in_shape, out_shape, params, why))
        in_shape = out_shape
    if not _weighted(nodes):
        raise CompactionError(
            f"Model '{model.name}' has no Dense, Conv2D or DepthwiseConv2D layer to compact."
        )
    return nodes, shape


# -- segments: a producer's channels on their way to the next weighted layer ---------

_QUIET = ("the input", "after a kept layer", "the output")


@dataclass
class _Segment:
    """Channels from ``producer`` (None: the input or a kept layer) to ``consumer``.

    ``width`` channels; ``spatial`` consumer rows per channel (a Flatten of a
    feature map).  For the input segment, ``kept`` are the original input
    indices still present and ``size`` their original number.
    """

    producer: _Node | None
    between: list[_Node]
    consumer: _Node | None
    width: int
    spatial: int = 1
    locked: str = ""
    kept: np.ndarray | None = None
    size: int = 0
    input_droppable: bool = False
    flat_input: bool = False

    def rows(self, channels) -> np.ndarray:
        c = np.asarray(channels)
        return (np.arange(self.spatial)[:, None] * self.width + c[None, :]).ravel()


def _segments(nodes: list[_Node], input_shape: tuple) -> list[_Segment]:
    pieces, current, source = [], [], None
    for node in nodes:
        if node.weighted or node.kind == "barrier":
            pieces.append((source, current, node))
            current, source = [], node
        else:
            current.append(node)
    pieces.append((source, current, None))
    segments = []
    for source, between, end in pieces:
        producer = source if source is not None and source.weighted else None
        consumer = end if end is not None and end.weighted else None
        flattens = [n for n in between if n.kind == "flatten"]
        width = _width(producer) if producer is not None else None
        seg = _Segment(producer, between, consumer, width or 0)
        if source is None:  # the model input
            seg.locked = "the input"
            seg.size = int(np.prod(input_shape[1:])) if flattens else int(input_shape[-1])
            seg.width = seg.size
            seg.kept = np.arange(seg.size)
            seg.flat_input = bool(flattens)
            before = between[: between.index(flattens[0])] if flattens else between
            seg.input_droppable = consumer is not None and all(
                n.kind == "elementwise" for n in before
            )
            seg.locked = "" if consumer is not None else "the input"
        elif producer is None:
            seg.locked = "after a kept layer"
            seg.width = int(source.out_shape[-1])
        elif end is not None and end.kind == "barrier":
            seg.locked = end.why
        elif end is None:
            seg.locked = "the output"
        if producer is not None and not _elementwise_activation(producer.layer) and not seg.locked:
            seg.locked = f"'{producer.layer.name}' has an activation that is not element-wise"
        if flattens and producer is not None:
            shape = flattens[0].in_shape
            seg.spatial = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
            after = between[between.index(flattens[0]) + 1 :]
            if seg.spatial > 1 and any(n.kind != "elementwise" for n in after):
                seg.locked = f"'{after[0].layer.name}' after a Flatten of a feature map"
        if len(flattens) > 1 or (flattens and consumer is not None and consumer.kind != "dense"):
            seg.locked = "a Flatten that does not feed a Dense layer"
        segments.append(seg)
    return segments


def _groups(segments) -> list[list[int]]:
    """Segment indices linked by depthwise layers (a channel runs through all of them)."""
    groups, current = [], []
    for i, seg in enumerate(segments):
        current.append(i)
        if seg.consumer is None or seg.consumer.kind != "depthwise":
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def _used(seg: _Segment) -> np.ndarray:
    """Per channel: does the consumer still use it (any nonzero weight)?"""
    q = seg.consumer
    k = q.params[0] != 0
    if q.kind == "dense":
        return k.any(axis=1).reshape(seg.spatial, seg.width).any(axis=0)
    return k.any(axis=(0, 1, 3))


def _no_input(node: _Node) -> np.ndarray:
    """Per output channel of a weighted node: are all its incoming weights zero?"""
    k = node.params[0] != 0
    axes = {"dense": (0,), "conv": (0, 1, 2), "depthwise": (0, 1, 3)}[node.kind]
    return ~k.any(axis=axes)


def _bias(node: _Node) -> np.ndarray:
    if node.has_bias():
        return node.params[1]
    return np.zeros(_width(node), node.params[0].dtype)


def _constant_values(seg: _Segment) -> np.ndarray:
    """Each producer channel's value at the consumer's input if it had no input weights."""
    p = seg.producer
    value = _apply(p.layer.activation, _bias(p))
    for n in seg.between:
        if n.kind == "bn":
            value = _batch_norm(n, value)
        elif n.kind == "elementwise" and not isinstance(n.layer, _NOISE):
            value = _apply(n.layer, value)
    return value.astype(np.float64)


def _apply(fn, value: np.ndarray) -> np.ndarray:
    out = fn(keras.ops.convert_to_tensor(value[None, :].astype("float32")))
    return keras.ops.convert_to_numpy(out)[0].astype(np.float64)


def _batch_norm(n: _Node, value: np.ndarray) -> np.ndarray:
    layer, params = n.layer, list(n.params)
    gamma = params.pop(0) if layer.scale else 1.0
    beta = params.pop(0) if layer.center else 0.0
    mean, var = params[0], params[1]
    return (value - mean) / np.sqrt(var + layer.epsilon) * gamma + beta


def _fold(seg: _Segment, channels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Add constant channels' contribution to the consumer's bias and zero their weights.

    Returns the channels folded: a nonzero constant cannot enter a "same" padding.
    """
    q = seg.consumer
    if q.kind != "dense" and q.layer.padding != "valid":
        channels = channels[values[channels] == 0]
    if not len(channels):
        return channels
    if not q.has_bias():
        q.params.insert(1, np.zeros(_width(q), q.params[0].dtype))
        q.bias_added = True
    k, bias = q.params[0], q.params[1]
    v = values[channels]
    if q.kind == "dense":
        rows = seg.rows(channels)
        add = np.tile(v, seg.spatial) @ k[rows].astype(np.float64)
        k[rows] = 0
    elif q.kind == "conv":
        add = v @ k[:, :, channels, :].astype(np.float64).sum(axis=(0, 1))
        k[:, :, channels, :] = 0
    else:
        add = np.zeros(len(bias))
        add[channels] = v * k[:, :, channels, 0].astype(np.float64).sum(axis=(0, 1))
        k[:, :, channels, :] = 0
    q.params[1] = (bias.astype(np.float64) + add).astype(bias.dtype)
    return channels


def _remove(segments: list[_Segment], group: list[int], drop: np.ndarray) -> None:
    """Remove channels ``drop`` from every segment of a depthwise-linked group."""
    keep = np.setdiff1d(np.arange(segments[group[0]].width), drop)
    for g in group:
        seg = segments[g]
        p, q = seg.producer, seg.consumer
        if p is not None:
            p.params[0] = np.take(p.params[0], keep, axis=2 if p.kind == "depthwise" else -1)
            if p.has_bias():
                p.params[1] = p.params[1][keep]
        for n in seg.between:
            if n.kind == "bn":
                n.params = [w[keep] for w in n.params]
        if q is not None and q.kind == "dense":
            q.params[0] = q.params[0][seg.rows(keep)]
        elif q is not None and q.kind == "conv":
            q.params[0] = q.params[0][:, :, keep, :]
        if seg.kept is not None:
            seg.kept = seg.kept[keep]
        seg.width = len(keep)


def _compact(segments, allow_input_change: bool, folded: dict[str, int]) -> int:
    groups = _groups(segments)
    passes, changed = 0, True
    while changed:
        changed, passes = False, passes + 1
        # 1. Units with no surviving input are constant: fold them into the next bias.
        for seg in segments:
            if seg.locked or seg.producer is None:
                continue
            todo = np.flatnonzero(_no_input(seg.producer) & _used(seg))
            if len(todo):
                done = _fold(seg, todo, _constant_values(seg))
                if len(done):
                    name = seg.producer.layer.name
                    folded[name] = folded.get(name, 0) + len(done)
                    changed = True
        # 2. Units with no surviving output are removed (with their depthwise companions).
        for group in groups:
            first, last = segments[group[0]], segments[group[-1]]
            if any(segments[g].locked for g in group) or last.consumer is None:
                continue
            if first.producer is None and not (allow_input_change and first.input_droppable):
                continue
            drop = np.flatnonzero(~_used(last))
            if len(drop) == first.width:
                drop = drop[1:]  # keep one (zero) unit so that the layer still exists
            if len(drop):
                _remove(segments, group, drop)
                changed = True
    return passes


# -- effective sparsity ---------------------------------------------------------------


def _effective(segments: list[_Segment]) -> dict[str, float]:
    forward = []  # per segment: channels reachable from the input
    alive = None
    for seg in segments:
        if seg.producer is None:
            alive = np.ones(seg.width, bool)
        forward.append(alive)
        q = seg.consumer
        if q is None:
            continue
        k = q.params[0] != 0
        if q.kind == "dense":
            alive = (k & np.tile(alive, seg.spatial)[:, None]).any(axis=0)
        elif q.kind == "conv":
            alive = (k & alive[None, None, :, None]).any(axis=(0, 1, 2))
        else:
            alive = alive & k.any(axis=(0, 1, 3))
    backward: list = [None] * len(segments)
    need = None
    for i in range(len(segments) - 1, -1, -1):
        seg = segments[i]
        q = seg.consumer
        if q is None:
            need = np.ones(seg.width, bool)
        else:
            k = q.params[0] != 0
            if q.kind == "dense":
                rows = (k & need[None, :]).any(axis=1)
                need = rows.reshape(seg.spatial, seg.width).any(axis=0)
            elif q.kind == "conv":
                need = (k & need[None, None, None, :]).any(axis=(0, 1, 3))
            else:
                need = need & k.any(axis=(0, 1, 3))
        backward[i] = need
    out, pruned, total = {}, 0, 0
    for i, seg in enumerate(segments):
        q = seg.consumer
        if q is None:
            continue
        k = q.params[0] != 0
        fwd, bwd = forward[i], backward[i + 1]
        if q.kind == "dense":
            effective = k & np.tile(fwd, seg.spatial)[:, None] & bwd[None, :]
        elif q.kind == "conv":
            effective = k & fwd[None, None, :, None] & bwd[None, None, None, :]
        else:
            effective = k & (fwd & bwd)[None, None, :, None]
        n_eff = int(effective.sum())
        out[q.path] = 1.0 - n_eff / k.size
        pruned += k.size - n_eff
        total += k.size
    out["overall"] = pruned / total if total else 0.0
    return out


# -- the compact model -------------------------------------------------------------------


def _build(model, nodes, input_shape, first: _Segment, dropped: bool) -> keras.Model:
    if dropped and first.flat_input:
        shape = (len(first.kept),)
    elif dropped:
        shape = (*input_shape[1:-1], len(first.kept))
    else:
        shape = tuple(input_shape[1:])
    new = keras.Sequential(name=f"{model.name}_compact")
    new.add(keras.Input(shape, dtype=model.inputs[0].dtype))
    pending = []
    for node in nodes:
        if dropped and first.flat_input and node.kind == "flatten" and node in first.between:
            continue
        config = node.layer.get_config()
        if node.kind == "dense":
            config["units"] = _width(node)
        elif node.kind == "conv":
            config["filters"] = _width(node)
        if node.bias_added:
            config["use_bias"] = True
        try:
            layer = type(node.layer).from_config(config)
        except Exception as e:
            raise CompactionError(
                f"Layer '{node.layer.name}' ({type(node.layer).__name__}) cannot be re-created "
                f"from its config ({type(e).__name__}: {e}); give it get_config/from_config."
            ) from e
        new.add(layer)
        pending.append((layer, node.params))
    for layer, params in pending:
        layer.set_weights(params)
    return new


def _check(reference, new, input_shape, first: _Segment, dropped: bool) -> float:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *input_shape[1:])).astype("float32")
    expected = keras.ops.convert_to_numpy(reference(x, training=False))
    if dropped and first.flat_input:
        x = x.reshape(len(x), -1)[:, first.kept]
    elif dropped:
        x = x[..., first.kept]
    got = keras.ops.convert_to_numpy(new(x, training=False))
    return float(np.abs(got - expected).max())

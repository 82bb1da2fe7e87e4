"""How each kind of layer is sliced: the rules compaction reads, and the registry for more.

Compaction sees a functional model as tensors joined by layer calls.  Each
tensor's last axis holds its *channels* (units, features, filters).  A rule
tells, for one call of one kind of layer:

* which channels of its inputs and outputs are the *same* channel
  (:class:`Link`: an ``Add`` joins channel ``c`` of every input and of its
  output; a ``Concatenate`` shifts each input's channels by an offset; a
  depthwise convolution joins input channel ``c`` with its ``depth_multiplier``
  outputs);
* which entries of its weights belong to which channel (:class:`Slice`):
  ``"produce"`` (a Dense column, a conv filter, a bias entry), ``"consume"``
  (the weights that read an input channel: a Dense row, a conv's input slice)
  or ``"carry"`` (a per-channel parameter on the way: BatchNormalization, a
  depthwise filter, an attention head's query/key/value weights);
* which widths must stay (``frozen``, with the reason), and which axes inside
  the layer can be removed too (``inner``: the heads of an attention layer);
* the layer's config with the widths it keeps (:meth:`LayerRule.config`).

Channels joined by links form one *unit*; a unit can be removed exactly when
every weight that consumes it is zero.  A layer with no rule keeps the width of
every tensor it touches, and the report says so: register a rule for it with
:func:`register_rule` (subclassed blocks, custom layers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

PRODUCE, CONSUME, CARRY = "produce", "consume", "carry"
ROLES = (PRODUCE, CONSUME, CARRY)

#: Activations acting on each value alone (channels stay apart).
ELEMENTWISE = frozenset(
    "linear relu relu6 sigmoid tanh elu selu gelu silu swish softplus softsign hard_sigmoid "
    "hard_silu hard_swish leaky_relu exponential mish celu log_sigmoid sparse_plus "
    "squareplus".split()
)

#: A port: a tensor of the call (a ``KerasTensor``) or the name of an axis inside the layer.
Port = Any


@dataclass
class Slice:
    """Entries of ``variable`` along ``axis`` that belong to channels of ``port``.

    ``index[i]`` is the channel of ``port`` that position ``i`` along ``axis``
    belongs to (``None``: position ``i`` is channel ``i``).
    """

    variable: keras.Variable
    axis: int
    port: Port
    role: str
    index: np.ndarray | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"Slice role must be one of {ROLES}, got {self.role!r}.")


@dataclass
class Link:
    """Channel ``a_index[k]`` of port ``a`` is channel ``b_index[k]`` of port ``b``.

    ``None`` indices: channel ``k`` of ``a`` is channel ``k`` of ``b`` (same width).
    """

    a: Port
    b: Port
    a_index: np.ndarray | None = None
    b_index: np.ndarray | None = None


@dataclass
class LayerSpec:
    """What a rule says about one call of a layer (see the module doc)."""

    slices: list[Slice] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    frozen: list[tuple[Port, str]] = field(default_factory=list)
    inner: dict[str, int] = field(default_factory=dict)


@dataclass
class Call:
    """One call of a layer in the graph: its tensors and arguments."""

    layer: Any
    inputs: list
    outputs: list
    args: tuple
    kwargs: dict

    def argument(self, position: int, name: str, default=None):
        """The argument given at ``position`` or as ``name`` (``default`` if neither)."""
        if len(self.args) > position:
            return self.args[position]
        return self.kwargs.get(name, default)

    @property
    def name(self) -> str:
        return f"'{self.layer.name}' ({type(self.layer).__name__})"


class Keep:
    """The channels kept on each port of a call (for :meth:`LayerRule.config`)."""

    def __init__(self, lookup: Callable[[Port], np.ndarray]):
        self._lookup = lookup

    def __getitem__(self, port: Port) -> np.ndarray:
        return self._lookup(port)

    def count(self, port: Port) -> int:
        return len(self._lookup(port))


def width(tensor) -> int:
    """Channels of a tensor: its last dimension (0 if unknown or a scalar per example)."""
    shape = tuple(tensor.shape)
    return int(shape[-1]) if len(shape) >= 2 and shape[-1] is not None else 0


def freeze_all(call: Call, reason: str) -> LayerSpec:
    """A spec keeping the width of every tensor of ``call`` (for ``reason``)."""
    return LayerSpec(frozen=[(t, reason) for t in [*call.inputs, *call.outputs]])


class LayerRule:
    """How one kind of layer is sliced: subclass, then :func:`register_rule`.

    :meth:`spec` describes a call (links, slices, frozen widths, inner axes);
    :meth:`config` returns the layer's config with the kept widths (the
    default: the config as it is, for layers that take their width from their
    input).  Compaction re-creates the layer with ``from_config``, calls it
    and sets its weights: each weight of ``layer.weights`` sliced as the
    spec's slices say, in the same order.
    """

    def spec(self, layer, call: Call) -> LayerSpec:  # pragma: no cover - interface
        raise NotImplementedError

    def config(self, layer, call: Call, keep: Keep) -> dict:
        return layer.get_config()


_RULES: dict[type, LayerRule] = {}


def register_rule(layer_type: type, rule: LayerRule) -> None:
    """Tell compaction how layers of exactly ``layer_type`` are sliced (replaces any rule).

    ``layer_type`` is a layer class, or the class of a raw operation of a functional
    graph (``keras.ops``), which compaction calls again as it is.
    """
    if not isinstance(layer_type, type):
        raise TypeError(f"register_rule takes a layer class, got {layer_type!r}.")
    if not isinstance(rule, LayerRule):
        raise TypeError(
            f"register_rule takes a LayerRule instance for {layer_type.__name__}, got "
            f"{type(rule).__name__}: subclass keras_lottery.compact.LayerRule."
        )
    _RULES[layer_type] = rule


def rule_for(layer) -> LayerRule | None:
    """The rule of ``layer``'s exact class (a subclass may call differently), or ``None``."""
    return _RULES.get(type(layer))


# -- the built-in rules ------------------------------------------------------------------


def _elementwise(activation) -> bool:
    return activation is None or getattr(activation, "__name__", "") in ELEMENTWISE


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in ("channels_last", None)


def _activation_frozen(layer, call: Call, spec: LayerSpec) -> LayerSpec:
    if not _elementwise(getattr(layer, "activation", None)):
        act = getattr(layer.activation, "__name__", layer.activation)
        spec.frozen.append((call.outputs[0], f"{call.name} applies {act}, which mixes its units"))
    return spec


class ChannelWise(LayerRule):
    """Each output channel depends on the same input channel only (activations, pooling...).

    Inputs of the output's width share its channels; an input of width 1 is
    broadcast.  Weights whose last axis is the channel axis (BatchNormalization,
    PReLU) are carried.
    """

    def spec(self, layer, call):
        if not _channels_last(layer):
            return freeze_all(call, f"{call.name} is channels_first")
        y = call.outputs[0]
        c = width(y)
        spec = LayerSpec()
        for x in call.inputs:
            if width(x) == c:
                spec.links.append(Link(x, y))
            else:
                spec.frozen.append((x, f"{call.name} broadcasts an input of width {width(x)}"))
        for v in layer.weights:
            if len(v.shape) and v.shape[-1] == c:
                spec.slices.append(Slice(v, len(v.shape) - 1, y, CARRY))
            elif len(v.shape):
                return freeze_all(call, f"{call.name} has a weight {v.path} not per channel")
        return spec


class ActivationRule(ChannelWise):
    """``Activation``: channel-wise unless the function mixes channels (softmax)."""

    def spec(self, layer, call):
        if not _elementwise(layer.activation):
            act = getattr(layer.activation, "__name__", layer.activation)
            return freeze_all(call, f"{call.name} applies {act}, which mixes channels")
        return super().spec(layer, call)


class BatchNormRule(ChannelWise):
    def spec(self, layer, call):
        rank = len(call.inputs[0].shape)
        if layer.axis not in (-1, rank - 1, [rank - 1], [-1]):
            return freeze_all(call, f"{call.name} normalizes axis {layer.axis}, not channels")
        return super().spec(layer, call)


class RescalingRule(ChannelWise):
    def spec(self, layer, call):
        if np.size(layer.scale) > 1 or np.size(layer.offset) > 1:
            return freeze_all(call, f"{call.name} scales each channel by its own constant")
        return super().spec(layer, call)


class ElementwiseOp(LayerRule):
    """A raw operation of a functional graph (``x + y``, ``keras.ops.relu(x)``) acting on
    each value alone; a constant array among its arguments keeps the widths."""

    def spec(self, op, call):
        tensors = {id(t) for t in call.inputs}
        for value in [*call.args, *call.kwargs.values()]:
            if id(value) not in tensors and np.ndim(value) > 0:
                return freeze_all(call, f"{call.name} takes a constant array")
        y = call.outputs[0]
        spec = LayerSpec()
        for x in call.inputs:
            if width(x) == width(y):
                spec.links.append(Link(x, y))
            else:
                spec.frozen.append((x, f"{call.name} broadcasts an input of width {width(x)}"))
        return spec


class Frozen(LayerRule):
    """A layer whose widths all stay, for a fixed reason."""

    def __init__(self, why: str):
        self.why = why

    def spec(self, layer, call):
        return freeze_all(call, f"{call.name} {self.why}")


class ConcatenateRule(LayerRule):
    """Channels of each input at their offset in the output (channel axis), else a merge."""

    def spec(self, layer, call):
        y = call.outputs[0]
        rank = len(y.shape)
        if layer.axis % rank != rank - 1:
            return ChannelWise().spec(layer, call)
        spec, offset = LayerSpec(), 0
        for x in call.inputs:
            n = width(x)
            spec.links.append(Link(x, y, np.arange(n), np.arange(offset, offset + n)))
            offset += n
        return spec


class DenseRule(LayerRule):
    def spec(self, layer, call):
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            return freeze_all(call, f"{call.name} is LoRA-enabled or quantized")
        x, y = call.inputs[0], call.outputs[0]
        spec = LayerSpec(
            slices=[Slice(layer.kernel, 0, x, CONSUME), Slice(layer.kernel, 1, y, PRODUCE)]
        )
        if layer.use_bias:
            spec.slices.append(Slice(layer.bias, 0, y, PRODUCE))
        return _activation_frozen(layer, call, spec)

    def config(self, layer, call, keep):
        return {**layer.get_config(), "units": keep.count(call.outputs[0])}


class ConvRule(LayerRule):
    """``Conv1D/2D/3D``; a grouped one removes whole groups (input and output channels)."""

    def spec(self, layer, call):
        if not _channels_last(layer):
            return freeze_all(call, f"{call.name} is channels_first")
        x, y = call.inputs[0], call.outputs[0]
        k = layer.kernel
        rank = len(k.shape)
        if layer.groups == 1:
            slices = [Slice(k, rank - 2, x, CONSUME), Slice(k, rank - 1, y, PRODUCE)]
            spec = LayerSpec(slices=slices)
        else:
            g, cin, cout = layer.groups, width(x), width(y)
            spec = LayerSpec(
                inner={"groups": g},
                links=[
                    Link(x, "groups", np.arange(cin), np.arange(cin) // (cin // g)),
                    Link(y, "groups", np.arange(cout), np.arange(cout) // (cout // g)),
                ],
                slices=[Slice(k, rank - 1, y, CARRY)],
            )
        if layer.use_bias:
            spec.slices.append(Slice(layer.bias, 0, y, PRODUCE if layer.groups == 1 else CARRY))
        return _activation_frozen(layer, call, spec)

    def config(self, layer, call, keep):
        config = {**layer.get_config(), "filters": keep.count(call.outputs[0])}
        if layer.groups != 1:
            config["groups"] = keep.count("groups")
        return config


class DepthwiseRule(LayerRule):
    """``DepthwiseConv1D/2D``: input channel ``c`` and its ``depth_multiplier`` outputs."""

    def spec(self, layer, call):
        if not _channels_last(layer):
            return freeze_all(call, f"{call.name} is channels_first")
        x, y = call.inputs[0], call.outputs[0]
        m, c = layer.depth_multiplier, width(x)
        k = layer.kernel
        spec = LayerSpec(
            links=[Link(x, y, np.repeat(np.arange(c), m), np.arange(c * m))],
            slices=[Slice(k, len(k.shape) - 2, x, CARRY)],
        )
        if layer.use_bias:
            spec.slices.append(Slice(layer.bias, 0, y, CARRY))
        return _activation_frozen(layer, call, spec)


class SeparableRule(LayerRule):
    """``SeparableConv1D/2D``: a depthwise filter per input channel, then a pointwise conv."""

    def spec(self, layer, call):
        if not _channels_last(layer):
            return freeze_all(call, f"{call.name} is channels_first")
        x, y = call.inputs[0], call.outputs[0]
        m, c = layer.depth_multiplier, width(x)
        dk, pk = layer.depthwise_kernel, layer.pointwise_kernel
        spec = LayerSpec(
            slices=[
                Slice(dk, len(dk.shape) - 2, x, CARRY),
                Slice(pk, len(pk.shape) - 2, x, CONSUME, np.repeat(np.arange(c), m)),
                Slice(pk, len(pk.shape) - 1, y, PRODUCE),
            ]
        )
        if layer.use_bias:
            spec.slices.append(Slice(layer.bias, 0, y, PRODUCE))
        return _activation_frozen(layer, call, spec)

    def config(self, layer, call, keep):
        return {**layer.get_config(), "filters": keep.count(call.outputs[0])}


class FlattenRule(LayerRule):
    """Channel ``c`` of a feature map is every ``c``-th entry of the flat vector."""

    def spec(self, layer, call):
        if not _channels_last(layer):
            return freeze_all(call, f"{call.name} is channels_first")
        x, y = call.inputs[0], call.outputs[0]
        c, n = width(x), width(y)
        if not c or not n:
            return freeze_all(call, f"{call.name} has an input of unknown size")
        return LayerSpec(links=[Link(x, y, np.tile(np.arange(c), n // c), np.arange(n))])


class ReshapeRule(LayerRule):
    """A reshape keeping the channel axis last and whole; any other keeps its widths."""

    def spec(self, layer, call):
        x, y = call.inputs[0], call.outputs[0]
        if width(x) and width(x) == width(y) and len(y.shape) >= 2:
            return LayerSpec(links=[Link(x, y)])
        return freeze_all(call, f"{call.name} moves values across the channel axis")

    def config(self, layer, call, keep):
        config = layer.get_config()
        target = list(config["target_shape"])
        target[-1] = keep.count(call.outputs[0])
        return {**config, "target_shape": tuple(target)}


class PermuteRule(LayerRule):
    def spec(self, layer, call):
        if tuple(layer.dims)[-1] == len(layer.dims):
            return LayerSpec(links=[Link(call.inputs[0], call.outputs[0])])
        return freeze_all(call, f"{call.name} moves the channel axis")


class EmbeddingRule(LayerRule):
    def spec(self, layer, call):
        if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
            return freeze_all(call, f"{call.name} is LoRA-enabled or quantized")
        y = call.outputs[0]
        return LayerSpec(
            slices=[Slice(layer.embeddings, 1, y, PRODUCE)],
            frozen=[(x, f"{call.name} reads token ids") for x in call.inputs],
        )

    def config(self, layer, call, keep):
        return {**layer.get_config(), "output_dim": keep.count(call.outputs[0])}


def _attention_inputs(layer, call):
    query = call.argument(0, "query")
    value = call.argument(1, "value")
    key = call.argument(2, "key")
    key = value if key is None else key
    return query, value, key


def _default_attention_axes(layer, query) -> bool:
    axes = getattr(layer, "_attention_axes", None)
    rank = len(query.shape)
    return axes is None or tuple(a % rank for a in axes) == (rank - 2,)


class MultiHeadAttentionRule(LayerRule):
    """Whole heads: query, key, value and output weights of a head go together."""

    def spec(self, layer, call):
        query, value, key = _attention_inputs(layer, call)
        y = call.outputs[0]
        if not _default_attention_axes(layer, query):
            return freeze_all(call, f"{call.name} attends over custom axes")
        q, k, v, o = layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense
        slices = []
        for dense, source in ((q, query), (k, key), (v, value)):
            slices.append(Slice(dense.kernel, 0, source, CONSUME))
            slices.append(Slice(dense.kernel, 1, "heads", CARRY))
            if dense.bias is not None:
                slices.append(Slice(dense.bias, 0, "heads", CARRY))
        slices += [Slice(o.kernel, 0, "heads", CONSUME), Slice(o.kernel, 2, y, PRODUCE)]
        if o.bias is not None:
            slices.append(Slice(o.bias, 0, y, PRODUCE))
        used = {id(query), id(key), id(value), id(y)}
        frozen = [
            (t, f"{call.name} takes it as a mask or returns it as scores")
            for t in [*call.inputs, *call.outputs]
            if id(t) not in used
        ]
        if len(o.kernel.shape) != 3:
            return freeze_all(call, f"{call.name} has a multi-dimensional output_shape")
        return LayerSpec(slices=slices, frozen=frozen, inner={"heads": layer.num_heads})

    def config(self, layer, call, keep):
        query = _attention_inputs(layer, call)[0]
        config = {**layer.get_config(), "num_heads": keep.count("heads")}
        out = keep.count(call.outputs[0])
        if config.get("output_shape") or out != keep.count(query):
            config["output_shape"] = out
        return config


class GroupQueryAttentionRule(LayerRule):
    """A key/value head with the query heads that share it, and the output rows they feed."""

    def spec(self, layer, call):
        query, value, key = _attention_inputs(layer, call)
        y = call.outputs[0]
        if getattr(layer, "use_gate", False):
            return freeze_all(call, f"{call.name} has a gate")
        q, k, v, o = layer._query_dense, layer._key_dense, layer._value_dense, layer._output_dense
        group = np.arange(layer.num_query_heads) // (
            layer.num_query_heads // layer.num_key_value_heads
        )
        slices = [
            Slice(q.kernel, 0, query, CONSUME),
            Slice(q.kernel, 1, "kv_heads", CARRY, group),
            Slice(k.kernel, 0, key, CONSUME),
            Slice(k.kernel, 1, "kv_heads", CARRY),
            Slice(v.kernel, 0, value, CONSUME),
            Slice(v.kernel, 1, "kv_heads", CARRY),
            Slice(o.kernel, 0, "kv_heads", CONSUME, group),
            Slice(o.kernel, 2, y, PRODUCE),
        ]
        for dense, index in ((q, group), (k, None), (v, None)):
            if dense.bias is not None:
                slices.append(Slice(dense.bias, 0, "kv_heads", CARRY, index))
        if o.bias is not None:
            slices.append(Slice(o.bias, 0, y, PRODUCE))
        used = {id(query), id(key), id(value), id(y)}
        frozen = [
            (t, f"{call.name} takes it as a mask or returns it as scores")
            for t in [*call.inputs, *call.outputs]
            if id(t) not in used
        ]
        # Its output has the query's width (no output_shape): the two widths stay equal.
        links = [Link(query, y)]
        return LayerSpec(
            slices=slices, links=links, frozen=frozen, inner={"kv_heads": layer.num_key_value_heads}
        )

    def config(self, layer, call, keep):
        repeats = layer.num_query_heads // layer.num_key_value_heads
        n = keep.count("kv_heads")
        return {**layer.get_config(), "num_query_heads": n * repeats, "num_key_value_heads": n}


_CHANNEL_WISE = (
    "Dropout SpatialDropout1D SpatialDropout2D SpatialDropout3D GaussianNoise GaussianDropout "
    "AlphaDropout ReLU LeakyReLU PReLU ELU ThresholdedReLU "
    "MaxPooling1D MaxPooling2D MaxPooling3D AveragePooling1D AveragePooling2D AveragePooling3D "
    "GlobalAveragePooling1D GlobalAveragePooling2D GlobalAveragePooling3D GlobalMaxPooling1D "
    "GlobalMaxPooling2D GlobalMaxPooling3D ZeroPadding1D ZeroPadding2D ZeroPadding3D "
    "Cropping1D Cropping2D Cropping3D UpSampling1D UpSampling2D UpSampling3D Identity "
    "Add Subtract Multiply Maximum Minimum Average Normalization ActivityRegularization"
).split()
_NORMALIZES = "LayerNormalization GroupNormalization UnitNormalization RMSNormalization".split()
#: Raw operations acting on each value alone, by module of ``keras.src.ops``.
_ELEMENTWISE_OPS = {
    "numpy": "Add Subtract Multiply Divide TrueDivide Maximum Minimum Negative Abs Square "
    "Sqrt Exp Tanh".split(),
    "nn": "Relu Relu6 Sigmoid Silu Gelu Softplus Softsign LeakyRelu Elu Selu HardSigmoid "
    "HardSilu".split(),
}


def _register_builtin() -> None:
    layers = keras.layers
    for name in _CHANNEL_WISE:
        if hasattr(layers, name):
            register_rule(getattr(layers, name), ChannelWise())
    for name in _NORMALIZES:
        if hasattr(layers, name):
            register_rule(getattr(layers, name), Frozen("normalizes over the width"))
    from keras.src.ops import nn, numpy  # the classes of the raw operations

    for module, names in ((numpy, _ELEMENTWISE_OPS["numpy"]), (nn, _ELEMENTWISE_OPS["nn"])):
        for name in names:
            if hasattr(module, name):
                register_rule(getattr(module, name), ElementwiseOp())
    register_rule(layers.Softmax, Frozen("mixes channels (softmax)"))
    register_rule(layers.Activation, ActivationRule())
    register_rule(layers.BatchNormalization, BatchNormRule())
    register_rule(layers.Rescaling, RescalingRule())
    register_rule(layers.Concatenate, ConcatenateRule())
    register_rule(layers.Dense, DenseRule())
    for name in ("Conv1D", "Conv2D", "Conv3D"):
        register_rule(getattr(layers, name), ConvRule())
    for name in ("DepthwiseConv1D", "DepthwiseConv2D"):
        register_rule(getattr(layers, name), DepthwiseRule())
    for name in ("SeparableConv1D", "SeparableConv2D"):
        register_rule(getattr(layers, name), SeparableRule())
    register_rule(layers.Flatten, FlattenRule())
    register_rule(layers.Reshape, ReshapeRule())
    register_rule(layers.Permute, PermuteRule())
    register_rule(layers.Embedding, EmbeddingRule())
    register_rule(layers.MultiHeadAttention, MultiHeadAttentionRule())
    if hasattr(layers, "GroupQueryAttention"):
        register_rule(layers.GroupQueryAttention, GroupQueryAttentionRule())


_register_builtin()

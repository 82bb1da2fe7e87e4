"""Turn a user's Keras model into its mask-aware twin, and back (``strip``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import keras
import numpy as np

from keras_lottery.layers import MASKED_VARIANTS, MaskedLayerMixin, is_masked


class NotPrunableError(ValueError):
    """The model cannot be made mask-aware (subclassed, or nothing to prune)."""


_SUBCLASS_HELP = (
    "keras-lottery rebuilds Sequential and functional models layer by layer, "
    "which is impossible for a subclassed keras.Model whose call() is Python code. "
    "Fix: build the same network with the functional API (keras.Input -> layers -> "
    "keras.Model(inputs, outputs)) or keras.Sequential; or keep your subclass and build "
    "it from keras_lottery.layers.MaskedDense / MaskedConv2D / ... (any layer derived "
    "from keras_lottery.layers.MaskedLayerMixin exposes `prunable_weights()`), and "
    "find_ticket prunes it in place."
)


@dataclass(frozen=True)
class PrunableWeight:
    """One prunable kernel: its layer, the kernel variable and its mask."""

    layer: MaskedLayerMixin
    kernel: keras.Variable
    mask: keras.Variable

    @property
    def name(self) -> str:
        """Unique, readable name: the kernel variable's path."""
        return self.kernel.path


def _all_layers(model) -> Iterator[keras.layers.Layer]:
    """Every layer reachable from ``model``, depth first, each once."""
    seen: set[int] = set()

    def walk(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        yield layer
        for sub in layer._flatten_layers(include_self=False, recursive=False):
            yield from walk(sub)

    yield from walk(model)


def prunable_weights(model: keras.Model) -> list[PrunableWeight]:
    """All (layer, kernel, mask) triples of a mask-aware model, in layer order.

    Shared layers appear once.  The last entry is the output layer's kernel for
    the usual feed-forward models.
    """
    found = []
    for layer in _all_layers(model):
        if is_masked(layer) and layer.built:
            found.extend(PrunableWeight(layer, k, m) for k, m in layer.prunable_weights())
    return found


def _is_layer_graph(model) -> bool:
    """Sequential or functional: a model Keras can rebuild layer by layer."""
    return isinstance(model, keras.Sequential | keras.src.models.Functional)


def _check_convertible(model) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    if not _is_layer_graph(model):
        raise NotPrunableError(
            f"Model '{model.name}' is a subclassed model ({type(model).__name__}). {_SUBCLASS_HELP}"
        )
    if not model.built:
        raise NotPrunableError(
            f"Model '{model.name}' is not built: give it an input shape "
            "(keras.Input(...) or model.build(input_shape)) first."
        )


def _copy_layer(layer: keras.layers.Layer, cls: type) -> keras.layers.Layer:
    """A new ``cls`` built from ``layer``'s config, holding the same weights.

    Masks are copied when both have them; a stock source leaves new masks at 1.
    """
    clone = cls.from_config(layer.get_config())
    if layer.built:
        clone.build_from_config(layer.get_build_config())
        own = (
            clone.weights
            if is_masked(layer)
            else [w for w in clone.weights if not _is_mask_of(clone, w)]
        )
        if len(own) != len(layer.weights):
            raise NotPrunableError(
                f"Layer '{layer.name}' ({type(layer).__name__}) could not be copied: "
                f"{len(layer.weights)} weights, the copy has {len(own)}."
            )
        for dst, src in zip(own, layer.weights):
            dst.assign(src)
    return clone


def _clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
    """``make_prunable``'s cloner: prunable layers become their masked variant."""
    if isinstance(layer, keras.layers.InputLayer):
        return layer
    return _copy_layer(layer, MASKED_VARIANTS.get(type(layer), type(layer)))


def _is_mask_of(layer, var) -> bool:
    return is_masked(layer) and any(var is m for m in layer.masks.values())


def make_prunable(model: keras.Model) -> keras.Model:
    """Return a mask-aware copy of ``model`` with identical weights and outputs.

    Dense, Conv*, DepthwiseConv*, SeparableConv*, Conv*Transpose, Embedding and
    EinsumDense layers become their ``keras_lottery.layers.Masked*`` variant
    (all masks start at 1); every other layer (BatchNormalization, Dropout,
    pooling, ...) is copied as it is.  Nested models, skip connections and
    shared layers are preserved.  The compile state is *not* copied: compile
    the result, or let :func:`keras_lottery.find_ticket` do it.

    A subclassed model cannot be copied: if it is built from ``Masked*``
    layers it is returned as it is, otherwise ``NotPrunableError`` says how
    to make it prunable.

    Raises:
        NotPrunableError: for subclassed or unbuilt models, or models with no
            prunable layer.
    """
    if not _is_layer_graph(model) and prunable_weights(model):
        return model  # a subclassed model built from Masked* layers: used as it is
    _check_convertible(model)
    clone = keras.models.clone_model(model, clone_function=_clone_layer, recursive=True)
    if not prunable_weights(clone):
        kinds = sorted({type(v).__name__ for v in MASKED_VARIANTS})
        raise NotPrunableError(
            f"Model '{model.name}' has no prunable layer. keras-lottery prunes the "
            f"kernels of {', '.join(kinds)} layers."
        )
    return clone


def apply_masks(model: keras.Model) -> None:
    """Set every pruned weight of ``model`` to exactly 0."""
    for pw in prunable_weights(model):
        pw.kernel.assign(pw.kernel * keras.ops.cast(pw.mask, pw.kernel.dtype))


def sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of pruned weights per prunable kernel, plus ``"overall"``."""
    out, pruned, total = {}, 0, 0
    for pw in prunable_weights(model):
        m = np.asarray(pw.mask)
        out[pw.name] = float(1.0 - m.mean())
        pruned += int(m.size - m.sum())
        total += m.size
    out["overall"] = pruned / total if total else 0.0
    return out


def _strip_layer(layer):
    if isinstance(layer, keras.layers.InputLayer):
        return layer
    if not is_masked(layer):
        return _copy_layer(layer, type(layer))
    base = type(layer).__mro__[2]
    plain = base.from_config(layer.get_config())
    plain.build_from_config(layer.get_build_config())
    masked = {id(k): (k, m) for k, m in layer.prunable_weights()}
    own = [w for w in layer.weights if not _is_mask_of(layer, w)]
    for dst, src in zip(plain.weights, own):
        value = np.asarray(src)
        if id(src) in masked:
            value = value * np.asarray(masked[id(src)][1])
        dst.assign(value)
    return plain


def strip(model: keras.Model) -> keras.Model:
    """The plain Keras model: masks multiplied into the kernels, no mask variables.

    The result uses only stock Keras layers, so it saves and loads without
    keras_lottery installed, and gives the same outputs as ``model``.
    """
    _check_convertible(model)
    return keras.models.clone_model(model, clone_function=_strip_layer, recursive=True)

"""Mask-aware variants of Keras 3 layers.

Each masked layer is the stock Keras layer plus one non-trainable ``*_mask``
variable per prunable kernel.  The mask is enforced in two places:

* in the forward pass (the layer computes with ``kernel * mask``), so pruned
  weights receive exactly zero gradient;
* after every optimizer step, through the kernel variable's ``constraint``
  (Keras 3 optimizers apply constraints after each update), so that no
  optimizer -- momentum, Adam moments, AdamW weight decay -- can move a pruned
  weight away from 0.  The stored kernel is therefore truly sparse.

Masks are saved with the layer (``.keras`` and ``.weights.h5``); the classes
are registered with Keras, so ``keras.models.load_model`` needs no
``custom_objects`` once ``keras_lottery`` is imported.
"""

from __future__ import annotations

import contextlib
import functools

import keras
from keras import ops

_PACKAGE = "keras_lottery"
_MASK_KEY = "mask_{}"


class _MaskConstraint:
    """Variable constraint: the user's own constraint, then ``w * mask``."""

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return w * ops.cast(self.mask, w.dtype)


class MaskedLayerMixin:
    """Adds a binary mask to each kernel named in ``prunable_attributes``.

    Subclasses list the *public* names of their prunable weights.  Keras keeps
    some of them behind a private variable (``Dense.kernel`` is a property over
    ``Dense._kernel``); the mixin finds the variable either way.
    """

    prunable_attributes: tuple[str, ...] = ("kernel",)

    def build(self, input_shape=None):
        super().build(input_shape)
        self._lottery_masks = {}
        for name in self.prunable_attributes:
            var = self._kernel_variable(name)
            mask = self.add_weight(
                name=f"{name}_mask",
                shape=var.shape,
                initializer="ones",
                trainable=False,
                dtype=var.dtype,
            )
            var.constraint = _MaskConstraint(mask, var.constraint)
            self._lottery_masks[name] = mask

    def _storage_name(self, name: str) -> str:
        private = "_" + name
        if isinstance(self.__dict__.get(private), keras.Variable):
            return private
        return name

    def _kernel_variable(self, name: str) -> keras.Variable:
        return self.__dict__[self._storage_name(name)]

    # -- public mask API -------------------------------------------------
    @property
    def masks(self) -> dict[str, keras.Variable]:
        """``{kernel name: mask variable}`` (built layers only)."""
        if not self.built:
            raise AttributeError(f"Layer '{self.name}' is not built yet.")
        return dict(self._lottery_masks)

    def prunable_weights(self) -> list[tuple[keras.Variable, keras.Variable]]:
        """``[(kernel variable, mask variable), ...]`` for this layer."""
        return [(self._kernel_variable(n), m) for n, m in self.masks.items()]

    def apply_masks(self) -> None:
        """Set every pruned weight to exactly 0 (``kernel *= mask``)."""
        for var, mask in self.prunable_weights():
            var.assign(var * ops.cast(mask, var.dtype))

    # -- forward pass ----------------------------------------------------
    @contextlib.contextmanager
    def _masked_kernels(self):
        """Show the stock ``call`` the masked kernels instead of the variables."""
        swapped = []
        try:
            for name, mask in self._lottery_masks.items():
                storage = self._storage_name(name)
                var = self.__dict__[storage]
                value = ops.convert_to_tensor(var)
                object.__setattr__(self, storage, value * ops.cast(mask, value.dtype))
                swapped.append((storage, var))
            yield
        finally:
            for storage, var in swapped:
                object.__setattr__(self, storage, var)

    # -- saving ----------------------------------------------------------
    def save_own_variables(self, store):
        super().save_own_variables(store)
        if not self.built:
            return
        # Dense/Conv/Embedding save only kernel and bias: add the masks.
        # Layers using Keras's default (all variables) saved them already.
        n_vars = len(self._trainable_variables + self._non_trainable_variables)
        if len(list(store.keys())) < n_vars:
            for i, mask in enumerate(self._lottery_masks.values()):
                store[_MASK_KEY.format(i)] = mask

    def load_own_variables(self, store):
        super().load_own_variables(store)
        keys = set(store.keys())
        for i, mask in enumerate(self._lottery_masks.values()):
            key = _MASK_KEY.format(i)
            if key in keys:
                mask.assign(store[key])


def _masked(base: type, attributes: tuple[str, ...] = ("kernel",)) -> type:
    # Keras reads the signature of `call` (inputs, training, mask...), so the
    # masked call keeps the stock one's through functools.wraps.
    @functools.wraps(base.call)
    def call(self, *args, **kwargs):
        with self._masked_kernels():
            return base.call(self, *args, **kwargs)

    cls = type(
        f"Masked{base.__name__}",
        (MaskedLayerMixin, base),
        {
            "prunable_attributes": attributes,
            "call": call,
            "__doc__": f"`keras.layers.{base.__name__}` with a pruning mask on "
            f"{', '.join(attributes)}.",
            "__module__": __name__,
        },
    )
    return keras.saving.register_keras_serializable(package=_PACKAGE)(cls)


MaskedDense = _masked(keras.layers.Dense)
MaskedEinsumDense = _masked(keras.layers.EinsumDense)
MaskedConv1D = _masked(keras.layers.Conv1D)
MaskedConv2D = _masked(keras.layers.Conv2D)
MaskedConv3D = _masked(keras.layers.Conv3D)
MaskedConv1DTranspose = _masked(keras.layers.Conv1DTranspose)
MaskedConv2DTranspose = _masked(keras.layers.Conv2DTranspose)
MaskedConv3DTranspose = _masked(keras.layers.Conv3DTranspose)
MaskedDepthwiseConv1D = _masked(keras.layers.DepthwiseConv1D)
MaskedDepthwiseConv2D = _masked(keras.layers.DepthwiseConv2D)
MaskedSeparableConv1D = _masked(
    keras.layers.SeparableConv1D, ("depthwise_kernel", "pointwise_kernel")
)
MaskedSeparableConv2D = _masked(
    keras.layers.SeparableConv2D, ("depthwise_kernel", "pointwise_kernel")
)
MaskedEmbedding = _masked(keras.layers.Embedding, ("embeddings",))

#: Stock Keras class -> its mask-aware variant (exact class match).
MASKED_VARIANTS: dict[type, type] = {
    cls.__mro__[2]: cls
    for cls in (
        MaskedDense,
        MaskedEinsumDense,
        MaskedConv1D,
        MaskedConv2D,
        MaskedConv3D,
        MaskedConv1DTranspose,
        MaskedConv2DTranspose,
        MaskedConv3DTranspose,
        MaskedDepthwiseConv1D,
        MaskedDepthwiseConv2D,
        MaskedSeparableConv1D,
        MaskedSeparableConv2D,
        MaskedEmbedding,
    )
}


def is_masked(layer) -> bool:
    """True for a keras-lottery mask-aware layer."""
    return isinstance(layer, MaskedLayerMixin)

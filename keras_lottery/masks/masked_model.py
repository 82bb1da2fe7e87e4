"""``MaskedModel``: any Keras 3 model plus one binary mask per pruned weight.

Why a wrapper.  Rebuilding a model with mask-aware copies of its layers cannot
reach what Keras builds from raw operations (``h + a``, slicing), layers that
own sub-layers (attention, RNN cells, keras-hub blocks) or subclassed models
whose ``call`` is Python code.  ``MaskedModel`` instead holds the user's model
as it is -- same layers, same variables, no copy -- and owns the masks:

* forward pass: while the wrapped model runs, every layer attribute that holds
  a pruned weight (``Dense._kernel``, ``LSTMCell.recurrent_kernel``, ...)
  shows ``weight * mask`` instead of the variable, so pruned weights take part
  in no computation and receive exactly zero gradient;
* storage: pruned weights are set to exactly 0 when a mask changes and when
  ``fit`` or ``train_on_batch`` starts.  A weight that is 0 and gets zero
  gradient stays 0 under SGD (with momentum), Adam, AdamW, RMSprop, Adagrad
  and Lion, because their state for it stays 0 too (every round starts from a
  fresh optimizer state);
* training step: inside ``fit`` and ``train_on_batch`` storage holds the
  zeros, so the training forward pass shows the variable itself (``weight *
  mask`` equals it) and masks only its gradient: a step holds no masked copy
  of the model's weights.  Any other call (inference, evaluation, a custom
  training loop) computes ``weight * mask``, whatever storage holds.

Masks are non-trainable boolean variables of the wrapper, so they are part of
the training state on every backend (TensorFlow, JAX): changing a mask needs
no retracing, and masks are saved in ``.keras`` / ``.weights.h5`` files.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_lottery.extras import tensorflow
from keras_lottery.masks.assign import assign
from keras_lottery.masks.coverage import (
    PRUNED,
    REASONS,
    Coverage,
    Selector,
    WeightInfo,
    discover,
    output_paths,
)

_PACKAGE = "keras_lottery"


class PrunableWeight:
    """One pruned weight: its path, variable, owning layer and mask."""

    def __init__(self, info: WeightInfo, mask: keras.Variable, is_output: bool):
        self.info = info
        self.mask = mask
        self.is_output = is_output

    name = property(lambda self: self.info.path, doc="The weight's (unique) variable path.")
    kernel = property(lambda self: self.info.variable, doc="The weight variable.")
    layer = property(lambda self: self.info.layer, doc="The layer that created the weight.")

    def __repr__(self) -> str:
        return f"PrunableWeight({self.name!r}, shape={tuple(self.kernel.shape)})"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MaskedModel(keras.Model):
    """A Keras model with a pruning mask on each of its weight matrices.

    Args:
        model: any built Keras 3 model (Sequential, functional, subclassed,
            keras-hub).  It is used in place, not copied: training the
            ``MaskedModel`` trains ``model``'s variables.
        include: variables to prune instead of every weight matrix, by path
            glob, compiled regex or predicate (see :mod:`keras_lottery.masks.coverage`).
        exclude: variables not to prune, selected the same way.
        selection: the selection as :meth:`get_config` records it, one status
            per variable of ``model`` (``"pruned"`` or why not), in the order of
            ``model.weights``.  When given, ``include`` and ``exclude`` are kept
            as a record and not matched again: variable paths depend on how the
            model was built (a nested model or ``Bidirectional`` loaded from a
            file has other paths), positions in ``model.weights`` do not.

    Calling it calls ``model`` with the masks applied.  ``strip()`` returns
    ``model`` with the pruned weights at zero.
    """

    def __init__(
        self,
        model: keras.Model,
        include: Selector | Sequence[Selector] | None = None,
        exclude: Selector | Sequence[Selector] | None = None,
        *,
        selection: Sequence[str] | None = None,
        **kwargs,
    ):
        # Under the tf.distribute strategy ``model`` was created under, if called outside
        # its scope: Keras trains a model with the strategy of its creation, and the masks
        # must be variables of that strategy (as the optimizer's, see compile_from_config).
        with _strategy_scope(model):
            kwargs.setdefault("name", f"masked_{model.name}")
            kwargs["autocast"] = False  # each wrapped layer casts its own weights
            super().__init__(**kwargs)
            self.model = model
            object.__setattr__(self, "_zeros_stored", False)  # True inside fit/train_on_batch
            object.__setattr__(self, "_zeros_known", False)  # a caller has just zeroed them
            self._selectors = (include, exclude)
            if selection is None:
                rows = discover(model, include, exclude)
            else:
                rows = _recorded_selection(model, selection, self.name)
            outputs = output_paths(model, rows)
            self._rows = rows
            self._pruned = []
            for i, info in enumerate(r for r in rows if r.pruned):
                mask = self.add_weight(
                    name=f"mask_{i}",
                    shape=info.variable.shape,
                    initializer="ones",
                    dtype="bool",
                    trainable=False,
                )
                self._pruned.append(PrunableWeight(info, mask, info.path in outputs))
            if hasattr(model, "output_names"):
                self.output_names = model.output_names
            self.built = True

    def compile_from_config(self, config):
        """``keras.Model.compile_from_config``, under the model's ``tf.distribute`` strategy.

        The optimizer it creates and builds must belong to the strategy the model
        trains with, wherever the call happens (``find_ticket`` compiles the
        wrapper from the wrapped model's compile config).
        """
        with _strategy_scope(self):
            return super().compile_from_config(config)

    # -- the forward pass ------------------------------------------------
    def call(self, inputs, training=None):
        stored_zeros = training is True and self._zeros_stored
        with self.masks_applied(stored_zeros=stored_zeros):
            return self.model(inputs, training=training)

    def fit(self, *args, **kwargs):
        """``keras.Model.fit``, after setting pruned weights to 0 in storage (see module doc)."""
        with self._storage_zeroed():
            return super().fit(*args, **kwargs)

    def train_on_batch(self, *args, **kwargs):
        """``keras.Model.train_on_batch``, after setting pruned weights to 0 in storage."""
        with self._storage_zeroed():
            return super().train_on_batch(*args, **kwargs)

    @contextlib.contextmanager
    def _storage_zeroed(self):
        """Zero pruned weights in storage; inside, training steps rely on it."""
        if not self._zeros_known:
            self._zero_pruned()
        with self._flag("_zeros_stored"):
            yield

    def _zeroed_already(self):
        """Inside, ``fit`` skips zeroing: for a caller that has just called :meth:`set_masks`.

        Only for code that writes no weight in between (the search between a
        round's reset and its training): ``fit`` would otherwise train on
        whatever storage holds at pruned positions.
        """
        return self._flag("_zeros_known")

    @contextlib.contextmanager
    def _flag(self, name: str):
        """Inside, the private attribute ``name`` is True (not tracked by Keras)."""
        previous = getattr(self, name)
        object.__setattr__(self, name, True)
        try:
            yield
        finally:
            object.__setattr__(self, name, previous)

    @contextlib.contextmanager
    def masks_applied(self, stored_zeros: bool = False, factors=None):
        """Inside, every layer attribute holding a pruned weight shows ``weight * mask``.

        ``stored_zeros=True`` trusts that pruned weights are 0 in storage (as
        ``fit`` makes sure): the attribute shows the variable's value, whose
        gradient is masked, instead of a masked copy.  ``factors`` (``{path:
        tensor}``) multiply the masked weights they name: the relaxed gates of
        learned masks (:mod:`keras_lottery.search.learned`).
        """
        swapped, zero = [], _Zeros()
        try:
            for pw in self._pruned:
                var = pw.kernel
                if stored_zeros:
                    masked = _masked_gradient(var.value, pw.mask.value)
                else:
                    masked = ops.where(pw.mask.value, var.value, zero[var.dtype])
                if factors is not None and pw.name in factors:
                    masked = masked * ops.cast(factors[pw.name], masked.dtype)
                for owner in pw.info.owners:
                    layer = owner.layer
                    value = masked
                    if getattr(var, "_autocast", True) and getattr(layer, "autocast", False):
                        if layer.compute_dtype != var.dtype:
                            value = ops.cast(masked, layer.compute_dtype)
                    swapped.append((layer, owner.attribute, layer.__dict__[owner.attribute]))
                    object.__setattr__(layer, owner.attribute, value)
            yield
        finally:
            for layer, attribute, original in reversed(swapped):
                object.__setattr__(layer, attribute, original)

    # -- masks ---------------------------------------------------------------
    def prunable_weights(self) -> list[PrunableWeight]:
        """The pruned weights, in the order of ``model.weights``."""
        return list(self._pruned)

    def set_masks(self, masks: dict[str, np.ndarray], *, optimizer_state: bool = True) -> None:
        """Assign new masks by weight path and zero the newly pruned weights.

        If the model's optimizer is built, its per-weight state (momentum,
        moments) at newly pruned positions is zeroed too, so a mask changed in
        the middle of training (gradual pruning) stays exactly 0 in storage.
        ``optimizer_state=False`` leaves that state alone, for a caller that
        has just reset it to zeros.
        """
        for pw in self._pruned:
            if pw.name in masks:
                mask = np.asarray(masks[pw.name]).astype(bool, copy=False)
                if mask.shape != tuple(pw.mask.shape):
                    raise ValueError(
                        f"The mask for {pw.name!r} has shape {mask.shape}, but the weight has "
                        f"shape {tuple(pw.mask.shape)}: a mask holds one entry per weight."
                    )
                assign(pw.mask, mask)
        self._zero_pruned()
        if optimizer_state:
            self._clear_optimizer_state()

    def _zero_pruned(self) -> None:
        """As :meth:`apply_masks`, without counting on the host (no transfer, no sync)."""
        zero = _Zeros()
        for pw in self._pruned:
            assign(pw.kernel, ops.where(pw.mask.value, pw.kernel.value, zero[pw.kernel.dtype]))

    def _clear_optimizer_state(self) -> None:
        optimizer = getattr(self, "optimizer", None)
        if optimizer is None or not optimizer.built:
            return
        zero = _Zeros()
        for pw, slots in zip(self._pruned, self._optimizer_slots(optimizer)):
            for slot in slots:
                assign(slot, ops.where(pw.mask.value, slot.value, zero[slot.dtype]))

    def _optimizer_slots(self, optimizer) -> list[list]:
        """Per pruned weight, the optimizer variables shaped like it (found once)."""
        key = (id(optimizer), len(optimizer.variables))
        if getattr(self, "_slots_key", None) != key:
            found = []
            for pw in self._pruned:
                # Keras names a slot "<weight path with _>_<slot name>"
                # (add_variable_from_reference).
                prefix = pw.kernel.path.replace("/", "_") + "_"
                shape = tuple(pw.mask.shape)
                found.append(
                    [
                        slot
                        for slot in optimizer.variables
                        if slot.name.startswith(prefix) and tuple(slot.shape) == shape
                    ]
                )
            object.__setattr__(self, "_slots_key", key)
            object.__setattr__(self, "_slots", found)
        return self._slots

    def apply_masks(self) -> int:
        """Set every pruned weight to exactly 0; returns how many were not 0.

        Computed with ``keras.ops`` on the variables' device (their ``.value``:
        JAX no longer converts Keras variables inside ``where``); only the count
        comes back to the host.
        """
        if not self._pruned:
            return 0
        zero = _Zeros()

        def strays(pw):  # bool: pruned and not 0 (NaN included)
            nonzero = ops.not_equal(pw.kernel.value, zero[pw.kernel.dtype])
            return ops.logical_and(ops.logical_not(pw.mask.value), nonzero)

        # One transfer to the host; most calls find nothing, so only a flag per weight.
        found = ops.convert_to_numpy(ops.stack([ops.any(strays(pw)) for pw in self._pruned]))
        moved = 0
        for pw, any_stray in zip(self._pruned, found):
            if any_stray:
                moved += int(ops.convert_to_numpy(ops.count_nonzero(strays(pw))))
                assign(pw.kernel, ops.where(pw.mask.value, pw.kernel.value, zero[pw.kernel.dtype]))
        return moved

    def kept_counts(self) -> np.ndarray:
        """Per pruned weight (in :meth:`prunable_weights` order), how many weights it keeps."""
        # Counted on the host: reading a bool mask is cheaper than a device-side cast.
        return np.array([np.count_nonzero(np.asarray(pw.mask)) for pw in self._pruned], np.int64)

    def coverage(self) -> Coverage:
        """The coverage table, with the current sparsity of each pruned weight."""
        sizes = [int(np.prod(pw.mask.shape)) for pw in self._pruned]
        sparsity = {
            pw.name: 1.0 - int(kept) / size if size else 0.0
            for pw, kept, size in zip(self._pruned, self.kept_counts(), sizes)
        }
        return Coverage(self._rows, sparsity)

    def strip(self) -> keras.Model:
        """The wrapped model with pruned weights at exactly 0 (no masks, no wrapper)."""
        self.apply_masks()
        return self.model

    # -- saving ----------------------------------------------------------
    def get_config(self) -> dict:
        """The wrapped model, the selectors and the selection they resolved to.

        ``"selection"`` holds one status per variable of the wrapped model, by
        position in ``model.weights``: :meth:`from_config` masks those weights
        without matching the selectors again.  Globs and compiled regexes are
        recorded; a predicate cannot be (``ValueError``).
        """
        include, exclude = self._selectors
        inner = keras.saving.serialize_keras_object(self.model)
        inner.pop("compile_config", None)  # the wrapper's compile state is the one that trains
        return {
            "name": self.name,
            "model": inner,
            "include": _selector_to_config(include, "include", self.name),
            "exclude": _selector_to_config(exclude, "exclude", self.name),
            "selection": [row.reason for row in self._rows],
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> MaskedModel:
        """The model of :meth:`get_config`.

        A config without ``"selection"`` (a file of an older version) matches
        ``include``/``exclude`` against the loaded model's paths, as before.
        """
        config = dict(config)
        model = keras.saving.deserialize_keras_object(
            copy.deepcopy(config.pop("model")),  # Keras empties the dicts it reads
            custom_objects=custom_objects,
        )
        for key in ("include", "exclude"):
            config[key] = _selector_from_config(config.get(key))
        return cls(model, **config)

    def build(self, input_shape=None):  # built at construction (the wrapped model is)
        self.built = True


def _strategy_scope(model):
    """The scope of the ``tf.distribute`` strategy ``model`` was created under.

    A null context on other backends, for a model created outside any strategy,
    and inside a strategy's scope already (Keras takes the strategy in scope).
    """
    strategy = getattr(model, "_distribute_strategy", None)  # TensorFlow's trainer only
    if strategy is None:
        return contextlib.nullcontext()
    tf = tensorflow("A model created under a tf.distribute strategy")
    if tf.distribute.has_strategy():
        return contextlib.nullcontext()
    return strategy.scope()


class _Zeros(dict):
    """Scalar zeros by dtype, each made once (an eager ``ops.zeros`` costs a dispatch)."""

    def __missing__(self, dtype):
        self[dtype] = zero = ops.zeros((), dtype=dtype)
        return zero


def _masked_gradient(value, mask):
    """``value`` itself, with a gradient that is 0 where ``mask`` is False."""

    @ops.custom_gradient
    def identity(x):
        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return ops.where(mask, upstream, ops.zeros((), dtype=upstream.dtype))

        return x, grad

    return identity(value)


def _recorded_selection(model: keras.Model, selection: Sequence[str], name: str):
    """The rows of ``discover(model)`` with the statuses recorded in ``selection``.

    Raises:
        ValueError: ``selection`` does not fit ``model``: another number of
            variables, an unknown status, or a variable recorded as pruned that
            cannot be (not a trainable floating-point variable a layer holds).
    """
    rows = discover(model)
    if len(selection) != len(rows):
        raise ValueError(
            f"MaskedModel '{name}' records the selection of {len(selection)} variables, but "
            f"the wrapped model '{model.name}' has {len(rows)}: the masks were saved for "
            "another model."
        )
    out = []
    for i, (row, status) in enumerate(zip(rows, selection)):
        where = f"variable {i} of model '{model.name}' ({row.path}, shape {row.variable.shape})"
        if status != PRUNED and status not in REASONS:
            raise ValueError(
                f"MaskedModel '{name}' records an unknown status {status!r} for {where}; "
                f"expected {PRUNED!r} or one of {sorted(REASONS)}."
            )
        # Without selectors discover prunes every weight matrix; include= can add 1-D ones.
        if status == PRUNED and row.reason not in (PRUNED, "small", "bias"):
            raise ValueError(
                f"MaskedModel '{name}' records {where} as pruned, but it cannot be: "
                f"{REASONS[row.reason]}. The masks were saved for another model."
            )
        out.append(dataclasses.replace(row, reason=status))
    return out


def _selector_to_config(value, key: str, name: str):
    """An ``include``/``exclude`` value as JSON: globs as they are, regexes as dicts."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, re.Pattern):
        return {"regex": value.pattern, "flags": value.flags}
    if isinstance(value, list | tuple):
        return [_selector_to_config(v, key, name) for v in value]
    raise ValueError(
        f"MaskedModel '{name}' cannot be saved: its {key}= holds a predicate "
        f"({getattr(value, '__name__', type(value).__name__)}), and a .keras file holds no "
        "code. Select by glob strings or compiled regexes (re.compile), or save strip() of "
        "it (the plain model, pruned weights at 0) instead."
    )


def _selector_from_config(value):
    """The inverse of :func:`_selector_to_config`."""
    if isinstance(value, dict):
        return re.compile(value["regex"], value.get("flags", 0))
    if isinstance(value, list):
        return [_selector_from_config(v) for v in value]
    return value

"""Assign hundreds of variables at a round boundary with as few eager operations as possible.

A search rewrites every weight and optimizer variable between two rounds
(rewind, fresh optimizer state, masks, zeros).  On TensorFlow each eager
operation costs a fixed dispatch (0.1--0.3 ms on a small CPU machine), and a
ResNet50 has 320 weights and 430 Adam variables, so the dispatches, not the
arithmetic, dominate.  Two savings, both on TensorFlow only:

* :func:`assign` writes through the backing ``tf.Variable`` without reading
  the new value back (Keras's ``Variable.assign`` converts, casts and returns
  the value: three dispatches where one does);
* :class:`Fills` makes one constant tensor per shape and dtype and assigns it
  to every variable of that shape.  TensorFlow variables copy a shared buffer
  before updating it in place, so sharing is safe; JAX donates variable
  buffers to the compiled training step, so there every variable gets its own
  array.  Only small tensors are shared: the copy of a large shared buffer at
  the first update comes while the buffer is still alive, a transient extra
  copy that made BERT-base's search peak 0.2 GB higher, and a large tensor's
  dispatch is a negligible part of its cost anyway.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from keras_lottery.extras import tensorflow


def _tf_variable(variable):
    """The ``tf.Variable`` behind a Keras variable on TensorFlow, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    tf = tensorflow("Assigning a variable on the TensorFlow backend")
    target = getattr(variable, "value", variable)
    return target if isinstance(target, tf.Variable) else None


def assign(variable, value) -> None:
    """``variable.assign(value)`` (same dtype and shape), in one eager operation on TensorFlow."""
    target = _tf_variable(variable)
    if target is None:
        variable.assign(value)
    else:
        target.assign(value, read_value=False)


# Fills shares tensors up to this size (394 of ResNet50's 430 Adam variables).
SHARED_BYTES = 1 << 20


class Fills:
    """Constant tensors to assign from, shared by shape and dtype where the backend allows.

    Keep an instance for one batch of assignments only: on TensorFlow it
    holds one tensor per distinct shape until it is dropped.
    """

    def __init__(self):
        self._share = keras.backend.backend() == "tensorflow"
        self._made: dict[tuple, Any] = {}

    def __call__(self, shape, dtype, value=0):
        """A tensor of ``shape`` and ``dtype`` holding ``value`` everywhere."""
        key = (tuple(shape), str(dtype), np.asarray(value).item())
        itemsize = np.dtype(keras.backend.standardize_dtype(dtype)).itemsize
        share = self._share and math.prod(key[0]) * itemsize <= SHARED_BYTES
        made = self._made.get(key) if share else None
        if made is None:
            if value == 0:  # zeros: cheaper than a filled broadcast on TensorFlow
                made = keras.ops.zeros(shape, dtype=dtype)
            else:
                made = keras.ops.full(shape, value, dtype=dtype)
            if share:
                self._made[key] = made
        return made

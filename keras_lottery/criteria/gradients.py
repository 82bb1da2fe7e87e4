"""Gradients and Hessian-vector products of a Keras model, on any backend.

Keras 3 has no backend-neutral gradient API; the pruning-at-initialization
criteria (:mod:`keras_lottery.search.at_init`) need two things, written here once per
backend:

* :func:`gradients`: ``d fn() / d variables`` for a scalar ``fn`` that reads
  the variables (``tf.GradientTape``; ``jax.grad`` with the variables' values
  substituted through a ``keras.StatelessScope``; ``torch.autograd.grad``);
* :func:`hessian_vector_product`: ``H v`` with ``H`` the Hessian of ``fn``,
  as the gradient of ``<grad fn, v>`` (nested tapes; ``jax.grad`` of a
  ``jax.grad``; ``torch.autograd.grad`` with ``create_graph=True``).

``fn`` is called with the model in inference mode by the helpers below, so
BatchNorm uses (and keeps) its moving statistics and dropout is off.  Every
result is a list of NumPy arrays, one per variable; a variable that ``fn``
does not reach gets zeros, on every backend (TensorFlow and PyTorch would
give ``None``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from keras_lottery.callbacks import labels_like
from keras_lottery.extras import tensorflow


def gradients(fn: Callable[[], object], variables: Sequence) -> list[np.ndarray]:
    """``d fn() / d v`` for each ``v`` in ``variables`` (Keras variables), as NumPy arrays."""
    return _backend().grad(fn, list(variables))


def hessian_vector_product(
    fn: Callable[[], object], variables: Sequence, vectors: Sequence
) -> list[np.ndarray]:
    """``H v``: the Hessian of ``fn`` w.r.t. ``variables`` times ``vectors`` (one per variable)."""
    dtypes = [keras.backend.standardize_dtype(w.dtype) for w in variables]
    vectors = [np.asarray(v, dtype=d) for v, d in zip(vectors, dtypes)]
    return _backend().hvp(fn, list(variables), vectors)


def model_loss(model: keras.Model, x, y) -> Callable[[], object]:
    """``fn()``: the compiled loss of ``model`` on ``(x, y)`` (inference mode), as ``fit`` has it.

    Keras's ``compute_loss`` for one output as for several: the losses weighted
    by ``loss_weights`` and summed, plus the regularization losses.  One
    output's ``(n,)`` labels meet an ``(n, 1)`` output as in ``fit``.  A
    mask-aware model not compiled itself uses the loss of the model it wraps.
    """
    compiled = model if getattr(model, "loss", None) is not None else getattr(model, "model", model)
    single = not isinstance(compiled.loss, dict | list | tuple)
    if single:
        y = np.asarray(y)

    def fn():
        y_pred = model(x, training=False)
        labels = labels_like(y, y_pred) if single else y
        return compiled.compute_loss(x=x, y=labels, y_pred=y_pred, training=False)

    return fn


def loss_gradients(model: keras.Model, x, y, weights: Sequence) -> list[np.ndarray]:
    """Gradient of ``model``'s compiled loss on the batch ``(x, y)`` w.r.t. ``weights``."""
    return gradients(model_loss(model, x, y), weights)


def loss_hessian_vector_product(
    model: keras.Model, x, y, weights: Sequence, vectors: Sequence
) -> list[np.ndarray]:
    """Hessian of the compiled loss on ``(x, y)`` w.r.t. ``weights``, times ``vectors``."""
    return hessian_vector_product(model_loss(model, x, y), weights, vectors)


# -- one implementation per backend ----------------------------------------------


def _backend():
    name = keras.backend.backend()
    try:
        return {"tensorflow": _TF, "jax": _Jax, "torch": _Torch}[name]
    except KeyError:
        raise NotImplementedError(
            f"Gradients are implemented for TensorFlow, JAX and PyTorch, not {name!r}."
        ) from None


def _numpy(values) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in values]


class _TF:
    @staticmethod
    def grad(fn, variables):
        tf = tensorflow("Gradients on the TensorFlow backend")
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])
            out = fn()
        zero = tf.UnconnectedGradients.ZERO  # a weight the loss does not reach: 0
        return _numpy(tape.gradient(out, [v.value for v in variables], unconnected_gradients=zero))

    @staticmethod
    def hvp(fn, variables, vectors):
        tf = tensorflow("Hessian-vector products on the TensorFlow backend")
        values = [v.value for v in variables]
        with tf.GradientTape(watch_accessed_variables=False) as outer:
            outer.watch(values)
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                inner.watch(values)
                out = fn()
            zero = tf.UnconnectedGradients.ZERO
            grads = inner.gradient(out, values, unconnected_gradients=zero)
            dot = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grads, vectors)])
        return _numpy(outer.gradient(dot, values, unconnected_gradients=zero))


class _Jax:
    @staticmethod
    def _of_values(fn, variables):
        def f(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return fn()

        return f

    @classmethod
    def grad(cls, fn, variables):
        import jax

        values = [v.value for v in variables]
        return _numpy(jax.grad(cls._of_values(fn, variables))(values))

    @classmethod
    def hvp(cls, fn, variables, vectors):
        import jax
        import jax.numpy as jnp

        grad = jax.grad(cls._of_values(fn, variables))

        def dot(values):
            return sum(jnp.vdot(g, v) for g, v in zip(grad(values), vectors))

        return _numpy(jax.grad(dot)([v.value for v in variables]))


class _Torch:
    @staticmethod
    def _leaves(variables):
        values = [v.value for v in variables]
        for value in values:
            if not value.requires_grad:
                raise ValueError("PyTorch gradients need trainable variables.")
        return values

    @classmethod
    def grad(cls, fn, variables):
        import torch

        values = cls._leaves(variables)
        with torch.enable_grad():
            out = fn()
            grads = torch.autograd.grad(out, values, allow_unused=True)
        return _zeros_for_unused(grads, variables)

    @classmethod
    def hvp(cls, fn, variables, vectors):
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel

        values = cls._leaves(variables)
        # The fused attention kernels have no second derivative: the reference one has.
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
            out = fn()
            grads = torch.autograd.grad(out, values, create_graph=True, allow_unused=True)
            dot = sum(
                (g * torch.as_tensor(v, device=g.device)).sum()
                for g, v in zip(grads, vectors)
                if g is not None
            )
            if not torch.is_tensor(dot) or not dot.requires_grad:  # nothing reaches the loss
                return [np.zeros(tuple(v.shape), _dtype(v)) for v in variables]
            hv = torch.autograd.grad(dot, values, allow_unused=True)
        return _zeros_for_unused(hv, variables)


def _dtype(variable) -> str:
    return keras.backend.standardize_dtype(variable.dtype)


def _zeros_for_unused(grads, variables) -> list[np.ndarray]:
    """PyTorch's ``None`` for a weight the loss does not reach, as zeros (as TF and JAX give)."""
    return [
        np.zeros(tuple(v.shape), _dtype(v)) if g is None else g.detach().cpu().numpy()
        for g, v in zip(grads, variables)
    ]

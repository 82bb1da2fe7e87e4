"""Relaxed per-weight gates: a score per weight, a sigmoid gate, thresholded at a sparsity.

The gate math of ``method="learned"`` (:mod:`keras_lottery.search.learned`).
Every pruned weight ``w`` gets a trainable score ``s``; the network computes
with ``w * g``, where

    g = sigmoid(beta * (s - tau))

``tau`` is the score that keeps the asked fraction of weights above it (per
layer, or one over all layers for ``scope="global"``) and ``beta`` a
temperature that grows from 1 to ``beta_final``: early on every gate is near
1/2 and every score learns; at the end each gate is 0 or 1, and exactly the
weights with the highest scores are open.  This is the annealed sigmoid gate of
Continuous Sparsification (Savarese et al., NeurIPS 2020) with its threshold
set by the asked sparsity instead of an L1 penalty, so the mask lands on the
sparsity asked without tuning a penalty; the sparsity itself ramps from 0 to
the target on a cubic schedule (Zhu & Gupta 2017), as gradual pruning does.

The gates are written with ``keras.ops`` (TensorFlow, JAX, PyTorch); the
masks at the end keep the highest scores, ranked as magnitudes are
(:func:`keras_lottery.criteria.magnitude.top_k`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from keras import ops

#: Temperature at the end of the mask phase (Continuous Sparsification's final temperature).
BETA_FINAL = 200.0
#: Share of the mask phase over which the sparsity ramps from 0 to the target.
RAMP = 0.5
#: Bisection steps that place ``tau`` (resolution: the score range / 2**20).
BISECTIONS = 20
#: Scale of the initial scores, ``SCORE_SCALE * |w| / std(w)`` per layer.
SCORE_SCALE = 0.01


def initial_scores(kernel: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Scores at the start: ``|θ0|`` scaled per layer, small; pruned positions at -1.

    Scaled to a standard deviation of ``SCORE_SCALE``, the magnitude breaks
    ties and orders the first steps; training moves the scores further.  A
    weight pruned already gets no gradient, and its score stays below the others'.
    """
    values = np.abs(np.asarray(kernel, dtype="float32"))
    std = float(values[alive].std()) if alive.any() else 0.0
    scores = SCORE_SCALE * values / (std or 1.0)
    return np.where(alive, scores, -1.0).astype("float32")


def schedule(progress, final_sparsity: float, ramp: float = RAMP, beta_final: float = BETA_FINAL):
    """``(sparsity, beta)`` at ``progress`` in [0, 1] of the mask phase (a tensor or float).

    Sparsity ramps cubically from 0 to ``final_sparsity`` over the first
    ``ramp`` of the phase; ``beta`` grows geometrically from 1 to ``beta_final``.
    """
    t = ops.clip(ops.convert_to_tensor(progress, "float32"), 0.0, 1.0)
    r = ops.minimum(t / ramp, 1.0)
    sparsity = final_sparsity * (1.0 - (1.0 - r) ** 3)
    beta = ops.power(beta_final, t)
    return sparsity, beta


def threshold(scores: Sequence, keep_fraction, iterations: int = BISECTIONS):
    """The score ``tau`` above which ``keep_fraction`` of all ``scores`` lie (bisection).

    ``scores`` is one tensor or several (one threshold over all of them).  A
    sort per training step would cost more than the step; counting ``s > tau``
    ``iterations`` times costs a few passes over the scores.
    """
    flat = [ops.reshape(s, (-1,)) for s in scores]
    low = ops.min(ops.stack([ops.min(f) for f in flat]))
    high = ops.max(ops.stack([ops.max(f) for f in flat]))
    total = float(sum(int(np.prod(s.shape)) for s in scores))
    for _ in range(iterations):
        middle = (low + high) / 2.0
        above = sum(ops.sum(ops.cast(f > middle, "float32")) for f in flat) / total
        too_many = above > keep_fraction
        low = ops.where(too_many, middle, low)
        high = ops.where(too_many, high, middle)
    return (low + high) / 2.0


def gate(scores, tau, beta):
    """``sigmoid(beta * (scores - tau))``."""
    return ops.sigmoid(beta * (scores - tau))


def final_sparsity(keep: int, size: int) -> float:
    """The sparsity the gates anneal to: the share of ``size`` not among the ``keep`` kept."""
    return 1.0 - keep / size if size else 0.0

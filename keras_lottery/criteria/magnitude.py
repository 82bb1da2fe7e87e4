"""How many weights each round keeps, and which ones.

Pure NumPy on ``{name: array}`` dicts, so every rule can be read (and tested)
without Keras.  All counts are taken from the *original* size of a layer, so
after round ``r`` a layer pruned at rate ``p`` keeps exactly
``round(n * (1 - p) ** r)`` weights: rounding never compounds.

Ties in magnitude are broken by position (a stable sort), so the same weights
always give the same mask.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from keras_lottery import options

Arrays = Mapping[str, np.ndarray]


def keep_count(size: int, rate: float, rounds_done: int) -> int:
    """Weights kept out of ``size`` after ``rounds_done`` rounds at ``rate``."""
    return int(round(size * (1.0 - rate) ** rounds_done))


def check_sparsity(value: float, name: str) -> None:
    """Refuse a sparsity outside ``[0, 1)``, naming it."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")


def per_round_rate(target_sparsity: float, rounds: int) -> float:
    """The rate ``p`` with ``(1 - p) ** rounds == 1 - target_sparsity``."""
    return 1.0 - (1.0 - target_sparsity) ** (1.0 / rounds)


def top_k(scores: np.ndarray, alive: np.ndarray, k: int) -> np.ndarray:
    """Mask keeping the ``k`` highest scores among ``alive`` positions.

    The k-th highest surviving score is found by partial selection
    (``np.partition`` over the survivors only, linear time, no full sort);
    among scores equal to it the first positions are kept, exactly as a
    stable sort would.
    """
    flat = scores.ravel()
    live = alive.ravel() if alive.dtype == bool else alive.ravel() > 0
    survivors = _gather(flat, live)
    k = min(k, survivors.size)
    if k <= 0:
        return np.zeros_like(alive)
    survivors.partition(survivors.size - k)  # in place: the gathered copy is ours
    kth = survivors[survivors.size - k]
    del survivors
    keep = (flat > kth) & live  # a new bool array: no masked assignment over the whole layer
    missing = k - int(np.count_nonzero(keep))
    if missing:
        keep[np.flatnonzero((flat == kth) & live)[:missing]] = True
    return keep.astype(alive.dtype, copy=False).reshape(alive.shape)


_CHUNK = 1 << 18  # positions per index array in _gather: 2 MB of int64


def _gather(flat: np.ndarray, live: np.ndarray) -> np.ndarray:
    """``flat[live]``, through index arrays of bounded size.

    Boolean indexing branches on every position, which a pruning mask's
    pattern defeats; ``take`` over the positions of ``np.flatnonzero`` is 1.5--3x
    faster, and taking them chunk by chunk bounds the extra memory.
    """
    out = np.empty(int(np.count_nonzero(live)), flat.dtype)
    at = 0
    for start in range(0, flat.size, _CHUNK):
        index = np.flatnonzero(live[start : start + _CHUNK])
        np.take(flat[start : start + _CHUNK], index, out=out[at : at + index.size])
        at += index.size
    return out


def magnitude_layerwise(
    weights: Arrays, masks: Arrays, keep: Mapping[str, int]
) -> dict[str, np.ndarray]:
    """Per layer, keep the ``keep[name]`` largest ``|w|`` among surviving weights."""
    return {n: top_k(np.abs(weights[n]), masks[n], keep[n]) for n in masks}


def magnitude_global(weights: Arrays, masks: Arrays, total_keep: int) -> dict[str, np.ndarray]:
    """One threshold across all layers: keep the ``total_keep`` largest ``|w|``."""
    return top_k_global({n: np.abs(weights[n]) for n in masks}, masks, total_keep)


def top_k_global(scores: Arrays, masks: Arrays, total_keep: int) -> dict[str, np.ndarray]:
    """One threshold across all layers: keep the ``total_keep`` highest scores that survive."""
    names = list(masks)
    flat = np.concatenate([np.asarray(scores[n]).ravel() for n in names])
    alive = np.concatenate([masks[n].ravel() for n in names])
    kept = top_k(flat, alive, total_keep)
    out, start = {}, 0
    for n in names:
        size = masks[n].size
        out[n] = kept[start : start + size].reshape(masks[n].shape)
        start += size
    return out


def random_prune(
    masks: Arrays, keep: Mapping[str, int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Per layer, keep ``keep[name]`` surviving weights chosen at random."""
    return {n: top_k(rng.random(m.shape), m, keep[n]) for n, m in masks.items()}


def rearrange(masks: Arrays, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Same number of kept weights per layer, at uniformly random positions."""
    return {n: rng.permutation(m.ravel()).reshape(m.shape) for n, m in masks.items()}


UNIT_CRITERIA = ("input", "output", "product")


def unit_scores(kernels: list[np.ndarray], masks: list[np.ndarray], criterion: str):
    """Score the hidden units of a chain of Dense kernels.

    ``kernels[i]`` has shape ``(fan_in, units_i)``; the units of layer ``i``
    feed ``kernels[i + 1]``.  Returns one score vector per hidden layer (all
    but the last kernel): the L1 norm of a unit's surviving input weights, of
    its output weights, or their product.
    """
    if criterion not in UNIT_CRITERIA:
        raise ValueError(f"unit criterion must be one of {UNIT_CRITERIA}, got {criterion!r}")
    scores = []
    for i in range(len(kernels) - 1):
        w_in = np.abs(kernels[i] * masks[i]).sum(axis=0)
        w_out = np.abs(kernels[i + 1] * masks[i + 1]).sum(axis=1)
        scores.append({"input": w_in, "output": w_out, "product": w_in * w_out}[criterion])
    return scores


def unit_masks(
    kernels: list[np.ndarray], masks: list[np.ndarray], keep_units: list[int], criterion: str
) -> list[np.ndarray]:
    """Remove whole hidden units: zero a unit's input column and output row."""
    scores = unit_scores(kernels, masks, criterion)
    new = [m.copy() for m in masks]
    for i, (score, k) in enumerate(zip(scores, keep_units)):
        alive_units = (masks[i].sum(axis=0) > 0).astype(masks[i].dtype)
        kept_units = top_k(score, alive_units, k)
        new[i] = new[i] * kept_units[None, :]
        new[i + 1] = new[i + 1] * kept_units[:, None]
    return new


#: Unit scores of :func:`filter_scores` (the ``unit_criterion`` option).
FILTER_CRITERIA = options.UNIT_CRITERIA


def filter_scores(
    kernel: np.ndarray, mask: np.ndarray, axis: int, criterion: str, outgoing=None
) -> np.ndarray:
    """Score the units of one kernel along ``axis`` (Dense columns, conv filters).

    ``"input"``/``"l1"``: L1 norm of a unit's surviving weights; ``"l2"``: their
    L2 norm; ``"output"``: L1 norm of its outgoing weights (``outgoing``);
    ``"product"``: input L1 times outgoing L1.
    """
    w = np.moveaxis(np.abs(kernel * mask), axis, -1).reshape(-1, kernel.shape[axis])
    l1 = w.sum(axis=0)
    if criterion in ("input", "l1"):
        return l1
    if criterion == "l2":
        return np.sqrt((w**2).sum(axis=0))
    if outgoing is None:
        raise ValueError(
            f"unit_criterion={criterion!r} needs the next layer's weights of each unit, "
            "which this layer has not (not followed by a Dense/Conv layer in weight "
            "order); use unit_criterion='l1' or 'l2' (filter magnitude)."
        )
    return outgoing if criterion == "output" else l1 * outgoing


def keep_units(mask: np.ndarray, axis: int, scores: np.ndarray, k: int) -> np.ndarray:
    """A 0/1 vector over units keeping the ``k`` best-scored units still alive."""
    alive = np.moveaxis(mask, axis, -1).reshape(-1, mask.shape[axis]).any(axis=0)
    return top_k(scores, alive.astype(mask.dtype), k)


def n_m_mask(weights: np.ndarray, mask: np.ndarray, n: int, m: int) -> np.ndarray:
    """N:M sparsity along the input axis (``-2``): of each ``m`` consecutive inputs
    of an output, keep the ``n`` largest surviving ``|w|`` (TFMOT's ``sparsity_m_by_n``).
    """
    w = np.moveaxis(np.abs(weights) * (mask > 0), -2, -1)  # (..., out, in)
    lead, fan_in = w.shape[:-1], w.shape[-1]
    groups = -(-fan_in // m)
    padded = np.full((*lead, groups * m), -np.inf)
    padded[..., :fan_in] = np.where(np.moveaxis(mask, -2, -1) > 0, w, -np.inf)
    padded = padded.reshape(*lead, groups, m)
    order = np.argsort(-padded, axis=-1, kind="stable")
    keep = np.zeros(padded.shape, bool)
    np.put_along_axis(keep, order[..., :n], True, axis=-1)
    keep &= np.isfinite(padded)
    keep = keep.reshape(*lead, groups * m)[..., :fan_in]
    return np.moveaxis(keep, -1, -2).astype(mask.dtype)

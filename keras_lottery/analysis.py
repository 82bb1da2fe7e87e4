"""The paper's analyses, on your own model or ticket.

* :func:`instability`: linear mode connectivity (Frankle et al., ICML 2020):
  train two copies from the same θk on different data orders and measure the
  error barrier on the straight line between them;
  :func:`stable_rewind_point` scans k for the earliest stable one.
* :func:`weight_movement`: how far survivors moved in training vs pruned weights.
* :func:`connectivity`: survivors per unit and dead units of a chain of
  weight matrices (Dense layers).
* :func:`coverage`: which weights are pruned and why the others are not; for
  a ticket also each weight's sparsity and effective sparsity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from keras_lottery.callbacks import Evaluator
from keras_lottery.compact.compaction import effective_sparsity_or_none
from keras_lottery.data.datasets import Dataset, array_batches
from keras_lottery.masks.coverage import Coverage, discover
from keras_lottery.masks.masked_model import MaskedModel
from keras_lottery.seeding import set_random_seed


@dataclass
class Instability:
    """The error (and loss) along the line between two copies trained from one θk.

    ``instability`` is the largest error on the path minus the mean of the two
    endpoints' errors (Frankle et al.: stable when ~0, in practice < 2
    points); ``loss_instability`` the same for the loss.  ``alphas``,
    ``errors`` and ``losses`` are the curve (``alpha=0``: the first copy);
    ``endpoint_errors`` were measured on each copy right after its training.
    """

    rewind_to: int
    instability: float
    loss_instability: float
    alphas: list[float]
    errors: list[float]
    losses: list[float]
    endpoint_errors: tuple[float, float]


def instability(
    model: keras.Model,
    data: Any,
    *,
    rewind_to: int = 0,
    steps: int = 1000,
    batch_size: int = 60,
    seed: int = 0,
    seeds: tuple[int, int] = (1, 2),
    eval_data: tuple | None = None,
    points: int = 30,
) -> Instability:
    """Instability of ``model`` (Frankle et al. 2020) when rewound to iteration ``rewind_to``.

    The starting point θ0 is the model's current weights; for the result of
    :func:`~keras_lottery.find_ticket` it is the search's rewind weights
    (``ticket.lottery.rewind_weights``) with the ticket's masks.  θ0 is
    trained ``rewind_to`` iterations on the data order ``seed`` to θk; two
    copies then train from θk (weights and optimizer state) to ``steps``
    iterations on the data orders ``seeds``.  Masks stay fixed.  The model's
    weights and optimizer state are restored afterwards.

    Args:
        model: a compiled Keras model or :class:`~keras_lottery.MaskedModel`.
        data: ``(x, y)`` training arrays or a :class:`~keras_lottery.Dataset`
            (its test split is then the default ``eval_data``).
        eval_data: ``(x, y)`` the errors are measured on (default: the test
            split of a ``Dataset``, else ``data``).
        points: evaluations along the line, endpoints included.

    Cost: ``rewind_to + 2 * (steps - rewind_to)`` training iterations and
    ``points + 2`` evaluations.
    """
    x, y, eval_data = _split(data, eval_data)
    if not isinstance(rewind_to, int) or isinstance(rewind_to, bool) or rewind_to < 0:
        raise ValueError(f"rewind_to must be an iteration >= 0, got {rewind_to!r}.")
    if not isinstance(steps, int) or steps <= rewind_to:
        raise ValueError(f"steps ({steps!r}) must be an integer > rewind_to ({rewind_to}).")
    if points < 2:
        raise ValueError(f"points must be >= 2 (the two endpoints), got {points}.")
    if getattr(model, "optimizer", None) is None:
        raise ValueError("instability trains the model: compile it first.")
    model.optimizer.build(model.trainable_variables)
    variables, opt_vars = model.weights, model.optimizer.variables
    saved = [np.array(v) for v in variables], [np.array(v) for v in opt_vars]
    evaluate = Evaluator(model, *eval_data)
    try:
        _to_start(model)
        if rewind_to:
            _fit(model, x, y, rewind_to, batch_size, seed)
        theta_k = [np.array(v) for v in variables], [np.array(v) for v in opt_vars]
        ends, end_errors = [], []
        for s in seeds:
            _assign(variables, theta_k[0])
            _assign(opt_vars, theta_k[1])
            _fit(model, x, y, steps - rewind_to, batch_size, s)
            ends.append([np.array(v) for v in variables])
            end_errors.append(1.0 - evaluate()[1])
        alphas = np.linspace(0.0, 1.0, points)
        losses, errors = [], []
        for a in alphas:
            _assign(variables, [_mix(u, v, a) for u, v in zip(*ends)])
            loss, acc = evaluate()
            losses.append(loss)
            errors.append(1.0 - acc)
    finally:
        _assign(variables, saved[0])
        _assign(opt_vars, saved[1])
    return Instability(
        rewind_to=rewind_to,
        instability=max(errors) - (errors[0] + errors[-1]) / 2,
        loss_instability=max(losses) - (losses[0] + losses[-1]) / 2,
        alphas=[float(a) for a in alphas],
        errors=errors,
        losses=losses,
        endpoint_errors=(end_errors[0], end_errors[1]),
    )


@dataclass
class RewindScan:
    """What :func:`stable_rewind_point` found: the earliest stable k (or ``None``), all results."""

    stable: int | None
    threshold: float
    results: dict[int, Instability] = field(default_factory=dict)


def stable_rewind_point(
    model: keras.Model,
    data: Any,
    candidates: Sequence[int] = (0, 50, 100, 250, 500),
    *,
    threshold: float = 0.02,
    scan_all: bool = False,
    **kwargs: Any,
) -> RewindScan:
    """The earliest rewind iteration k in ``candidates`` with instability <= ``threshold``.

    Candidates are tried in increasing order and the scan stops at the first
    stable one unless ``scan_all``; ``kwargs`` go to :func:`instability`
    (``steps``, ``seeds``, ...).  Frankle et al. call a network stable when
    the error barrier is below 2 points (``threshold=0.02``).
    """
    scan = RewindScan(stable=None, threshold=threshold)
    for k in sorted(set(candidates)):
        result = instability(model, data, rewind_to=k, **kwargs)
        scan.results[k] = result
        if result.instability <= threshold and scan.stable is None:
            scan.stable = k
            if not scan_all:
                break
    return scan


def weight_movement(
    initial: Mapping[str, np.ndarray],
    trained: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
) -> dict[str, dict[str, float | None]]:
    """Per weight: mean ``|trained - initial|`` and ``|initial|`` of survivors vs pruned weights.

    ``initial`` are θ0 (``ticket.lottery.rewind_weights``), ``trained`` the
    dense trained values, ``masks`` a round's masks (``record.rounds[r].masks``),
    all keyed by weight path; the keys of ``masks`` are analysed.  Winning
    tickets' survivors move further than the weights pruned (Zhou et al. 2019).
    """
    out = {}
    for name, mask in masks.items():
        theta0, theta = np.asarray(initial[name]), np.asarray(trained[name])
        delta, keep = np.abs(theta - theta0), np.asarray(mask).astype(bool)
        pruned = ~keep
        row = {
            "kept_fraction": float(keep.mean()),
            "mean_move_kept": _mean(delta[keep]),
            "mean_move_pruned": _mean(delta[pruned]),
            "mean_abs_initial_kept": _mean(np.abs(theta0[keep])),
            "mean_abs_initial_pruned": _mean(np.abs(theta0[pruned])),
        }
        moved, still = row["mean_move_kept"], row["mean_move_pruned"]
        row["move_ratio_kept_over_pruned"] = moved / still if moved is not None and still else None
        out[name] = row
    return out


def connectivity(masks_or_ticket: Any) -> list[dict[str, Any]]:
    """Survivors per unit and dead units of a chain of 2-D weight matrices (Dense layers).

    Takes a :class:`~keras_lottery.MaskedModel` or ``{path: mask}`` in layer
    order, each ``(inputs, units)``.  Per matrix: connections per output unit
    (mean, min, max), units with no input left; where the next matrix reads
    these units: units with no output left and "dead" units (no input or no
    output); for the first matrix: inputs that lost every connection.
    """
    masks = masks_or_ticket
    if hasattr(masks_or_ticket, "prunable_weights"):
        masks = {w.name: np.array(w.mask) for w in masks_or_ticket.prunable_weights()}
    items = [(n, np.asarray(m)) for n, m in masks.items() if np.ndim(m) == 2]
    rows = []
    for i, (name, m) in enumerate(items):
        fan_in = m.sum(axis=0)
        row = {
            "weight": name,
            "shape": list(m.shape),
            "remaining": float(m.mean()),
            "in_per_unit_mean": float(fan_in.mean()),
            "in_per_unit_min": int(fan_in.min()),
            "in_per_unit_max": int(fan_in.max()),
            "units_no_input": int((fan_in == 0).sum()),
        }
        following = items[i + 1][1] if i + 1 < len(items) else None
        if following is not None and following.shape[0] == m.shape[1]:
            fan_out = following.sum(axis=1)
            row["units_no_output"] = int((fan_out == 0).sum())
            row["units_dead"] = int(((fan_in == 0) | (fan_out == 0)).sum())
        if i == 0:
            row["inputs_unused"] = int((m.sum(axis=1) == 0).sum())
        rows.append(row)
    return rows


def coverage(model: keras.Model, include=None, exclude=None) -> Coverage:
    """The coverage table of ``model`` (a plain Keras model or a mask-aware one).

    For a mask-aware model (:func:`keras_lottery.make_prunable`), the pruned
    rows are the masked variables and the table shows their current sparsity
    and, for a chain of layers, their effective sparsity
    (:func:`keras_lottery.effective_sparsity`).
    """
    if isinstance(model, MaskedModel):
        table = model.coverage()
        table.effective = effective_sparsity_or_none(model)
        return table
    return Coverage(discover(model, include, exclude))


# -- helpers ------------------------------------------------------------------


def _split(data, eval_data):
    if isinstance(data, Dataset):
        eval_data = eval_data or (data.x_test, data.y_test)
        data = (data.x_train, data.y_train)
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise TypeError(
            f"data must be (x, y) arrays or a keras_lottery.Dataset, got {type(data).__name__}."
        )
    return data[0], data[1], eval_data or tuple(data)


def _to_start(model) -> None:
    """A find_ticket result starts from its rewind weights with its masks."""
    record = getattr(model, "lottery", None)
    rewind = getattr(record, "rewind_weights", None)
    if rewind and hasattr(model, "coverage"):
        for row in model.coverage().rows:
            if row.path in rewind:
                row.variable.assign(rewind[row.path])
    if hasattr(model, "apply_masks"):
        model.apply_masks()


def _fit(model, x, y, steps, batch_size, seed) -> None:
    set_random_seed(seed)
    stream = array_batches(x, y, batch_size, seed)()
    model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    if hasattr(model, "apply_masks"):
        model.apply_masks()


def _assign(variables, values) -> None:
    for var, value in zip(variables, values):
        var.assign(value)


def _mix(u: np.ndarray, v: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) u + alpha v`` for floating values; others (masks, counters) from ``u``."""
    if not np.issubdtype(u.dtype, np.floating):
        return u
    return ((1.0 - alpha) * u + alpha * v).astype(u.dtype)


def _mean(a: np.ndarray) -> float | None:
    return float(a.mean()) if a.size else None

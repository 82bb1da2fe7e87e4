"""Step 3 of the search: prune p% of the trained weights θj, creating the next masks.

The magnitude rules themselves are NumPy functions of :mod:`keras_lottery.criteria.magnitude`;
this module applies them to a mask-aware model: the rate of each pruned weight,
the granularity (single weights, whole units or filters, N:M groups), the scope
(per layer or global) and the controls of ``strategy`` (``rearrange``,
``random_prune``, ``invert``).  Early-bird watches the mask this rule would make.
"""

from __future__ import annotations

import fnmatch

import keras
import numpy as np

from keras_lottery.compact.graph import Graph, GraphError
from keras_lottery.compact.rules import CONSUME, PRODUCE, ROLES
from keras_lottery.criteria import magnitude
from keras_lottery.criteria.early_bird import EarlyBirdStop
from keras_lottery.masks.bitmasks import PackedMasks
from keras_lottery.masks.convert import NotPrunableError
from keras_lottery.options import GRANULARITIES, Pruning
from keras_lottery.search.memory import release_freed
from keras_lottery.search.options import SearchOptions


def prune_round(
    weights, rates, r, opts: SearchOptions, rng, model=None, scores=None
) -> PackedMasks:
    """Step 3 after round ``r``: the masks of the next round, by the strategy's rule.

    ``model``: the wrapped model, whose graph couples the units of
    ``granularity="unit"`` (see :func:`group_unit_masks`).  ``scores``
    (``{path: array}``, e.g. learned gates' scores) rank the weights instead of
    their trained magnitudes; the counts and controls are the same.
    """
    p = opts.pruning
    release_freed()  # the training step's temporaries
    masks = _next_masks(
        weights,
        rates,
        p.rounds_after(r),
        p.scope,
        opts.reset.strategy,
        p.granularity,
        p.unit_criterion,
        rng,
        keep_current=opts.gradual is not None,
        model=model,
        scores=scores,
    )
    return PackedMasks.pack(masks)


def _next_masks(
    weights,
    rates,
    target_round,
    scope,
    strategy,
    granularity,
    criterion,
    rng,
    keep_current=False,
    model=None,
    scores=None,
):
    """Step 3: the masks after ``target_round`` prunings, by the strategy's rule.

    ``keep_current``: the masks were already pruned during training (gradual
    pruning); only the strategy's transformation (rearrange) applies.
    ``scores``: rank single weights by these instead of ``|w|``.
    """
    if scores is not None and granularity != "weight":
        raise ValueError("Scores rank single weights: use granularity='weight'.")
    if keep_current:
        scope, granularity = "layerwise", "weight"
    sign = -1.0 if strategy == "invert" else 1.0  # invert: keep the lowest-ranked survivors
    n_m = _n_m(granularity)
    if scope == "layerwise" and granularity == "weight" and strategy != "random_prune":
        # The default rule reads one weight at a time: no copy of the whole model.
        masks = {}
        for w in weights:
            mask = np.asarray(w.mask)
            k = int(mask.sum()) if keep_current else _keep(w, rates, target_round)
            ranked = _magnitudes(w.kernel) if scores is None else np.asarray(scores[w.name])
            new = magnitude.top_k(ranked if sign > 0 else -ranked, mask, k)
            masks.update(PackedMasks.pack({w.name: new}).packed)
        masks = PackedMasks(masks)
        return magnitude.rearrange(masks, rng) if strategy == "rearrange" else masks
    current = {w.name: np.array(w.mask) for w in weights}
    if strategy == "random_prune" and granularity == "weight":
        if keep_current:
            keep = {n: int(m.sum()) for n, m in current.items()}
        else:
            keep = {
                n: magnitude.keep_count(m.size, rates[n], target_round) for n, m in current.items()
            }
        return magnitude.random_prune(current, keep, rng)
    trained = {w.name: np.array(w.kernel) for w in weights}
    if strategy == "random_prune":  # random units / random N:M groups
        trained = {n: rng.random(v.shape) for n, v in trained.items()}
    if n_m is not None:
        masks = {
            w.name: magnitude.n_m_mask(trained[w.name], current[w.name], *n_m)
            if _n_m_axis_ok(w)
            else current[w.name]
            for w in weights
        }
    elif granularity == "unit":
        graph = _graph_or_none(model)
        if graph is not None:
            rearrange_rng = rng if strategy == "rearrange" else None
            return group_unit_masks(
                graph, weights, trained, current, rates, target_round, criterion, rearrange_rng
            )
        masks = _unit_masks(weights, trained, current, rates, target_round, criterion)
    else:  # single weights over the whole model (per layer is the fast path above)
        total = sum(m.size for m in current.values())
        kept = magnitude.keep_count(total, next(iter(rates.values())), target_round)
        if scores is None:
            ranked = {n: np.abs(trained[n]) for n in current}
        else:
            ranked = {n: np.asarray(scores[n], dtype="float64") for n in current}
        if sign < 0:
            ranked = {n: -v for n, v in ranked.items()}
        masks = magnitude.top_k_global(ranked, current, kept)
    if strategy == "rearrange" and granularity == "unit":
        masks = _rearrange_units(weights, masks, rng)
    elif strategy == "rearrange":
        masks = magnitude.rearrange(masks, rng)
    return masks


def _magnitudes(variable) -> np.ndarray:
    """``|w|`` on the host, in place when the host copy is our own (one copy, not two)."""
    values = np.asarray(variable)  # TensorFlow: a fresh copy; JAX: may be a read-only view
    if values.flags.owndata and values.flags.writeable:
        return np.abs(values, out=values)
    return np.abs(values)


def _keep(w, rates, target_round) -> int:
    return magnitude.keep_count(int(np.prod(w.kernel.shape)), rates[w.name], target_round)


def rates_per_layer(ticket, rate, output_rate, layer_rates, scope) -> dict[str, float]:
    """Rate per pruned weight: ``rate``, half of it for the output layer, overrides.

    ``layer_rates`` keys match a weight's path exactly, as a glob, or by the
    name of the layer holding it; a key that matches nothing is an error.
    """
    weights = ticket.prunable_weights()
    layer_rates = dict(layer_rates or {})
    matched = {key: [w for w in weights if _rate_key_matches(key, w)] for key in layer_rates}
    unknown = [k for k, hits in matched.items() if not hits]
    if unknown:
        raise ValueError(
            f"layer_rates names {unknown}, which match no pruned weight: use a weight "
            "path, a glob over paths or a layer name; the pruned weights are "
            f"{[w.name for w in weights]} (keras_lottery.coverage(model) lists all)."
        )
    if scope == "global":
        return {w.name: rate for w in weights}
    out = {}
    for w in weights:
        out[w.name] = output_rate if output_rate is not None and w.is_output else rate
        if w.is_output and output_rate is None:
            out[w.name] = rate / 2
        for key, hits in matched.items():  # later keys win, as in a dict update
            if w in hits:
                out[w.name] = layer_rates[key]
    return out


def _rate_key_matches(key: str, w) -> bool:
    return key == w.name or fnmatch.fnmatchcase(w.name, key) or key == w.layer.name


def early_bird_callback(
    eb, weights, rates, r, p: Pruning, total, spe=1, model=None
) -> EarlyBirdStop:
    """Watch the mask round ``r``'s pruning would make (magnitude rule, before any control).

    Checked every ``eb.check_every`` iterations, by default 20 times per round
    of ``total`` iterations (each epoch if ``total`` is unknown), rounded up to
    whole calls of ``spe`` steps.
    """

    def predict():
        args = (p.scope, "rewind", p.granularity, p.unit_criterion, None)
        return _next_masks(weights, rates, p.rounds_after(r), *args, model=model)

    alive = {w.name: np.array(w.mask) for w in weights}
    every = eb.check_every or (None if total is None else spe * max(1, -(-(total // 20) // spe)))
    return EarlyBirdStop(eb, predict, alive, every, total)


def _graph_or_none(model) -> Graph | None:
    """The coupled units of a Sequential or functional model; ``None`` for a subclassed one."""
    if model is None:
        return None
    try:
        return Graph(model)
    except GraphError:
        return None


def group_unit_masks(
    graph: Graph, weights, trained, current, rates, target_round, criterion, rearrange_rng=None
) -> dict[str, np.ndarray]:
    """Whole coupled units of a graph (:class:`keras_lottery.compact.Graph`), scored as one.

    Each unit (a filter with everything its channel passes: a residual stream's
    channel, a BatchNormalization entry, a depthwise filter; an attention head)
    is scored over all its pruned weights by ``criterion``; within each
    coupling (units ranked together) ``keep_count(units, rate, rounds)`` of the
    living ones are kept, ``rate`` the smallest of the coupling's producing
    layers.  A removed unit's weights are masked in every member -- what
    produces it and what reads it -- so compaction removes it exactly.  Units
    that must stay (frozen: a model output, a LayerNormalization's width...) or
    that a weight without a mask reads are not candidates.  Masks only lose
    entries.  ``rearrange_rng``: keep as many units, at random positions.

    Raises:
        NotPrunableError: no coupling has a unit that can be removed.
    """
    by_id = {id(w.kernel): w for w in weights}

    def masked(variable):
        w = by_id[id(variable)]
        return trained[w.name] * current[w.name]

    scores = graph.scores(masked, criterion, variables=set(by_id))
    alive = graph.per_unit(lambda v: current[by_id[id(v)].name], ROLES, "nonzero", set(by_id)) > 0
    candidate = ~graph.is_frozen  # dead ones too: top_k keeps only living units
    touched = np.zeros(graph.n_units, bool)
    producers: dict[int, set[str]] = {}
    for bs in graph.slices:
        w = by_id.get(id(bs.variable))
        if w is None and bs.role == CONSUME:
            candidate[bs.units] = False  # a weight without a mask reads it
        if w is not None:
            touched[bs.units] = True
            if bs.role == PRODUCE:
                for c in np.unique(graph.coupling_of[bs.units]).tolist():
                    producers.setdefault(c, set()).add(w.name)
    candidate &= touched
    keep = np.ones(graph.n_units, bool)
    done = 0
    for i, coupling in enumerate(graph.couplings):
        units = coupling.units[candidate[coupling.units]]
        if not len(units):
            continue
        names = producers.get(i) or {
            by_id[id(bs.variable)].name
            for bs in graph.slices
            if id(bs.variable) in by_id and graph.coupling_of[bs.units[0]] == i
        }
        rate = min(rates[n] for n in names)
        k = magnitude.keep_count(len(units), rate, target_round)
        kept = magnitude.top_k(scores[units], alive[units], k)
        if rearrange_rng is not None:
            kept = rearrange_rng.permutation(kept)
        keep[units] = kept
        done += 1
    if not done:
        raise NotPrunableError(
            "granularity='unit' found no unit that can be removed: "
            + "; ".join(graph.describe())
            + ". Use granularity='weight', or register a rule for the layers that keep "
            "their width (keras_lottery.compact.register_rule)."
        )
    out = {}
    for w in weights:
        m = graph.multiplier(w.kernel, keep)
        out[w.name] = current[w.name] if m is None else current[w.name] * m.astype(bool)
    return out


def _unit_masks(weights, trained, current, rates, target_round, criterion):
    dense = all(isinstance(w.layer, keras.layers.Dense) and w.kernel.ndim == 2 for w in weights)
    if not dense or criterion not in magnitude.UNIT_CRITERIA:
        return _filter_masks(weights, trained, current, rates, target_round, criterion)
    names = [w.name for w in weights]
    keep_units = [
        magnitude.keep_count(trained[n].shape[1], rates[n], target_round) for n in names[:-1]
    ]
    new = magnitude.unit_masks(
        [trained[n] for n in names], [current[n] for n in names], keep_units, criterion
    )
    return dict(zip(names, new))


def _unit_axis(w) -> int | None:
    """The axis of ``w``'s kernel that holds its units (Dense columns, conv filters)."""
    layer, ndim = w.layer, w.kernel.ndim
    if getattr(layer, "kernel", None) is not w.kernel:
        return None
    if isinstance(layer, keras.layers.DepthwiseConv1D | keras.layers.DepthwiseConv2D):
        return ndim - 2
    transposed = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose)
    if isinstance(layer, transposed + (keras.layers.Conv3DTranspose,)):
        return None
    if isinstance(layer, keras.layers.Dense) and ndim == 2:
        return 1
    if "Conv" in type(layer).__name__ and ndim >= 3:
        return ndim - 1
    return None


def _outgoing(weights, i, trained, current, units) -> np.ndarray | None:
    """L1 of each unit's weights in the next weight (in model order) that it feeds."""
    if i + 1 >= len(weights):
        return None
    nxt = weights[i + 1]
    w = np.abs(trained[nxt.name] * current[nxt.name])
    if nxt.kernel.ndim == 2 and w.shape[0] % units == 0:  # Dense, maybe after a Flatten
        return w.sum(axis=1).reshape(-1, units).sum(axis=0)
    if nxt.kernel.ndim >= 3 and w.shape[-2] == units:  # conv or depthwise: input channels
        return np.moveaxis(w, -2, -1).reshape(-1, units).sum(axis=0)
    return None


def _filter_masks(weights, trained, current, rates, target_round, criterion):
    """Whole units of any Dense/Conv layer: Dense columns, conv filters, depthwise channels.

    Units are ranked by their filter's magnitude (``"l1"``/``"input"``, ``"l2"``)
    or also by their weights in the next layer (``"output"``, ``"product"``).
    A removed unit's filter is masked; its outgoing weights then carry a
    constant, which :func:`keras_lottery.compact.compaction` folds away.  The output layer
    keeps all its units.
    """
    masks = {n: m.copy() for n, m in current.items()}
    done = 0
    for i, w in enumerate(weights):
        axis = _unit_axis(w)
        if w.is_output or axis is None:
            continue
        units = trained[w.name].shape[axis]
        outgoing = None
        if criterion in ("output", "product"):
            outgoing = _outgoing(weights, i, trained, current, units)
        try:
            scores = magnitude.filter_scores(
                trained[w.name], current[w.name], axis, criterion, outgoing
            )
        except ValueError as e:
            raise NotPrunableError(f"granularity='unit' on '{w.name}': {e}") from None
        k = magnitude.keep_count(units, rates[w.name], target_round)
        kept = magnitude.keep_units(current[w.name], axis, scores, k)
        shape = [1] * trained[w.name].ndim
        shape[axis] = units
        masks[w.name] = masks[w.name] * kept.reshape(shape).astype(masks[w.name].dtype)
        done += 1
    if not done:
        raise NotPrunableError(
            "granularity='unit' found no Dense or convolution kernel to prune by units "
            "(the output layer keeps its units); use granularity='weight'."
        )
    return masks


def _rearrange_units(weights, masks, rng):
    """The unit-level rearrange control: the same number of units, at random positions."""
    out = dict(masks)
    for w in weights:
        axis = _unit_axis(w)
        if w.is_output or axis is None:
            continue
        perm = rng.permutation(masks[w.name].shape[axis])
        out[w.name] = np.take(masks[w.name], perm, axis=axis)
    return out


def _n_m(granularity: str) -> tuple[int, int] | None:
    """``(n, m)`` for an N:M granularity such as ``"2:4"``; ``None`` for weight/unit."""
    if granularity in GRANULARITIES:
        return None
    parts = str(granularity).split(":")
    if len(parts) == 2 and all(p.isdigit() for p in parts) and 0 < int(parts[0]) < int(parts[1]):
        return int(parts[0]), int(parts[1])
    raise ValueError(
        f"Unknown granularity {granularity!r}; choose one of {', '.join(GRANULARITIES)} or "
        "an N:M pattern such as '2:4' (keep N of every M consecutive inputs)."
    )


def _n_m_axis_ok(w) -> bool:
    """N:M groups run along the input axis: Dense and (non-depthwise) conv kernels."""
    axis = _unit_axis(w)
    return axis is not None and axis == w.kernel.ndim - 1

"""Pruning at initialization: a sparse network at θ0 without training (no IMP).

:func:`prune_at_init` scores every pruned weight of a model at its initial
values θ0 by one criterion, keeps the best-scored ones and returns the
mask-aware model, still at θ0, ready for ``fit``:

==============  ======================================================================
``"snip"``      Lee et al. 2019: ``|g ⊙ θ|``, ``g`` the loss gradient on ``batches`` batches
``"grasp"``     Wang et al. 2020: keep the *lowest* ``S(-θ) = -θ ⊙ Hg`` (the authors'
                code removes the highest), i.e. the highest ``θ ⊙ Hg``; ``g`` and
                ``Hg`` on ``batches`` batches, logits divided by ``temperature``
``"synflow"``   Tanaka et al. 2020: data-free, ``|θ ⊙ dR/dθ|`` with ``R`` the sum of the
                network's output (output activation off, and activation layers after
                the last weights too: see :func:`activation_tail`) for an all-ones input and
                ``|θ|`` as every weight (biases and BatchNorm included, inference mode),
                ``iterations`` rounds on the exponential schedule
``"magnitude"`` ``|θ0|``
``"random"``    uniform random scores
==============  ======================================================================

Every criterion is one function ``scores(model, weights, batches) -> {path: array}``
(:data:`CRITERIA`); one shared selection turns scores into masks.  The
controls of Frankle et al. (ICLR 2021, "Pruning neural networks at
initialization: why are we missing the mark?") are one argument away:
``control="rearrange"`` (shuffle each layer's mask), ``control="reinit"``
(new initial values from the layers' initializers) and ``invert=True`` (keep
the lowest scores).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping

import keras
import numpy as np

from keras_lottery.criteria import gradients, magnitude
from keras_lottery.data import structure
from keras_lottery.data.datasets import Dataset
from keras_lottery.data.splits import is_pair, is_stream, read_data
from keras_lottery.masks.assign import assign
from keras_lottery.masks.convert import make_prunable
from keras_lottery.masks.masked_model import MaskedModel, PrunableWeight
from keras_lottery.options import AT_INIT_METHODS, SCOPES
from keras_lottery.records.cost import Cost, ImpBaseline, Ledger
from keras_lottery.search.masking import rates_per_layer
from keras_lottery.search.reset import fresh_values

METHODS = AT_INIT_METHODS
CONTROLS = ("rearrange", "reinit")
#: Methods that read data (the others are data-free).
DATA_METHODS = ("snip", "grasp")

Scores = dict[str, np.ndarray]


def prune_at_init(
    model: keras.Model,
    data=None,
    *,
    sparsity: float,
    method: str = "snip",
    scope: str = "global",
    output_sparsity: float | None = None,
    seed: int = 0,
    batches: int = 1,
    batch_size: int = 100,
    iterations: int = 100,
    temperature: float = 200.0,
    control: str | None = None,
    invert: bool = False,
    include=None,
    exclude=None,
) -> MaskedModel:
    """Prune ``model`` at its initial weights θ0 by ``method`` and return the ticket at θ0.

    The model is wrapped with masks (:func:`~keras_lottery.make_prunable`, in
    place, as :func:`~keras_lottery.find_ticket` does) and compiled as
    ``model`` was; every weight keeps its value except the pruned ones,
    which are exactly 0.  Train it with ``fit``: pruned weights stay 0.
    ``result.at_init`` describes the pruning (method, sparsity per layer,
    seconds, and its ``"cost"``: a :class:`~keras_lottery.records.cost.Cost`).
    :func:`~keras_lottery.find_ticket` accepts the result and
    continues IMP from its masks (they never regrow; its rates count from the
    dense size, so a round prunes once its target is above ``sparsity``).

    The pruned weights are those :func:`~keras_lottery.find_ticket` prunes
    (weight matrices; biases and normalisation parameters never), and the
    counts follow its rules: ``scope="global"`` keeps ``round(n * (1 -
    sparsity))`` of all ``n`` pruned weights under one threshold;
    ``scope="layerwise"`` keeps that fraction of every layer, and of the
    output layer the fraction ``1 - output_sparsity`` (default: half of
    ``sparsity``, the output layer's half rate).

    Args:
        model: a built (and, to train the result, compiled) Keras 3 model, or
            a :class:`MaskedModel`, whose pruned weights then stay pruned.
        data: for ``"snip"`` and ``"grasp"``: what
            :func:`~keras_lottery.find_ticket` reads -- ``(x, y)`` arrays of
            any framework, or dicts, lists or tuples of them (``batches``
            batches of ``batch_size`` examples are drawn with ``seed``), a
            :class:`~keras_lottery.Dataset` (its training split) or a dataset
            name -- or a stream or other iterable of ``(x, y)`` batches (the
            first ``batches`` are used).
            The other methods need none (SynFlow reads the input shape from
            it if the model has no ``inputs``).
        sparsity: fraction of the pruned weights removed, in ``[0, 1)``.
        method: ``"snip"``, ``"grasp"``, ``"synflow"``, ``"magnitude"`` or ``"random"``.
        scope: ``"global"`` (one ranking over all layers, as the three papers)
            or ``"layerwise"``.
        seed: seeds the batches drawn, the random scores and controls.
        iterations: SynFlow's pruning iterations (paper: 100); the kept
            fraction after iteration ``k`` is ``(1 - sparsity) ** (k / iterations)``.
        temperature: GraSP divides the output layer's pre-activation by it
            (the authors' code: 200); ``1`` turns it off.
        control: ``"rearrange"`` (each layer's mask at random positions, same
            count) or ``"reinit"`` (the masks of θ0, then all weights drawn anew
            from the layers' initializers with a new seed).
        invert: keep the lowest-scored weights instead (same counts).
        include, exclude: which weights are pruned, as for ``make_prunable``.
    """
    _check(sparsity, method, scope, output_sparsity, control, batches, iterations, data)
    t0 = time.perf_counter()
    ledger = Ledger(Cost(method=method, imp=ImpBaseline(sparsity=sparsity)), started=t0)
    ticket = make_prunable(model, include=include, exclude=exclude)
    if ticket is not model and getattr(model, "compiled", False):
        ticket.compile_from_config(model.get_compile_config())
    weights = ticket.prunable_weights()
    alive = {w.name: np.asarray(w.mask) for w in weights}
    rates = rates_per_layer(ticket, sparsity, output_sparsity, None, scope)
    rng = np.random.default_rng([seed, 1])
    data_batches = _batches(data, batches, batch_size, seed) if data is not None else []
    theta0 = [np.array(v) for v in ticket.model.weights]
    ledger.add("setup", time.perf_counter() - t0)
    how = dict(iterations=iterations, invert=invert, rng=rng, temperature=temperature)

    if method in DATA_METHODS:  # the gradient, then (GraSP) the Hessian-vector product
        read = sum(structure.num_examples(x, y) for x, y in data_batches)
        ledger.scored(read * (2 if method == "grasp" else 1))
    with ledger.outside("masks"):
        masks = _scored_masks(ticket, method, alive, rates, scope, data_batches, theta0, **how)
        if control == "rearrange":
            masks = magnitude.rearrange(masks, rng)
        elif control == "reinit":
            for var, value in zip(ticket.model.weights, fresh_values(ticket.model, seed + 7919)):
                assign(var, value)
        ticket.set_masks(masks)
    ticket.at_init = {
        "method": method,
        "sparsity": sparsity,
        "scope": scope,
        "control": control,
        "invert": invert,
        "seed": seed,
        "layer_remaining": {n: float(m.mean()) for n, m in masks.items()},
        "remaining": sum(int(m.sum()) for m in masks.values())
        / sum(m.size for m in masks.values()),
        "seconds": time.perf_counter() - t0,
        "cost": ledger.close(),
    }
    return ticket


def _scored_masks(
    ticket, method, alive, rates, scope, batches, theta0, *, iterations, invert, **kw
):
    """The masks of ``method`` (SynFlow: ``iterations`` rounds); the weights end at θ0."""
    weights = ticket.prunable_weights()
    criterion = CRITERIA[method]
    steps = iterations if method == "synflow" else 1
    masks = alive
    try:
        for k in range(1, steps + 1):
            fraction = k / steps  # the exponential schedule: kept = (1 - s) ** (k / steps)
            keep = _keep_counts(weights, rates, scope, fraction)
            scores = criterion(ticket, weights, batches, **kw)
            if invert:
                scores = {n: -s for n, s in scores.items()}
            masks = select(scores, masks, keep)
            if k < steps:
                ticket.set_masks(masks, optimizer_state=False)
    finally:
        for var, value in zip(ticket.model.weights, theta0):
            assign(var, value)
    return masks


def select(scores: Mapping[str, np.ndarray], alive: Mapping[str, np.ndarray], keep) -> Scores:
    """Masks keeping the highest scores among ``alive`` positions.

    ``keep``: an ``int`` (one ranking across all layers) or ``{path: int}``
    (per layer).  Ties go to the first positions (as :func:`magnitude.top_k`).
    """
    if isinstance(keep, Mapping):
        return {n: magnitude.top_k(np.asarray(scores[n]), alive[n], keep[n]) for n in alive}
    as_float64 = {n: np.asarray(scores[n], dtype="float64") for n in alive}
    return magnitude.top_k_global(as_float64, {n: np.asarray(alive[n]) for n in alive}, keep)


# -- the criteria: scores(model, weights, batches) -> {path: array} ---------------


def snip_scores(model, weights: list[PrunableWeight], batches, **_) -> Scores:
    """SNIP: ``|g ⊙ θ|``, ``g`` the loss gradient summed over ``batches``."""
    grads = _summed(gradients.loss_gradients(model, x, y, _kernels(weights)) for x, y in batches)
    return {w.name: np.abs(g * np.asarray(w.kernel)) for w, g in zip(weights, grads)}


def grasp_scores(model, weights: list[PrunableWeight], batches, *, temperature=200.0, **_):
    """GraSP: ``θ ⊙ Hg`` (keeping the highest removes the highest ``S(-θ) = -θ ⊙ Hg``)."""
    kernels = _kernels(weights)
    with _output_activation(model, weights, lambda act: lambda z: act(z / temperature)):
        g = _summed(gradients.loss_gradients(model, x, y, kernels) for x, y in batches)
        hg = _summed(
            gradients.loss_hessian_vector_product(model, x, y, kernels, g) for x, y in batches
        )
    return {w.name: np.asarray(w.kernel) * h for w, h in zip(weights, hg)}


def synflow_scores(model, weights: list[PrunableWeight], batches, **_) -> Scores:
    """SynFlow: ``|θ ⊙ dR/dθ|``, ``R = sum(f(1; |θ|))`` with the output activation off."""
    variables = [v for v in model.weights if _is_float(v)]
    signed = [np.array(v) for v in variables]
    for var, value in zip(variables, signed):
        assign(var, np.abs(value))
    ones = _ones_input(model, batches)
    try:
        with (
            _output_activation(model, weights, lambda act: keras.activations.linear),
            _linear_tail(model),
        ):
            grads = gradients.gradients(
                lambda: _total(model(ones, training=False)), _kernels(weights)
            )
    finally:
        for var, value in zip(variables, signed):
            assign(var, value)
    return {w.name: np.abs(g * np.asarray(w.kernel)) for w, g in zip(weights, grads)}


def magnitude_scores(model, weights: list[PrunableWeight], batches, **_) -> Scores:
    """``|θ0|``."""
    return {w.name: np.abs(np.asarray(w.kernel)) for w in weights}


def random_scores(model, weights: list[PrunableWeight], batches, *, rng, **_) -> Scores:
    """Uniform random scores (drawn from the seeded generator)."""
    return {w.name: rng.random(tuple(w.kernel.shape)) for w in weights}


#: ``method -> scores(model, weights, batches, *, rng, temperature)``.
CRITERIA: dict[str, Callable[..., Scores]] = {
    "snip": snip_scores,
    "grasp": grasp_scores,
    "synflow": synflow_scores,
    "magnitude": magnitude_scores,
    "random": random_scores,
}


# -- helpers -----------------------------------------------------------------


def _check(sparsity, method, scope, output_sparsity, control, batches, iterations, data):
    magnitude.check_sparsity(sparsity, "sparsity")
    if output_sparsity is not None:
        magnitude.check_sparsity(output_sparsity, "output_sparsity")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}.")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}.")
    if control is not None and control not in CONTROLS:
        raise ValueError(f"control must be None or one of {', '.join(CONTROLS)}, got {control!r}.")
    if output_sparsity is not None and scope == "global":
        raise ValueError("output_sparsity applies to scope='layerwise' (global: one ranking).")
    if batches < 1 or iterations < 1:
        raise ValueError("batches and iterations must be at least 1.")
    if method in DATA_METHODS and data is None:
        raise ValueError(f"method={method!r} scores weights on data: pass data=(x, y).")


def _keep_counts(weights, rates, scope, fraction: float):
    """Kept weights after a fraction of the schedule: ``n * (1 - rate) ** fraction``."""
    if scope == "global":
        total = sum(int(np.prod(w.kernel.shape)) for w in weights)
        rate = next(iter(rates.values()))
        return int(round(total * (1.0 - rate) ** fraction))
    return {
        w.name: int(round(int(np.prod(w.kernel.shape)) * (1.0 - rates[w.name]) ** fraction))
        for w in weights
    }


def _batches(data, batches: int, batch_size: int, seed: int) -> list[tuple]:
    """The batches to score on: drawn from ``(x, y)`` arrays, or the first of a stream.

    ``data`` is read as :func:`~keras_lottery.find_ticket` reads it
    (:func:`~keras_lottery.data.splits.read_data`); any other iterable is
    taken as one of ``(x, y)`` batches.
    """
    if is_pair(data) or isinstance(data, str | Dataset):
        (x, y), _ = read_data(data)
        order = np.random.default_rng([seed, 0]).permutation(structure.num_examples(x, y))
        picked = [order[i * batch_size : (i + 1) * batch_size] for i in range(batches)]
        return [(structure.take(x, i), structure.take(y, i)) for i in picked if len(i)]
    if is_stream(data) or isinstance(data, Iterable):
        out = []
        for item in data:
            if len(out) == batches:
                break
            x, y = item[0], item[1]
            numpy = keras.ops.convert_to_numpy
            out.append((keras.tree.map_structure(numpy, x), keras.tree.map_structure(numpy, y)))
        return out
    raise TypeError(
        "data must be what find_ticket reads ((x, y) arrays of any framework, a Dataset or a "
        f"dataset name) or an iterable of (x, y) batches, got {type(data).__name__}."
    )


def _kernels(weights):
    return [w.kernel for w in weights]


def _summed(arrays_per_batch: Iterable[list[np.ndarray]]) -> list[np.ndarray]:
    total = None
    for arrays in arrays_per_batch:
        total = arrays if total is None else [t + a for t, a in zip(total, arrays)]
    if total is None:
        raise ValueError("No batch to score on: data holds no examples.")
    return total


def _is_float(variable) -> bool:
    return "float" in keras.backend.standardize_dtype(variable.dtype)


@contextlib.contextmanager
def _output_activation(model: MaskedModel, weights, change):
    """Inside, every output layer with an ``activation`` uses ``change(activation)``."""
    swapped = []
    for layer in {id(w.layer): w.layer for w in weights if w.is_output}.values():
        act = getattr(layer, "activation", None)
        if act is None:
            continue
        swapped.append((layer, act))
        object.__setattr__(layer, "activation", change(act))
    try:
        yield
    finally:
        for layer, act in swapped:
            object.__setattr__(layer, "activation", act)


#: Layers that only apply an activation (SynFlow switches them off after the last weights).
ACTIVATION_LAYERS = (
    keras.layers.Activation,
    keras.layers.Softmax,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
)


def activation_tail(model: keras.Model) -> list[keras.layers.Layer]:
    """The activation layers between the model's outputs and the layers before them.

    Followed back from every output of a functional or Sequential model
    (``Dense(10)`` then ``Activation("softmax")`` gives the ``Activation``);
    a model without a graph (subclassed) gives none.
    """
    try:
        outputs = keras.tree.flatten(model.outputs or [])
    except (AttributeError, ValueError):  # a subclassed model, or one never called
        return []
    tail: dict[int, keras.layers.Layer] = {}
    stack = list(outputs)
    while stack:
        history = getattr(stack.pop(), "_keras_history", None)
        if history is None:
            continue
        layer, node_index = history[0], history[1]
        if not isinstance(layer, ACTIVATION_LAYERS) or id(layer) in tail:
            continue
        tail[id(layer)] = layer
        stack += list(layer._inbound_nodes[node_index].input_tensors)
    return list(tail.values())


def _identity(inputs, *args, **kwargs):
    return inputs


@contextlib.contextmanager
def _linear_tail(model: MaskedModel):
    """Inside, the activation layers at the end of the network pass their inputs through."""
    tail = activation_tail(model.model)
    for layer in tail:
        object.__setattr__(layer, "call", _identity)
    try:
        yield
    finally:
        for layer in tail:
            object.__delattr__(layer, "call")  # the class's call again


def _total(outputs):
    """SynFlow's R: the sum of every output of the network (one or several)."""
    return sum(keras.ops.sum(o) for o in keras.tree.flatten(outputs))


def _ones_input(model: MaskedModel, batches):
    """One all-ones example shaped like the model's input (from data if it has no ``inputs``)."""
    inputs = getattr(model.model, "inputs", None)
    if inputs and all(d is not None for t in inputs for d in tuple(t.shape)[1:]):
        try:  # the model's own input structure (a dict for named inputs)
            nest = model.model.input
        except (AttributeError, ValueError):  # a Sequential never called
            nest = inputs[0] if len(inputs) == 1 else inputs
        return keras.tree.map_structure(
            lambda t: np.ones((1, *tuple(t.shape)[1:]), t.dtype or "float32"), nest
        )
    if batches:
        x = batches[0][0]
        return keras.tree.map_structure(lambda a: np.ones((1, *np.shape(a)[1:]), "float32"), x)
    raise ValueError(
        "SynFlow needs the input shape: the model has no inputs of a fixed shape; pass data."
    )


__all__ = ["CONTROLS", "CRITERIA", "METHODS", "prune_at_init", "select"]

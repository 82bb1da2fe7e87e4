"""Which weights of a Keras model are pruned, and why the others are not.

The rule, for any Keras 3 model (Sequential, functional, subclassed, keras-hub):

* pruned: every trainable floating-point variable with ``ndim >= 2`` -- Dense,
  EinsumDense and convolution kernels, attention query/key/value/output
  kernels, RNN ``kernel`` and ``recurrent_kernel``, embeddings -- wherever it
  lives (sub-layers, nested models, subclasses of stock layers);
* not pruned: biases and normalisation parameters (``ndim < 2``), frozen or
  non-trainable variables (statistics, counters), and what the user excludes;
* ``include`` / ``exclude`` select by variable path (a glob such as
  ``"*attention*"``, a compiled regular expression, or a predicate taking the
  variable), and an ``include`` can add 1-D variables too.

A weight is masked by showing its users ``weight * mask`` during the forward
pass (see :mod:`keras_lottery.masks.masked_model`), which needs the layer to hold the
variable as an attribute, as every Keras layer does.  A variable that no layer
attribute holds is reported as *unreachable* rather than pretended pruned.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import keras
import numpy as np

#: A variable selector: a glob over paths, a compiled regex, or a predicate.
Selector = str | re.Pattern | Callable[[keras.Variable], bool]

PRUNED = "pruned"
REASONS = {
    "small": "ndim < 2 (bias, scale or normalisation parameter)",
    "bias": "a bias (named 'bias')",
    "frozen": "not trainable (frozen layer, statistic or counter)",
    "dtype": "not a floating-point variable",
    "excluded": "excluded by exclude=",
    "not_included": "not matched by include=",
    "unreachable": "no layer attribute holds it, so its use cannot be masked",
}


@dataclass(frozen=True)
class Owner:
    """A place where a layer holds a weight: ``layer.<attribute>``."""

    layer: keras.layers.Layer
    attribute: str


@dataclass(frozen=True)
class WeightInfo:
    """One variable of a model, with where it is held and its pruning status."""

    path: str
    variable: keras.Variable
    layer: keras.layers.Layer | None
    owners: tuple[Owner, ...]
    reason: str  # PRUNED or a key of REASONS

    @property
    def pruned(self) -> bool:
        return self.reason == PRUNED

    @property
    def is_matrix(self) -> bool:
        """A weight matrix: floating point, ``ndim >= 2``, not a bias."""
        var = self.variable
        return len(var.shape) >= 2 and _is_float(var) and not _is_bias(var)


@dataclass
class Coverage:
    """One row per variable of a model: path, shape, pruned or not, and why not.

    ``print(coverage)`` shows the table; ``coverage.dense_matrices`` lists the
    weight matrices that stay dense.
    """

    rows: list[WeightInfo]
    sparsity: dict[str, float] = field(default_factory=dict)
    #: effective sparsity per weight path and ``"overall"`` (see keras_lottery.compact.compaction)
    effective: dict[str, float] | None = None

    @property
    def pruned(self) -> list[WeightInfo]:
        return [r for r in self.rows if r.pruned]

    @property
    def dense_matrices(self) -> list[WeightInfo]:
        """Weight matrices (ndim >= 2) that are not pruned, with their reason."""
        return [r for r in self.rows if r.is_matrix and not r.pruned]

    def fraction_covered(self) -> float:
        """Share of the weight-matrix parameters that are pruned."""
        total = sum(_size(r.variable) for r in self.rows if r.is_matrix)
        done = sum(_size(r.variable) for r in self.rows if r.is_matrix and r.pruned)
        return done / total if total else 0.0

    def to_dicts(self) -> list[dict]:
        return [
            {
                "path": r.path,
                "shape": list(r.variable.shape),
                "layer": type(r.layer).__name__ if r.layer is not None else None,
                "pruned": r.pruned,
                "reason": "" if r.pruned else REASONS[r.reason],
                **({"sparsity": self.sparsity[r.path]} if r.path in self.sparsity else {}),
                **(
                    {"effective_sparsity": self.effective[r.path]}
                    if self.effective and r.path in self.effective
                    else {}
                ),
            }
            for r in self.rows
        ]

    def __str__(self) -> str:
        header = ("path", "shape", "layer", "pruned", "sparsity / why not")
        lines = []
        for d in self.to_dicts():
            status = f"{d['sparsity']:.1%}" if "sparsity" in d else ""
            if "effective_sparsity" in d:
                status += f" (effective {d['effective_sparsity']:.1%})"
            lines.append(
                (
                    d["path"],
                    "x".join(map(str, d["shape"])) or "scalar",
                    d["layer"] or "-",
                    "yes" if d["pruned"] else "no",
                    status if d["pruned"] else d["reason"],
                )
            )
        widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(4)]
        out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)) + "  " + header[4]]
        for row in lines:
            out.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
        out.append(
            f"{len(self.pruned)} pruned variables cover {self.fraction_covered():.1%} of the "
            f"weight-matrix parameters; {len(self.dense_matrices)} weight matrices stay dense."
        )
        if self.effective:
            out.append(
                f"Effective sparsity {self.effective['overall']:.1%}: weights on no path of "
                "surviving weights from input to output count as pruned."
            )
        return "\n".join(out)

    __repr__ = __str__


# -- discovery ----------------------------------------------------------------


def layer_tree(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Every layer reachable from ``model`` (itself included), depth first, each once."""
    seen: set[int] = set()

    def walk(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        yield layer
        for sub in layer._flatten_layers(include_self=False, recursive=False):
            yield from walk(sub)

    yield from walk(model)


def discover(model: keras.Model, include=None, exclude=None) -> list[WeightInfo]:
    """Every variable of ``model`` once, in ``model.weights`` order, with its status.

    Raises:
        TypeError: ``model`` is not a Keras layer.
        ValueError: an ``include`` selector that matches no variable, or the
            model is not built (it has no variables yet).
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built, so it has no weights yet: give it an input "
            "shape (keras.Input(...), model.build(input_shape), or call it on a batch) first."
        )
    owners: dict[int, list[Owner]] = {}
    owning_layer: dict[int, keras.layers.Layer] = {}
    for layer in layer_tree(model):
        for var in layer._trainable_variables + layer._non_trainable_variables:
            owning_layer.setdefault(id(var), layer)
        for attribute, value in vars(layer).items():
            if isinstance(value, keras.Variable):
                owners.setdefault(id(value), []).append(Owner(layer, attribute))
    include, exclude = _selectors(include), _selectors(exclude)
    rows, used = [], set()
    for var, path in zip(*_unique_paths(model.weights)):
        reason = _status(var, path, include, exclude, used, bool(owners.get(id(var))))
        rows.append(
            WeightInfo(
                path=path,
                variable=var,
                layer=owning_layer.get(id(var)),
                owners=tuple(owners.get(id(var), ())),
                reason=reason,
            )
        )
    if include:
        unused = [s for i, s in enumerate(include) if i not in used]
        if unused:
            paths = [r.path for r in rows if r.is_matrix][:8]
            raise ValueError(
                f"include selector(s) {[_describe(s) for s in unused]} match no variable of "
                f"model '{model.name}'. Variable paths look like {paths}."
            )
    return rows


def _status(var, path, include, exclude, used, reachable) -> str:
    if not _is_float(var):
        return "dtype"
    if not var.trainable:
        return "frozen"
    if include:
        hits = [i for i, s in enumerate(include) if _matches(s, var, path)]
        used.update(hits)
        if not hits:
            return "not_included"
    elif len(var.shape) < 2:
        return "small"
    elif _is_bias(var):
        return "bias"
    if any(_matches(s, var, path) for s in exclude):
        return "excluded"
    if not reachable:
        return "unreachable"
    return PRUNED


def _unique_paths(variables: Iterable[keras.Variable]) -> tuple[list, list[str]]:
    """Variables once each, and their paths (``#2``, ``#3``... for repeated paths)."""
    out, paths, seen, counts = [], [], set(), {}
    for var in variables:
        if id(var) in seen:
            continue
        seen.add(id(var))
        n = counts[var.path] = counts.get(var.path, 0) + 1
        out.append(var)
        paths.append(var.path if n == 1 else f"{var.path}#{n}")
    return out, paths


def _selectors(spec) -> list[Selector]:
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str | re.Pattern) or callable(spec) else list(spec)
    for s in items:
        if not (isinstance(s, str | re.Pattern) or callable(s)):
            raise TypeError(
                f"A weight selector must be a glob string, a compiled regex or a "
                f"predicate(variable) -> bool; got {type(s).__name__}."
            )
    return items


def _matches(selector: Selector, var, path: str) -> bool:
    if isinstance(selector, str):
        return fnmatch.fnmatchcase(path, selector)
    if isinstance(selector, re.Pattern):
        return selector.search(path) is not None
    return bool(selector(var))


def _describe(selector: Selector) -> str:
    if isinstance(selector, re.Pattern):
        return f"re.compile({selector.pattern!r})"
    return selector if isinstance(selector, str) else getattr(selector, "__name__", "predicate")


def _is_bias(var) -> bool:
    name = var.name.rsplit("/", 1)[-1]
    return name == "bias" or name.endswith("_bias")


def _is_float(var) -> bool:
    return "float" in str(var.dtype)


def _size(var) -> int:
    return int(np.prod(var.shape))


# -- the output layer -------------------------------------------------------


def output_paths(model: keras.Model, rows: list[WeightInfo]) -> set[str]:
    """Paths of the pruned weights that feed the model's outputs directly.

    In a functional graph (nested ones included) each output is followed back
    to the first operation that holds pruned weights; of that operation the
    innermost last layer with pruned weights counts (the Dense of a classifier
    head, the output projection of an attention block, the cell of an RNN).
    A subclassed model has no graph: its last layer with pruned weights counts.
    """
    pruned = {id(r.variable): r for r in rows if r.pruned}
    if not pruned:
        return set()
    found: set[str] = set()
    if not _follow_outputs(model, pruned, found):
        found |= _last_owner_paths(model, pruned)
    return found


def _follow_outputs(model, pruned, found) -> bool:
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return False
    stack = list(keras.tree.flatten(outputs))
    seen: set[int] = set()
    while stack:
        tensor = stack.pop()
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            continue
        operation, node_index = history[0], history[1]
        if id(operation) in seen:
            continue
        seen.add(id(operation))
        held = [v for v in getattr(operation, "weights", []) if id(v) in pruned]
        if held:
            if not _follow_outputs(operation, pruned, found):
                found |= _last_owner_paths(operation, pruned)
            continue
        node = operation._inbound_nodes[node_index]
        stack.extend(node.input_tensors)
    return True


def _last_owner_paths(layer, pruned) -> set[str]:
    last = None
    for sub in layer_tree(layer):
        own = [v for v in sub._trainable_variables if id(v) in pruned]
        if own:
            last = own
    return {pruned[id(v)].path for v in last or []}

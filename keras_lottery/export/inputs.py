"""The inputs a model takes, and the data an export is verified and calibrated on.

A model's inputs are one array, a list of arrays or a dict of arrays (by input
name), as Keras takes them.  They are read from the model's graph (functional
and Sequential models), else from its build config (a subclassed model that was
built or called), else from the data passed to :func:`keras_lottery.export`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from keras_lottery.data.datasets import Dataset

VERIFY_SAMPLES = 32
REPRESENTATIVE_SAMPLES = 256
BATCH = 256


@dataclass(frozen=True)
class Spec:
    """One input: shape without the batch dimension, dtype (``None``: from the data)."""

    shape: tuple[int | None, ...]
    dtype: np.dtype | None
    name: str


#: One :class:`Spec`, a list of them or a dict of them (by input name).
Template = Any


def model_template(model: keras.Model) -> tuple[Template | None, str]:
    """The input template of ``model`` and where it was read from (``None`` if unknown)."""
    struct = getattr(model, "_inputs_struct", None)
    if struct is None:
        try:
            struct = model.inputs
        except (AttributeError, ValueError):
            struct = None
        if isinstance(struct, list | tuple) and len(struct) == 1:
            struct = struct[0]
    if struct is not None and not (isinstance(struct, list | tuple | dict) and not struct):
        return _from_tensors(struct), "the model's inputs"
    config = model.get_build_config() if model.built else None
    shapes = (config or {}).get("input_shape")
    if shapes is not None:
        return _from_shapes(shapes), "the model's build config"
    return None, ""


def _from_tensors(struct) -> Template:
    def spec(t, name):
        dtype = np.dtype(keras.backend.standardize_dtype(t.dtype))
        return Spec(tuple(t.shape[1:]), dtype, name)

    return _map(struct, spec)


def _from_shapes(shapes) -> Template:
    def is_shape(s):
        return isinstance(s, list | tuple) and all(d is None or isinstance(d, int) for d in s)

    if is_shape(shapes):
        return Spec(tuple(shapes[1:]), None, "input_0")
    return _map(shapes, lambda s, name: Spec(tuple(s[1:]), None, name), leaf=is_shape)


def data_template(x) -> Template:
    """A template read from example inputs (their shapes and dtypes)."""

    def spec(a, name):
        a = np.asarray(a)
        if a.ndim == 0:
            raise ValueError("verify_data holds a scalar where a batch of inputs belongs.")
        dtype = a.dtype if np.issubdtype(a.dtype, np.integer) else np.dtype("float32")
        return Spec(tuple(a.shape[1:]), dtype, name)

    return _map(x, spec, leaf=lambda a: not isinstance(a, dict | list | tuple))


def _map(struct, fn, leaf=None) -> Template:
    """Apply ``fn(leaf, name)`` over a flat structure: one leaf, a list or a dict of leaves."""
    leaf = leaf or (lambda s: not isinstance(s, dict | list | tuple))
    if isinstance(struct, dict):
        if not all(leaf(v) for v in struct.values()):
            raise ValueError("export supports inputs as one array, a list or a flat dict.")
        return {k: fn(v, _tensor_name(str(k))) for k, v in struct.items()}
    if isinstance(struct, list | tuple) and not leaf(struct):
        if not all(leaf(v) for v in struct):
            raise ValueError("export supports inputs as one array, a list or a flat dict.")
        return [fn(v, f"input_{i}") for i, v in enumerate(struct)]
    return fn(struct, "input_0")


def _tensor_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.]", "_", key)
    return name if name[:1].isalnum() else f"input_{name}"


def flat(template_or_x) -> list:
    """Leaves in Keras's order (dict keys sorted)."""
    return keras.tree.flatten(template_or_x)


def describe(template: Template) -> str:
    def one(s):
        return f"({', '.join('None' if d is None else str(d) for d in s.shape)})"

    if isinstance(template, dict):
        return "{" + ", ".join(f"{k!r}: {one(s)}" for k, s in template.items()) + "}"
    if isinstance(template, list):
        return f"a list of {len(template)}: [{', '.join(one(s) for s in template)}]"
    return one(template)


def split_xy(data) -> tuple[Any, Any]:
    """``x, y`` from ``x``, an ``(x, y)`` tuple or a :class:`Dataset` (its test split)."""
    if isinstance(data, Dataset):
        return data.x_test, data.y_test
    if isinstance(data, tuple) and len(data) == 2:
        return data
    return data, None


def conform(x, template: Template, what: str):
    """``x`` as arrays in the structure of ``template``, checked, or a clear ``ValueError``."""
    if isinstance(template, dict):
        if not isinstance(x, dict):
            raise ValueError(
                f"The model takes a dict of inputs {describe(template)}; the {what} is a "
                f"{type(x).__name__}. Pass a dict with those keys."
            )
        missing, extra = set(template) - set(x), set(x) - set(template)
        if missing or extra:
            raise ValueError(
                f"The {what} has keys {sorted(x)}, but the model's inputs are "
                f"{sorted(template)} (missing {sorted(missing)}, unknown {sorted(extra)})."
            )
        out = {k: _array(x[k], template[k], f"{what}[{k!r}]") for k in template}
    elif isinstance(template, list):
        if not isinstance(x, list | tuple) or len(x) != len(template):
            got = f"a {type(x).__name__}" + (
                f" of {len(x)}" if isinstance(x, list | tuple | dict) else ""
            )
            raise ValueError(
                f"The model takes {len(template)} inputs {describe(template)}; the {what} is "
                f"{got}. Pass a list of {len(template)} arrays."
            )
        out = [_array(a, s, f"{what}[{i}]") for i, (a, s) in enumerate(zip(x, template))]
    else:
        if isinstance(x, dict):
            raise ValueError(
                f"The model takes one input of shape {describe(template)}; the {what} is a dict."
            )
        out = _array(x, template, what)
    sizes = {len(a) for a in flat(out)}
    if len(sizes) > 1:
        raise ValueError(f"The {what}'s arrays have different lengths {sorted(sizes)}.")
    return out


def _array(x, spec: Spec, what: str) -> np.ndarray:
    dtype = spec.dtype
    if dtype is None:
        given = np.asarray(x).dtype
        dtype = given if np.issubdtype(given, np.integer) else np.dtype("float32")
    if np.issubdtype(dtype, np.floating):
        dtype = np.dtype("float32") if dtype != np.float64 else dtype
    try:
        x = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"The {what} is not an array of model inputs: {e}") from e
    got = x.shape[1:]
    fits = len(got) == len(spec.shape) and all(e is None or e == g for e, g in zip(spec.shape, got))
    if x.ndim == 0 or not fits:
        shape = ", ".join("None" if d is None else str(d) for d in spec.shape)
        raise ValueError(
            f"The {what} has examples of shape {got if x.ndim else '()'}, but the model "
            f"expects inputs of shape {tuple(spec.shape)} (batch dimension first, e.g. "
            f"(n, {shape}))."
        )
    if len(x) == 0:
        raise ValueError(f"The {what} is empty.")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError(f"The {what} contains NaN or inf values.")
    return x


def random_inputs(template: Template, model_name: str):
    """32 random inputs (floats in [0, 1), integers 0/1) of a fully known template."""
    rng = np.random.default_rng(0)

    def one(spec: Spec, _name):
        if None in spec.shape:
            raise ValueError(
                f"Model '{model_name}' takes inputs of shape {describe(template)} with unknown "
                "dimensions: pass verify_data with example inputs."
            )
        shape = (VERIFY_SAMPLES, *spec.shape)
        if spec.dtype is not None and np.issubdtype(spec.dtype, np.integer):
            return rng.integers(0, 2, shape).astype(spec.dtype)
        return rng.random(shape, dtype=np.float32)

    return _map(template, lambda s, name: one(s, name), leaf=lambda s: isinstance(s, Spec))


def verify_inputs(data, template: Template | None, model_name: str):
    """``(x, y)`` to verify on: the data's, or random inputs of the model's shape."""
    if data is None:
        if template is None:
            raise ValueError(f"{_no_shape(model_name)} Pass verify_data=<a batch of inputs>.")
        return random_inputs(template, model_name), None
    x, y = split_xy(data)
    x = conform(x, template if template is not None else data_template(x), "verify_data")
    n = len(flat(x)[0])
    if y is not None and not isinstance(y, dict | list):
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"verify_data has {n} inputs but {len(y)} labels.")
    elif y is not None:
        y = None  # labels of several outputs: outputs are compared, no accuracy
    return x, y


def representative_inputs(data, template: Template | None, model_name: str):
    """Calibration inputs for full-integer quantization (first 256 examples)."""
    if data is None:
        raise ValueError(
            "format='tflite-int8-full' quantizes activations too, which needs "
            "calibration inputs: pass representative_data=x_train[:256] (model inputs "
            f"{describe(template) if template is not None else ''})."
        )
    if isinstance(data, Dataset):
        data = data.x_train
    x, _ = split_xy(data)
    x = conform(x, template if template is not None else data_template(x), "representative_data")
    return take(x, 0, REPRESENTATIVE_SAMPLES)


def _no_shape(model_name: str) -> str:
    return (
        f"Model '{model_name}' does not say what inputs it takes (a subclassed model with "
        "no build config and no graph)."
    )


def take(x, start: int, stop: int):
    """Examples ``start:stop`` of every array of ``x``."""
    return keras.tree.map_structure(lambda a: a[start:stop], x)


def batches(x, size: int = BATCH) -> Iterable:
    n = len(flat(x)[0])
    for i in range(0, n, size):
        yield take(x, i, i + size)


def exact_batches(x, size: int) -> Iterable[tuple[Any, int]]:
    """``(batch, n)``: batches of exactly ``size`` examples, the last one padded.

    For signatures with a fixed batch: a short last batch is filled up with
    copies of its first example; ``n`` says how many of the batch are real.
    """
    for part in batches(x, size):
        n = len(flat(part)[0])
        if n < size:
            part = keras.tree.map_structure(
                lambda a, n=n: np.concatenate([a, np.repeat(a[:1], size - n, axis=0)]), part
            )
        yield part, n


def stack_outputs(parts: list[tuple[list[np.ndarray], int]]) -> list[np.ndarray]:
    """Flat outputs of several batches joined, each cut to its ``n`` real examples."""
    return [np.concatenate([out[i][:n] for out, n in parts]) for i in range(len(parts[0][0]))]


def predict(model, x) -> list[np.ndarray]:
    """Flat outputs of ``model`` on ``x`` (inference mode, batches of 256)."""
    parts = [
        [np.asarray(keras.ops.convert_to_numpy(o)) for o in flat(model(b, training=False))]
        for b in batches(x)
    ]
    return [np.concatenate(col) for col in zip(*parts)]


def output_names(model, count: int) -> list[str]:
    """One name per flat output: the output dict's keys, else ``output_<i>``."""
    struct = getattr(model, "_outputs_struct", None)
    if isinstance(struct, dict) and len(struct) == count:
        return [_tensor_name(str(k)) for k in sorted(struct)]
    return [f"output_{i}" for i in range(count)]

"""Run a TFLite file in LiteRT (``ai_edge_litert``) and read its weights back.

Files run first with the interpreter's default settings (XNNPack delegate),
then without default delegates; the result says which one worked, and which
ops of the file the delegate left to LiteRT's own kernels.  Inputs and outputs
are fed and read by the name of the file's serving signature; a file with a
fixed batch size is fed batches of exactly that size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from keras_lottery.export.inputs import batches, exact_batches, flat, stack_outputs
from keras_lottery.export.report import ExportError, StoredWeight, kernel_stats

_LATENCY_RUNS = 1000
# TFLite ops whose constant input at this position is a weight matrix.
_WEIGHT_INPUTS = {
    "FULLY_CONNECTED": 1,
    "CONV_2D": 1,
    "CONV_3D": 1,
    "DEPTHWISE_CONV_2D": 1,
    "TRANSPOSE_CONV": 1,
    "CONV_3D_TRANSPOSE": 1,
    "BATCH_MATMUL": 1,
    "EMBEDDING_LOOKUP": 1,
    "GATHER": 0,
}
_PASS_THROUGH_OPS = ("DENSIFY", "DEQUANTIZE")


def interpreter(path: Path, resolver=None):
    """A LiteRT interpreter for ``path`` (``resolver``: an ``OpResolverType``)."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {} if resolver is None else {"experimental_op_resolver_type": resolver}
    return Interpreter(model_path=str(path), **kwargs)


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


class _Signature:
    """The file's serving signature: input and output tensor details by name."""

    def __init__(self, interp, input_names: list[str], output_names: list[str]):
        signatures = interp.get_signature_list()
        if len(signatures) != 1:
            raise ExportError(f"Expected one signature in the file, found {list(signatures)}.")
        runner = interp.get_signature_runner(next(iter(signatures)))
        ins, outs = runner.get_input_details(), runner.get_output_details()
        if sorted(ins) != sorted(input_names) or sorted(outs) != sorted(output_names):
            raise ExportError(
                f"The file's signature has inputs {sorted(ins)} and outputs {sorted(outs)}; "
                f"expected {input_names} and {output_names}."
            )
        self.interp = interp
        self.inputs = [ins[n] for n in input_names]
        self.outputs = [outs[n] for n in output_names]

    def resize(self, arrays: list[np.ndarray]) -> None:
        changed = False
        for d, a in zip(self.inputs, arrays):
            shape = list(a.shape)
            if list(d["shape"]) != shape:
                self.interp.resize_tensor_input(d["index"], shape)
                changed = True
        if changed:
            self.interp.allocate_tensors()
            self._refresh()

    def _refresh(self) -> None:
        details = {d["index"]: d for d in self.interp.get_input_details()}
        self.inputs = [details.get(d["index"], d) for d in self.inputs]

    def set(self, arrays: list[np.ndarray]) -> None:
        for d, a in zip(self.inputs, arrays):
            self.interp.set_tensor(d["index"], quantize(a, d))

    def invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        self.resize(arrays)
        self.set(arrays)
        self.interp.invoke()
        return [dequantize(self.interp.get_tensor(d["index"]), d) for d in self.outputs]


def run(
    path: Path,
    x,
    input_names: list[str],
    output_names: list[str],
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Run the file on ``x``: default settings first, then without default delegates.

    ``batch_size``: the file's fixed batch size (``None``: any batch).
    Returns ``outputs`` (flat, in ``output_names`` order), ``interpreter``
    settings, ``latency_ms`` (one call of ``batch_size`` examples, else of one)
    and ``undelegated_ops`` (with XNNPack: the ops it left out, in file order);
    raises :class:`ExportError` if it runs in neither.
    """
    from ai_edge_litert.interpreter import OpResolverType

    failures = []
    for resolver in (OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
        try:
            interp = interpreter(path, resolver)
            interp.allocate_tensors()
            signature = _Signature(interp, input_names, output_names)
            if batch_size is None:
                parts = [(signature.invoke(flat(b)), len(flat(b)[0])) for b in batches(x)]
            else:
                parts = [(signature.invoke(flat(b)), n) for b, n in exact_batches(x, batch_size)]
            outputs = stack_outputs(parts)
            if not all(np.isfinite(o).all() for o in outputs):
                raise ExportError("The exported TFLite model computes NaN or inf outputs.")
        except Exception as e:
            failures.append(f"{resolver.name}: {first_line(e)}")
            continue
        settings = {
            "runtime": "ai_edge_litert.interpreter.Interpreter",
            "op_resolver": resolver.name,
            "xnnpack": resolver == OpResolverType.AUTO,
            "num_threads": None,
        }
        if failures:
            settings["default_failed"] = failures[0]
        return {
            "outputs": outputs,
            "interpreter": settings,
            "latency_ms": _latency(signature, x, batch_size or 1),
            "undelegated_ops": undelegated_ops(interp) if settings["xnnpack"] else None,
        }
    raise ExportError("; ".join(failures))


def quantize(x: np.ndarray, detail) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating) or dtype == x.dtype:
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(y.dtype, np.floating) or not scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def undelegated_ops(interp) -> list[str]:
    """Names of the ops a delegate did not take, in file order (all of them if none took any).

    A ``DELEGATE`` node stands for the ops between its input and output
    tensors; every other op runs on LiteRT's builtin kernels at each call.
    """
    ops = interp._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    kernels = {op["index"]: op for op in ops if op["op_name"] != "DELEGATE"}
    producer = {int(t): i for i, op in kernels.items() for t in op["outputs"]}
    taken: set[int] = set()
    for node in delegates:
        stop = {int(t) for t in node["inputs"]}
        todo = [int(t) for t in node["outputs"]]
        while todo:
            tensor = todo.pop()
            index = producer.get(tensor)
            if tensor in stop or index is None or index in taken:
                continue
            taken.add(index)
            todo.extend(int(t) for t in kernels[index]["inputs"] if t >= 0)
    return [op["op_name"] for i, op in kernels.items() if i not in taken]


def _latency(signature: _Signature, x, batch_size: int = 1) -> float:
    """Median ``invoke()`` time in ms of one call of ``batch_size`` examples.

    Up to 1000 calls or about 0.5 s, over the first 100 batches of ``x``.
    """
    samples = [flat(b) for b, _ in exact_batches(x, batch_size)][:100]
    signature.invoke(samples[0])
    times: list[float] = []
    while len(times) < _LATENCY_RUNS and (len(times) < 10 or sum(times) < 0.5):
        signature.set(samples[len(times) % len(samples)])
        t0 = time.perf_counter()
        signature.interp.invoke()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def stored_weights(path: Path) -> list[tuple[str, StoredWeight]]:
    """``[(tensor name, stats)]`` of each constant kernel of a conv / dense / gather op.

    Read from the file's tensors as stored (sparse tensors hold only their
    values), in op order; :func:`~keras_lottery.export.report.name_weights`
    maps them to Keras paths.
    """
    interp = interpreter(path)
    ops = interp._get_ops_details()
    producer = {int(t): op for op in ops for t in op["outputs"]}
    details = {d["index"]: d for d in interp.get_tensor_details()}
    found, seen = [], set()
    for op in ops:
        position = _WEIGHT_INPUTS.get(op["op_name"])
        if position is None or len(op["inputs"]) <= position:
            continue
        tensor = int(op["inputs"][position])
        while tensor in producer and producer[tensor]["op_name"] in _PASS_THROUGH_OPS:
            tensor = int(producer[tensor]["inputs"][0])
        if tensor < 0 or tensor in producer or tensor in seen:
            continue  # not a constant (e.g. an activation fed to BATCH_MATMUL)
        d = details[tensor]
        try:
            value = interp.get_tensor(tensor)
        except ValueError:
            continue
        seen.add(tensor)
        sparse = bool(d.get("sparsity_parameters"))
        zeros = d["quantization_parameters"]["zero_points"]
        zero = int(zeros[0]) if len(zeros) and np.all(zeros == zeros[0]) else 0
        stats = kernel_stats(value, "sparse" if sparse else "dense", shape=d["shape"], zero=zero)
        found.append((d["name"], stats))
    return found

"""Export a winning ticket: stripped ``.keras``, SavedModel, and sparse TFLite.

Every export is written atomically (a temporary file or folder beside the
target, renamed into place only after it was verified), loaded back and run:

* the prunable weights are read back *from the written artefact* (TFLite
  tensors, the reloaded ``.keras`` model, the SavedModel's variables), so the
  reported sparsity is what the file really stores;
* the artefact is run on ``verify_data`` and compared with the Keras model;
  TFLite files run in the LiteRT interpreter, first with its default settings
  (XNNPack delegate), then without default delegates, and the report says
  which one worked.  A file that runs in neither is not written.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_lottery.convert import strip
from keras_lottery.coverage import discover
from keras_lottery.data import Dataset

#: Valid ``format`` values of :func:`export`, with the file suffix of each.
FORMATS: dict[str, str] = {
    "keras": ".keras",
    "saved_model": ".saved_model",
    "tflite": ".tflite",
    "tflite-int8": ".int8.tflite",
    "tflite-float16": ".float16.tflite",
    "tflite-int8-full": ".int8-full.tflite",
}

#: Default output folder, relative to the current working directory.
DEFAULT_DIR = "saved_models"

_REPRESENTATIVE_SAMPLES = 256
_VERIFY_SAMPLES = 32
_LATENCY_RUNS = 1000
_BATCH = 256
# TFLite ops whose constant input at this position is a prunable kernel.
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


class ExportError(RuntimeError):
    """Conversion failed, or the exported model does not load or run."""


@dataclass
class StoredWeight:
    """One prunable kernel as stored in the exported artefact."""

    shape: tuple[int, ...]
    size: int
    nonzero: int
    dtype: str
    encoding: str = "dense"  # "dense", or "sparse" (TFLite CSR-like sparse tensor)

    @property
    def sparsity(self) -> float:
        """Fraction of zeros."""
        return 1.0 - self.nonzero / self.size if self.size else 0.0


@dataclass
class ExportReport:
    """What :func:`export` wrote, read back from the file, and how it ran.

    ``bytes`` is the size on disk (a SavedModel's total), ``gzipped_bytes`` the
    size after gzip -9 (a tar.gz for a SavedModel), ``dense_bytes`` the size of
    all parameters as dense float32 (``params * 4``).  ``layers`` maps each
    prunable kernel (by its Keras variable path, as in
    :func:`keras_lottery.sparsity`) to its stored shape and zeros.  The
    verification fields compare the exported model with the Keras model on
    ``samples`` inputs; ``latency_ms`` is the median LiteRT ``invoke()`` time
    for one example (TFLite formats only), run with ``interpreter`` settings.
    """

    path: Path
    format: str
    bytes: int
    gzipped_bytes: int
    dense_bytes: int
    params: int
    nonzero: int
    prunable: int
    layers: dict[str, StoredWeight]
    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    argmax_agreement: float | None = None
    keras_accuracy: float | None = None
    exported_accuracy: float | None = None
    latency_ms: float | None = None
    interpreter: dict[str, Any] | None = None
    optimizations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over all prunable kernels in the file."""
        return 1.0 - self.nonzero / self.prunable if self.prunable else 0.0

    @property
    def compression(self) -> float:
        """``dense_bytes / bytes``."""
        return self.dense_bytes / self.bytes if self.bytes else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["path"] = str(self.path)
        d["sparsity"] = self.sparsity
        d["layers"] = {
            k: {**asdict(w), "shape": list(w.shape), "sparsity": w.sparsity}
            for k, w in self.layers.items()
        }
        return d

    def summary(self) -> str:
        """A readable multi-line description."""
        lines = [
            f"{self.format} -> {self.path}",
            f"  size      {self.bytes:,} B (gzipped {self.gzipped_bytes:,} B); dense float32 "
            f"{self.dense_bytes:,} B ({self.compression:.1f}x)",
            f"  prunable  {self.nonzero:,} nonzero of {self.prunable:,} "
            f"({100 * self.sparsity:.2f}% zeros, read back from the file)",
        ]
        width = max((len(k) for k in self.layers), default=0)
        for name, w in self.layers.items():
            shape = "x".join(map(str, w.shape))
            lines.append(
                f"    {name:<{width}}  {shape:>12} {w.dtype:>8} {w.encoding:>6} "
                f"{100 * w.sparsity:6.2f}% zeros"
            )
        check = (
            f"  verified  on {self.samples} inputs: max |diff| {self.max_abs_diff:.3g}, "
            f"mean |diff| {self.mean_abs_diff:.3g}"
        )
        if self.argmax_agreement is not None:
            check += f", argmax agreement {100 * self.argmax_agreement:.2f}%"
        lines.append(check)
        if self.keras_accuracy is not None:
            lines.append(
                f"  accuracy  keras {100 * self.keras_accuracy:.2f}%, "
                f"exported {100 * self.exported_accuracy:.2f}%"
            )
        if self.interpreter is not None:
            resolver = self.interpreter["op_resolver"]
            how = "default, XNNPack delegate" if self.interpreter["xnnpack"] else "no XNNPack"
            lines.append(
                f"  LiteRT    op resolver {resolver} ({how}), "
                f"{self.latency_ms:.4f} ms per example (median invoke)"
            )
        if self.optimizations:
            lines.append(f"  converter optimizations: {', '.join(self.optimizations)}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def export(
    model: keras.Model,
    path: str | os.PathLike | None = None,
    format: str = "tflite",
    *,
    name: str | None = None,
    representative_data: Any = None,
    verify_data: Any = None,
    overwrite: bool = False,
    sparse: bool = True,
) -> ExportReport:
    """Strip ``model``'s masks, write it in ``format``, load it back and check it.

    Args:
        model: a built Sequential or functional Keras model with one input and
            one output: mask-aware (e.g. what :func:`find_ticket` returns) or plain.
        path: output file (the SavedModel folder for ``"saved_model"``); an
            existing folder gets ``<name><suffix>`` inside it.  Default:
            ``saved_models/<name>/<name><suffix>`` under the current directory,
            with the suffixes of :data:`FORMATS` (``.tflite``, ``.int8.tflite``...).
        format: ``"keras"`` (stripped model, stock layers only), ``"saved_model"``
            (TF SavedModel), ``"tflite"`` (float32, sparse tensors),
            ``"tflite-int8"`` (dynamic-range int8 weights), ``"tflite-float16"``,
            or ``"tflite-int8-full"`` (int8 weights, activations and I/O; needs
            ``representative_data``).
        name: file name stem; default ``model.name``.
        representative_data: calibration inputs for ``"tflite-int8-full"``:
            an array of inputs, ``(x, y)``, or a :class:`Dataset` (its training
            images); the first 256 examples are used.
        verify_data: inputs to compare outputs on: ``x``, ``(x, y)`` (accuracies
            are reported too) or a :class:`Dataset` (its test split).  Default:
            32 random inputs of the model's input shape.
        overwrite: replace an existing ``path``.
        sparse: TFLite formats: ask the converter for sparse weight storage
            (``Optimize.EXPERIMENTAL_SPARSITY``), kept if the file then runs in
            LiteRT, else dropped (see ``report.notes``).  ``False`` stores dense
            weights (XNNPack runs int8 dense files; gzip shrinks them well).

    Raises:
        ValueError: unknown format, unbuilt model, bad data shapes.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        PermissionError, NotADirectoryError: ``path`` cannot be written.
        ExportError: conversion failed or the result does not load or run.

    On any error nothing is left at ``path`` or beside it.
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    _check_model(model)
    input_shape = tuple(model.inputs[0].shape[1:])
    input_dtype = np.dtype(keras.backend.standardize_dtype(model.inputs[0].dtype))
    x_verify, y_verify = _verify_arrays(verify_data, input_shape, input_dtype)
    calibration = None
    if format == "tflite-int8-full":
        calibration = _representative_array(representative_data, input_shape)
    elif representative_data is not None:
        raise ValueError(
            f"representative_data is only used by format='tflite-int8-full', not {format!r}."
        )
    stem = _safe_name(name if name is not None else model.name)
    target = _target_path(path, stem, format)
    if format == "keras" and target.suffix != ".keras":
        raise ValueError(f"A .keras export must end in '.keras'; got {target}.")
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(
            f"{target} already exists. Pass overwrite=True to replace it, "
            "or choose another path or name."
        )
    _check_writable(target.parent)
    stripped = _inference_model(model)
    reference = _predict(model, x_verify)

    created = _make_parents(target.parent)
    tmp = None
    try:
        tmp = _temp_path(target, directory=format == "saved_model")
        if format == "keras":
            report = _export_keras(stripped, tmp, x_verify)
        elif format == "saved_model":
            report = _export_saved_model(stripped, tmp, x_verify)
        else:
            report = _export_tflite(stripped, tmp, format, x_verify, calibration, sparse)
        outputs = report.pop("outputs")
        stats = _name_weights(report.pop("layers"), stripped)
        nbytes, gz = _sizes(tmp)
        _commit(tmp, target, overwrite)
        tmp = None
    except BaseException:
        if tmp is not None:
            _remove(tmp)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise

    params = int(stripped.count_params())
    return ExportReport(
        path=target,
        format=format,
        bytes=nbytes,
        gzipped_bytes=gz,
        dense_bytes=4 * params,
        params=params,
        nonzero=sum(w.nonzero for w in stats.values()),
        prunable=sum(w.size for w in stats.values()),
        layers=stats,
        **_compare(reference, outputs, y_verify),
        **report,
    )


# -- checks -----------------------------------------------------------------


def _check_model(model) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(f"export needs a keras.Model, got {type(model).__name__}.")
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not model.built or not inputs:
        raise ValueError(
            f"Model '{model.name}' has no defined inputs (it is not built): give it an "
            "input shape with keras.Input(...) or model.build(input_shape) before exporting."
        )
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"export supports models with one input and one output; '{model.name}' has "
            f"{len(inputs)} inputs and {len(outputs)} outputs."
        )


def _split_xy(data) -> tuple[Any, Any]:
    if isinstance(data, Dataset):
        return data.x_test, data.y_test
    if isinstance(data, tuple) and len(data) == 2:
        return data
    return data, None


def _as_inputs(x, input_shape, what, dtype=np.float32) -> np.ndarray:
    try:
        x = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"The {what} is not an array of model inputs: {e}") from e
    got = x.shape[1:]
    fits = len(got) == len(input_shape) and all(
        e is None or e == g for e, g in zip(input_shape, got)
    )
    if x.ndim == 0 or not fits:
        raise ValueError(
            f"The {what} has examples of shape {got if x.ndim else '()'}, but the model "
            f"expects inputs of shape {input_shape} (batch dimension first, e.g. "
            f"(n, {', '.join(str(d) for d in input_shape)}))."
        )
    if len(x) == 0:
        raise ValueError(f"The {what} is empty.")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError(f"The {what} contains NaN or inf values.")
    return x


def _verify_arrays(data, input_shape, dtype) -> tuple[np.ndarray, np.ndarray | None]:
    if data is None:
        if None in input_shape:
            raise ValueError(
                f"The model's input shape {input_shape} has unknown dimensions: "
                "pass verify_data with example inputs."
            )
        rng = np.random.default_rng(0)
        shape = (_VERIFY_SAMPLES, *input_shape)
        if np.issubdtype(dtype, np.integer):
            return rng.integers(0, 2, shape).astype(dtype), None
        return rng.random(shape, dtype=np.float32), None
    x, y = _split_xy(data)
    x = _as_inputs(x, input_shape, "verify_data", dtype)
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"verify_data has {len(x)} inputs but {len(y)} labels.")
        if y.ndim > 1:
            y = y.argmax(axis=-1)
    return x, y


def _representative_array(data, input_shape) -> np.ndarray:
    if data is None:
        raise ValueError(
            "format='tflite-int8-full' quantizes activations too, which needs "
            "calibration inputs: pass representative_data=x_train[:256] (an array of "
            f"model inputs of shape (n, {', '.join(map(str, input_shape))}))."
        )
    if isinstance(data, Dataset):
        data = data.x_train
    x, _ = _split_xy(data)
    return _as_inputs(x, input_shape, "representative_data")[:_REPRESENTATIVE_SAMPLES]


# -- paths and atomic writes ----------------------------------------------


def _safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    if not stem:
        raise ValueError(f"Cannot make a file name from name={name!r}; pass name='...'.")
    return stem


def _target_path(path, stem: str, format: str) -> Path:
    if path is None:
        return Path(DEFAULT_DIR) / stem / f"{stem}{FORMATS[format]}"
    target = Path(path)
    if format != "saved_model" and target.is_dir():
        target = target / f"{stem}{FORMATS[format]}"
    return target


def _check_writable(folder: Path) -> None:
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise NotADirectoryError(
            f"Cannot write into {folder}: {existing} is a file, not a folder. Choose another path."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot write into {folder}: {existing} is not writable. Choose another path."
        )


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; return what was created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for d in missing:
        try:
            d.mkdir()
        except OSError as e:
            for made in reversed(missing[: missing.index(d)]):
                with contextlib.suppress(OSError):
                    made.rmdir()
            raise PermissionError(f"Cannot create folder {d}: {e}") from e
    return missing


def _temp_path(target: Path, directory: bool) -> Path:
    prefix, suffix = f".{target.name}.", f".tmp{target.suffix}"
    try:
        if directory:
            return Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=suffix))
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    except OSError as e:
        raise PermissionError(f"Cannot write into {target.parent}: {e}") from e
    os.close(fd)
    return Path(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``target`` in one rename."""
    if not os.path.lexists(target):
        if tmp.is_dir():
            os.rename(tmp, target)
            return
        try:
            os.link(tmp, target)  # fails if someone created target meanwhile
        except FileExistsError:
            raise FileExistsError(
                f"{target} appeared while exporting. Pass overwrite=True to replace it."
            ) from None
        except OSError:
            os.replace(tmp, target)  # no hard links on this file system
        else:
            tmp.unlink()
        return
    if not overwrite:
        raise FileExistsError(f"{target} already exists. Pass overwrite=True to replace it.")
    if not (tmp.is_dir() or target.is_dir()):
        os.replace(tmp, target)
        return
    aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(aside, target)
        raise
    _remove(aside)


def _sizes(path: Path) -> tuple[int, int]:
    if path.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                info = tar.gettarinfo(str(f), arcname=str(f.relative_to(path)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(f, "rb") as fh:
                    tar.addfile(info, fh)
        total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return total, len(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))


# -- running ----------------------------------------------------------------


def _inference_model(model) -> keras.Model:
    """``strip(model)`` without compile state, so no optimizer variables are saved."""
    stripped = strip(model)
    if not stripped.compiled:
        return stripped
    plain = type(stripped).from_config(stripped.get_config())
    plain.set_weights(stripped.get_weights())
    return plain


def _batches(x: np.ndarray) -> Iterable[np.ndarray]:
    for i in range(0, len(x), _BATCH):
        yield x[i : i + _BATCH]


def _predict(model, x) -> np.ndarray:
    return np.concatenate([np.asarray(model(b, training=False)) for b in _batches(x)])


def _compare(reference, outputs, labels) -> dict[str, Any]:
    diff = np.abs(reference.astype(np.float64) - outputs.astype(np.float64))
    out: dict[str, Any] = {
        "samples": len(reference),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }
    if reference.ndim >= 2 and reference.shape[-1] > 1:
        ref_cls, out_cls = reference.argmax(-1), outputs.argmax(-1)
        out["argmax_agreement"] = float((ref_cls == out_cls).mean())
        if labels is not None:
            labels = labels.reshape(ref_cls.shape)
            out["keras_accuracy"] = float((ref_cls == labels).mean())
            out["exported_accuracy"] = float((out_cls == labels).mean())
    return out


def _check_finite(outputs: np.ndarray, what: str) -> None:
    if not np.isfinite(outputs).all():
        raise ExportError(f"The exported {what} computes NaN or inf outputs.")


def _kernel_stats(value: np.ndarray, encoding="dense", shape=None, zero=0) -> StoredWeight:
    shape = tuple(int(d) for d in (value.shape if shape is None else shape))
    return StoredWeight(
        shape=shape,
        size=math.prod(shape),
        nonzero=int(np.count_nonzero(value != zero)),
        dtype=str(value.dtype),
        encoding=encoding,
    )


def _prunable_kernels(model) -> list[tuple[str, np.ndarray]]:
    """``(variable path, value)`` of each weight matrix of ``model``, in weight order."""
    return [(r.path, np.asarray(r.variable)) for r in discover(model) if r.is_matrix]


def _name_weights(stats, stripped) -> dict[str, StoredWeight]:
    """Name TFLite kernels ``[(tensor name, stats)]`` by the Keras kernel they store.

    Each goes, in op order, to the first unclaimed Keras kernel of the same size
    (the closest nonzero count breaks ties); unmatched ones keep the tensor name.
    """
    if isinstance(stats, dict):
        return stats
    free = _prunable_kernels(stripped)
    named = {}
    for tensor_name, w in stats:
        fits = [(i, p, v) for i, (p, v) in enumerate(free) if v.size == w.size]
        if not fits:
            named[tensor_name] = w
            continue
        i, path, _ = min(fits, key=lambda f: (abs(int(np.count_nonzero(f[2])) - w.nonzero), f[0]))
        free.pop(i)
        named[path] = w
    return named


def _export_keras(stripped, tmp: Path, x) -> dict[str, Any]:
    stripped.save(tmp)
    try:
        loaded = keras.models.load_model(tmp, compile=False)
    except Exception as e:
        raise ExportError(f"The exported .keras file does not load: {e}") from e
    outputs = _predict(loaded, x)
    _check_finite(outputs, ".keras model")
    layers = {p: _kernel_stats(v) for p, v in _prunable_kernels(loaded)}
    return {"outputs": outputs, "layers": layers}


def _export_saved_model(stripped, tmp: Path, x) -> dict[str, Any]:
    _save_tf(stripped, tmp)
    try:
        loaded = tf.saved_model.load(str(tmp))
        outputs = np.concatenate([np.asarray(loaded.serve(tf.constant(b))) for b in _batches(x)])
    except Exception as e:
        raise ExportError(f"The exported SavedModel does not load or run: {e}") from e
    _check_finite(outputs, "SavedModel")
    paths = {p for p, _ in _prunable_kernels(stripped)}
    layers = {}
    for var in loaded.variables:
        path = var.name.removesuffix(":0")
        if path in paths:
            layers[path] = _kernel_stats(var.numpy())
    return {"outputs": outputs, "layers": layers}


def _save_tf(stripped, folder: Path) -> None:
    try:
        stripped.export(str(folder), format="tf_saved_model", verbose=False)
    except Exception as e:
        raise ExportError(f"Keras could not export the model as a SavedModel: {e}") from e


# -- TFLite -------------------------------------------------------------------


def _converter_settings(format: str, calibration, sparse) -> list[tuple[list[str], Callable]]:
    """Converter configurations to try, best first: with sparse storage, then without."""
    base = ["DEFAULT"] if format != "tflite" else []

    def configure(names):
        def apply(c):
            c.optimizations = [getattr(tf.lite.Optimize, n) for n in names]
            if format == "tflite-float16":
                c.target_spec.supported_types = [tf.float16]
            if format == "tflite-int8-full":
                c.representative_dataset = lambda: ([x[None]] for x in calibration)
                c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                c.inference_input_type = tf.int8
                c.inference_output_type = tf.int8

        return apply

    tries = [base + ["EXPERIMENTAL_SPARSITY"], base] if sparse else [base]
    return [(names, configure(names)) for names in tries]


def _export_tflite(stripped, tmp: Path, format: str, x, calibration, sparse) -> dict[str, Any]:
    notes, errors = [], []
    with tempfile.TemporaryDirectory(prefix="keras_lottery_export_") as work:
        saved = Path(work) / "saved_model"
        _save_tf(stripped, saved)
        for names, configure in _converter_settings(format, calibration, sparse):
            label = "+".join(names) or "none"
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            configure(converter)
            try:
                content = converter.convert()
            except Exception as e:
                errors.append((label, "conversion failed", _why(e)))
                continue
            tmp.write_bytes(content)
            try:
                run = _run_litert(tmp, x)
            except ExportError as e:
                errors.append((label, "the converted file does not run", str(e)))
                continue
            if errors:
                notes.append(f"fell back to optimizations {label or 'none'}: {_failures(errors)}")
            if run["interpreter"].get("default_failed"):
                notes.append(
                    "the default LiteRT settings (XNNPack delegate) failed: "
                    f"{run['interpreter']['default_failed']}"
                )
            run["layers"] = _tflite_weights(tmp)
            return {**run, "optimizations": names, "notes": notes}
    raise ExportError(f"TFLite export ({format}) failed. {_failures(errors)}")


def _failures(errors: list[tuple[str, str, str]]) -> str:
    grouped: dict[tuple[str, str], list[str]] = {}
    for label, what, reason in errors:
        grouped.setdefault((what, reason), []).append(label)
    return "; ".join(
        f"{what} (optimizations {' / '.join(labels)}): {reason}"
        for (what, reason), labels in grouped.items()
    )


def _why(e: BaseException) -> str:
    """The useful part of a TFLite ConverterError (its structured errors, custom ops)."""
    reasons = []
    for err in getattr(e, "errors", None) or []:
        line = (getattr(err, "error_message", "") or "").strip().splitlines()
        if line and line[0] not in reasons:
            reasons.append(line[0])
    ops = re.findall(r"(?:Custom|Flex) ops: (.+)", str(e))
    if ops:
        reasons.append(f"ops TFLite has no builtin kernel for: {', '.join(sorted(set(ops)))}")
    return "; ".join(reasons) if reasons else _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _interpreter(path: Path, resolver=None):
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {} if resolver is None else {"experimental_op_resolver_type": resolver}
    return Interpreter(model_path=str(path), **kwargs)


def _run_litert(path: Path, x: np.ndarray) -> dict[str, Any]:
    """Run the file on ``x``: default settings first, then without default delegates."""
    from ai_edge_litert.interpreter import OpResolverType

    failures = []
    for resolver in (OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
        try:
            interpreter = _interpreter(path, resolver)
            interpreter.allocate_tensors()
            outputs = np.concatenate([_invoke(interpreter, b) for b in _batches(x)])
            _check_finite(outputs, "TFLite model")
        except Exception as e:
            failures.append(f"{resolver.name}: {_first_line(e)}")
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
            "latency_ms": _latency(interpreter, x),
        }
    raise ExportError("; ".join(failures))


def _quantize(x: np.ndarray, detail) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating) or dtype == x.dtype:
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(y.dtype, np.floating) or not scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def _invoke(interpreter, batch: np.ndarray) -> np.ndarray:
    inp = interpreter.get_input_details()[0]
    if tuple(inp["shape"]) != batch.shape:
        interpreter.resize_tensor_input(inp["index"], batch.shape)
        interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], _quantize(batch, inp))
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    return _dequantize(interpreter.get_tensor(out["index"]), out)


def _latency(interpreter, x: np.ndarray) -> float:
    """Median ``invoke()`` time in ms for one example (up to 1000 runs or about 0.5 s)."""
    _invoke(interpreter, x[:1])
    inp = interpreter.get_input_details()[0]
    samples = [_quantize(x[i][None], inp) for i in range(min(len(x), 100))]
    times: list[float] = []
    while len(times) < _LATENCY_RUNS and (len(times) < 10 or sum(times) < 0.5):
        interpreter.set_tensor(inp["index"], samples[len(times) % len(samples)])
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def _tflite_weights(path: Path) -> list[tuple[str, StoredWeight]]:
    """``[(tensor name, stats)]`` of each constant kernel of a conv / dense / gather op.

    Read from the file's tensors as stored (sparse tensors hold only their
    values), in op order; :func:`_name_weights` maps them to Keras paths.
    """
    interpreter = _interpreter(path)
    ops = interpreter._get_ops_details()
    producer = {int(t): op for op in ops for t in op["outputs"]}
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
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
            value = interpreter.get_tensor(tensor)
        except ValueError:
            continue
        seen.add(tensor)
        sparse = bool(d.get("sparsity_parameters"))
        zeros = d["quantization_parameters"]["zero_points"]
        zero = int(zeros[0]) if len(zeros) and np.all(zeros == zeros[0]) else 0
        stats = _kernel_stats(value, "sparse" if sparse else "dense", shape=d["shape"], zero=zero)
        found.append((d["name"], stats))
    return found

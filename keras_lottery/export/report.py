"""What an export wrote, read back from the file, and how it ran: :class:`ExportReport`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class ExportError(RuntimeError):
    """Conversion failed, or the exported model does not load or run."""


@dataclass
class StoredWeight:
    """One weight matrix as stored in the exported artefact."""

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
    """What :func:`keras_lottery.export` wrote, read back from the file, and how it ran.

    ``bytes`` is the size on disk (a SavedModel's total), ``gzipped_bytes`` the
    size after gzip -9 (a tar.gz for a SavedModel), ``dense_bytes`` the size of
    all parameters as dense float32 (``params * 4``).  ``layers`` maps each
    weight matrix (by its Keras variable path, as in
    :func:`keras_lottery.sparsity`) to its stored shape and zeros.  The
    verification fields compare the exported model with the Keras model on
    ``samples`` inputs, over every output; ``output_max_abs_diff`` has one entry
    per output.  ``batch_size`` is the fixed batch of the file's signature
    (``None``: any batch).  ``latency_ms`` is the median LiteRT ``invoke()``
    time of one call (TFLite formats only) of ``batch_size`` examples, else of
    one, run with ``interpreter`` settings; ``undelegated_ops`` lists the ops
    XNNPack left to LiteRT's own kernels (``SHAPE``, ``STRIDED_SLICE``,
    ``PACK`` for a dynamic batch: per-call shape work that ``batch_size=1``
    removes).
    ``conversion`` lists what was changed to convert the model (``"float32"``
    for a mixed-precision model, ``"unrolled_rnn"``), ``route`` says how the
    file was produced (``"tensorflow"`` in this process, or
    ``"tensorflow_subprocess"`` from another backend), ``storage`` which TFLite
    weight storage was kept and why.
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
    output_max_abs_diff: dict[str, float] = field(default_factory=dict)
    argmax_agreement: float | None = None
    keras_accuracy: float | None = None
    exported_accuracy: float | None = None
    batch_size: int | None = None
    latency_ms: float | None = None
    undelegated_ops: list[str] | None = None
    interpreter: dict[str, Any] | None = None
    optimizations: list[str] = field(default_factory=list)
    conversion: list[str] = field(default_factory=list)
    route: str = "tensorflow"
    storage: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over all weight matrices in the file."""
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
        if len(self.output_max_abs_diff) > 1:
            per = ", ".join(f"{k} {v:.3g}" for k, v in self.output_max_abs_diff.items())
            check += f" (max per output: {per})"
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
            per = f"call of {self.batch_size}" if self.batch_size else "example"
            lines.append(
                f"  LiteRT    op resolver {resolver} ({how}), "
                f"{self.latency_ms:.4f} ms per {per} (median invoke)"
            )
            if self.undelegated_ops:
                lines.append(
                    f"  outside XNNPack: {', '.join(self.undelegated_ops)} (LiteRT kernels)"
                )
        elif self.batch_size:
            lines.append(f"  signature batch size {self.batch_size}")
        if self.optimizations:
            lines.append(f"  converter optimizations: {', '.join(self.optimizations)}")
        if self.storage:
            lines.append(f"  storage   {self.storage}")
        if self.conversion:
            lines.append(f"  converted {', '.join(self.conversion)}")
        if self.route != "tensorflow":
            lines.append(f"  route     {self.route}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def compare(reference: list, outputs: list, names: list[str], labels) -> dict[str, Any]:
    """Verification fields of the report: ``reference`` vs ``outputs``, flat lists of arrays."""
    if len(reference) != len(outputs):
        raise ExportError(
            f"The exported model has {len(outputs)} outputs, the Keras model {len(reference)}."
        )
    per, total, count = {}, 0.0, 0
    for name, ref, out in zip(names, reference, outputs):
        ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
        if ref.shape != out.shape:
            raise ExportError(
                f"Output {name!r} of the exported model has shape {out.shape}, "
                f"the Keras model's {ref.shape}."
            )
        diff = np.abs(ref - out)
        per[name] = float(diff.max()) if diff.size else 0.0
        total += float(diff.sum())
        count += diff.size
    result: dict[str, Any] = {
        "samples": len(reference[0]),
        "max_abs_diff": max(per.values()),
        "mean_abs_diff": total / count if count else 0.0,
        "output_max_abs_diff": per,
    }
    if len(reference) == 1:
        ref, out = np.asarray(reference[0]), np.asarray(outputs[0])
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            ref_cls, out_cls = ref.argmax(-1), out.argmax(-1)
            result["argmax_agreement"] = float((ref_cls == out_cls).mean())
            if labels is not None:
                labels = np.asarray(labels)
                if labels.ndim > ref_cls.ndim:
                    labels = labels.argmax(-1)
                labels = labels.reshape(ref_cls.shape)
                result["keras_accuracy"] = float((ref_cls == labels).mean())
                result["exported_accuracy"] = float((out_cls == labels).mean())
    return result


def kernel_stats(value: np.ndarray, encoding="dense", shape=None, zero=0) -> StoredWeight:
    """Stats of one stored weight (``zero``: the quantized zero point)."""
    shape = tuple(int(d) for d in (value.shape if shape is None else shape))
    return StoredWeight(
        shape=shape,
        size=math.prod(shape),
        nonzero=int(np.count_nonzero(value != zero)),
        dtype=str(value.dtype),
        encoding=encoding,
    )


def weight_matrices(model) -> list[tuple[str, np.ndarray]]:
    """``(variable path, value)`` of each weight matrix of ``model``, in weight order."""
    from keras_lottery.masks.coverage import discover

    return [(r.path, np.asarray(r.variable)) for r in discover(model) if r.is_matrix]


def name_weights(stats, model) -> dict[str, StoredWeight]:
    """Name stored kernels ``[(tensor name, stats)]`` by the Keras weight they store.

    Each goes, in op order, to the first unclaimed Keras weight matrix of the
    same size (the closest nonzero count breaks ties); unmatched ones keep the
    tensor name.  A dict (already named) is returned as it is.
    """
    if isinstance(stats, dict):
        return stats
    free = weight_matrices(model)
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

"""Export a winning ticket: stripped ``.keras``, SavedModel, and sparse TFLite.

Every export is written atomically (a temporary file or folder beside the
target, renamed into place only after it was verified), loaded back and run:

* the weight matrices are read back *from the written artefact* (TFLite
  tensors, the reloaded ``.keras`` model, the SavedModel's variables), so the
  reported sparsity is what the file really stores;
* the artefact is run on ``verify_data`` and compared with the Keras model on
  every output; TFLite files run in the LiteRT interpreter, first with its
  default settings (XNNPack delegate), then without default delegates, and the
  report says which one worked.  A file that runs in neither is not written.

The package has one module per format (:mod:`~keras_lottery.export.keras_file`,
:mod:`~keras_lottery.export.saved_model`, :mod:`~keras_lottery.export.tflite`),
the report, the LiteRT runner, the model preparation (float32 copy, unrolled
RNNs), the TensorFlow subprocess for other backends and the atomic writes.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import keras
import numpy as np

from keras_lottery.export import atomic
from keras_lottery.export.atomic import DEFAULT_DIR
from keras_lottery.export.formats import registry
from keras_lottery.export.inputs import (
    Spec,
    data_template,
    flat,
    model_template,
    output_names,
    predict,
    representative_inputs,
    verify_inputs,
)
from keras_lottery.export.prepare import RNN_OPTIONS, prepare, recurrent_layers
from keras_lottery.export.report import (
    ExportError,
    ExportReport,
    StoredWeight,
    compare,
    name_weights,
)
from keras_lottery.export.writer import Options
from keras_lottery.extras import check_installed

#: Valid ``format`` values of :func:`export`, with the file suffix of each.
FORMATS: dict[str, str] = {name: f.suffix for name, f in registry().items()}

__all__ = ["DEFAULT_DIR", "FORMATS", "ExportError", "ExportReport", "StoredWeight", "export"]


def export(
    model: keras.Model,
    path: str | os.PathLike | None = None,
    format: str = "tflite",
    *,
    name: str | None = None,
    representative_data: Any = None,
    verify_data: Any = None,
    overwrite: bool = False,
    sparse: bool | str = "auto",
    rnn: str | None = None,
    compact: bool = False,
    batch_size: int | None = None,
) -> ExportReport:
    """Strip ``model``'s masks, write it in ``format``, load it back and check it.

    Args:
        model: a built Keras 3 model, mask-aware (what :func:`find_ticket` or
            :func:`make_prunable` returns) or plain: Sequential, functional
            (one or several inputs and outputs, as arrays, lists or dicts;
            nested models, shared layers), subclassed, keras-hub.
        path: output file (the SavedModel folder for ``"saved_model"``); an
            existing folder gets ``<name><suffix>`` inside it.  Default:
            ``saved_models/<name>/<name><suffix>`` under the current directory,
            with the suffixes of :data:`FORMATS` (``.tflite``, ``.int8.tflite``...).
        format: ``"keras"`` (the stripped model), ``"keras-int8"`` (the
            stripped model through Keras's ``model.quantize("int8")``: int8
            Dense/EinsumDense/Embedding kernels, any backend), ``"saved_model"`` (TF
            SavedModel), ``"tflite"`` (float32, sparse tensors), ``"tflite-int8"``
            (dynamic-range int8 weights), ``"tflite-float16"``, or
            ``"tflite-int8-full"`` (int8 weights, activations and I/O; needs
            ``representative_data``).  TFLite files are float32 at heart: a
            mixed-precision model is converted from a float32 copy.
        name: file name stem; default the (stripped) model's name.
        representative_data: calibration inputs for ``"tflite-int8-full"``:
            inputs (an array, a list or dict of arrays), ``(x, y)``, or a
            :class:`Dataset` (its training images); the first 256 examples are used.
        verify_data: inputs to compare outputs on: ``x``, ``(x, y)`` (accuracies
            are reported for a single output) or a :class:`Dataset` (its test
            split).  Default: 32 random inputs of the model's input shape.
            Needed when the model does not say its input shape (a subclassed
            model never built) or has unknown dimensions (sequence length).
        overwrite: replace an existing ``path``.
        sparse: TFLite weight storage: ``True`` sparse tensors
            (``Optimize.EXPERIMENTAL_SPARSITY``) if the file then runs in LiteRT,
            else dense (see ``report.notes``); ``False`` dense; ``"auto"``
            (default) as ``True`` for float formats, and for the int8 formats
            whichever of the two is smaller gzipped (``report.storage`` says).
        rnn: how TFLite formats convert recurrent layers (LSTM, GRU, SimpleRNN,
            Bidirectional, ConvLSTM), whose loops have no TFLite builtin:
            ``"unroll"`` rebuilds them with ``unroll=True`` (needs a fixed
            sequence length; the file runs on builtin ops in LiteRT).  A model
            with recurrent layers and ``rnn=None`` is refused with this advice.
        compact: export :func:`keras_lottery.compact.compaction` of the model instead: units
            without surviving inputs folded into the next bias, units without
            outputs removed, so the file holds a smaller *dense* network that
            computes the same function and runs faster.  Sequential and
            functional models, residual adds, concatenations and attention heads
            included (coupled units go together); a layer that compaction cannot
            read is refused with the reason, or taught through
            :func:`keras_lottery.compact.register_rule`.
        batch_size: fix the batch dimension of the SavedModel / TFLite
            signature (``None``, default: any batch).  For latency exports
            ``batch_size=1``: with an unknown batch, reshapes such as
            ``Flatten``'s compute their shape in every call (``SHAPE``,
            ``STRIDED_SLICE``, ``PACK`` outside the XNNPack delegate,
            ``report.undelegated_ops`` lists them); a fixed batch makes them
            constants.  The file then takes exactly ``batch_size`` examples per call.

    On the JAX or torch backend, ``"saved_model"`` and the TFLite formats are
    written by TensorFlow in a subprocess (``report.route`` says so);
    ``"keras"`` is written in-process on any backend.

    Raises:
        ValueError: unknown format, unbuilt model, input shape unknown without
            ``verify_data``, data not matching the model's inputs, recurrent
            layers without ``rnn=``.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        PermissionError, NotADirectoryError: ``path`` cannot be written.
        ExportError: conversion failed or the result does not load or run.

    On any error nothing is left at ``path`` or beside it.
    """
    formats = registry()
    if format not in formats:
        raise ValueError(f"Unknown export format {format!r}; choose one of {', '.join(formats)}.")
    fmt = formats[format]
    if fmt.needs_tensorflow:
        check_installed("tensorflow", f"Exporting format={format!r}")
    if fmt.tflite:
        check_installed("ai_edge_litert", f"Verifying format={format!r} in LiteRT")
    if rnn is not None and rnn not in RNN_OPTIONS:
        raise ValueError(f"Unknown rnn={rnn!r}; choose one of {RNN_OPTIONS} or None.")
    if sparse not in (True, False, "auto"):
        raise ValueError(f"sparse must be True, False or 'auto'; got {sparse!r}.")
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}.")
        if not fmt.signature:
            raise ValueError(
                f"batch_size fixes the batch of a SavedModel or TFLite signature; "
                f"format={format!r} keeps the model's own input shapes. Leave batch_size out."
            )
    if not isinstance(model, keras.Model):
        raise TypeError(f"export needs a keras.Model, got {type(model).__name__}.")
    from keras_lottery.masks.convert import strip

    compaction = None
    if compact:
        from keras_lottery.compact.compaction import compact as compact_model

        model, compaction = compact_model(model)
    stripped = strip(model)
    if not stripped.built:
        raise ValueError(
            f"Model '{stripped.name}' is not built: give it an input shape with "
            "keras.Input(...) or model.build(input_shape) before exporting."
        )
    template, _ = model_template(stripped)
    x, y = verify_inputs(verify_data, template, stripped.name)
    template = _fill_dtypes(template if template is not None else data_template(x), x)
    calibration = None
    if format == "tflite-int8-full":
        calibration = representative_inputs(representative_data, template, stripped.name)
    elif representative_data is not None:
        raise ValueError(
            f"representative_data is only used by format='tflite-int8-full', not {format!r}."
        )
    if fmt.tflite and rnn is None:
        recurrent = recurrent_layers(stripped)
        if recurrent:
            names = ", ".join(f"'{layer.name}'" for layer in recurrent)
            raise ValueError(
                f"Model '{stripped.name}' has recurrent layers ({names}) whose loops TFLite "
                f"has no builtin ops for: pass rnn='unroll' to export(...) (keras-lottery "
                "export --rnn unroll) to convert them unrolled, which needs a fixed "
                "sequence length; or export format='keras' / 'saved_model'."
            )
    stem = atomic.safe_name(name if name is not None else stripped.name)
    target = atomic.target_path(path, stem, fmt.suffix, fmt.directory)
    if format in ("keras", "keras-int8") and target.suffix != ".keras":
        raise ValueError(f"A .keras export must end in '.keras'; got {target}.")
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(
            f"{target} already exists. Pass overwrite=True to replace it, "
            "or choose another path or name."
        )
    atomic.check_writable(target.parent)

    subprocess_route = fmt.needs_tensorflow and keras.backend.backend() != "tensorflow"
    prepared = prepare(
        model,
        serializable=not fmt.needs_tensorflow or subprocess_route,
        float32=fmt.tflite,
        unroll=fmt.tflite and rnn == "unroll",
    )
    reference = predict(prepared.model, x)
    notes = _conversion_notes(prepared, x, reference)
    options = Options(
        template=template,
        input_names=[s.name for s in flat(template)],
        output_names=output_names(stripped, len(reference)),
        calibration=calibration,
        sparse=sparse,
        batch_size=batch_size,
    )

    created = atomic.make_parents(target.parent)
    tmp = None
    try:
        tmp = atomic.temp_path(target, directory=fmt.directory)
        if subprocess_route:
            from keras_lottery.export.tf_worker import run_in_tensorflow

            result = run_in_tensorflow(format, prepared.model, tmp, x, options)
        else:
            result = fmt.write(prepared.model, tmp, x, options)
        outputs = result.pop("outputs")
        stats = name_weights(result.pop("layers"), stripped)
        checks = compare(reference, outputs, options.output_names, y)
        nbytes, gz = atomic.sizes(tmp)
        atomic.commit(tmp, target, overwrite)
        tmp = None
    except BaseException:
        if tmp is not None:
            atomic.remove(tmp)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise

    params = int(stripped.count_params())
    result["notes"] = notes + result.get("notes", [])
    if compaction is not None:
        result["notes"].insert(
            0,
            f"compacted before export: {compaction.params_before:,} -> "
            f"{compaction.params_after:,} parameters, units "
            + ", ".join(f"{k} {a}->{b}" for k, (a, b) in compaction.units.items()),
        )
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
        conversion=prepared.conversion,
        batch_size=batch_size,
        **checks,
        **result,
    )


def _fill_dtypes(template, x):
    """The template with each unknown dtype taken from the verification inputs."""
    specs, arrays = flat(template), flat(x)
    filled = [
        s if s.dtype is not None else Spec(s.shape, np.asarray(a).dtype, s.name)
        for s, a in zip(specs, arrays)
    ]
    return keras.tree.pack_sequence_as(template, filled)


def _conversion_notes(prepared, x, reference) -> list[str]:
    if not prepared.conversion:
        return []
    original = predict(prepared.stripped, x)
    diff = max(float(np.abs(r - o.astype(r.dtype)).max()) for r, o in zip(reference, original))
    what = {
        "float32": "a float32 copy of the mixed-precision model (same weights)",
        "unrolled_rnn": "a copy with every RNN layer unrolled (unroll=True, same weights)",
    }
    done = " and ".join(what[c] for c in prepared.conversion)
    return [
        f"converted {done}; the file is verified against that copy, which differs from the "
        f"ticket by max |diff| {diff:.3g} on the verification inputs"
    ]

"""TFLite formats: float32 with sparse weights, int8, float16, full int8.

The model is converted from a SavedModel whose serving signature takes the
model's inputs flat, by name (dict keys, else ``input_<i>``) and returns its
outputs flat, by name (dict keys, else ``output_<i>``), so that multi-input,
multi-output, nested and subclassed models convert alike.  Each converted file
is run in LiteRT before it is kept.

Weight storage (``sparse=``): ``True`` asks the converter for sparse tensors
(``Optimize.EXPERIMENTAL_SPARSITY``) and keeps them if the file runs, else
converts again without; ``False`` stores dense weights; ``"auto"`` (default)
does as ``True`` for float formats and, for the int8 formats, converts both
ways and keeps the file that is smaller gzipped.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from keras_lottery.export import litert
from keras_lottery.export.atomic import gzipped_size
from keras_lottery.export.inputs import exact_batches, flat
from keras_lottery.export.report import ExportError
from keras_lottery.export.writer import Format, Options

_SPARSE = "EXPERIMENTAL_SPARSITY"


def serving_archive(model: keras.Model, folder: Path, options: Options) -> None:
    """Write ``model`` as a SavedModel with one flat, named serving signature."""
    from keras_lottery.export.saved_model import tensor_specs

    specs = flat(tensor_specs(options.template, options.batch_size))
    template, names = options.template, options.output_names

    def serve(*arrays):
        outputs = flat(model(keras.tree.pack_sequence_as(template, list(arrays)), training=False))
        return dict(zip(names, outputs))

    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serve, input_signature=specs)
        archive.write_out(str(folder), verbose=False)
    except Exception as e:
        raise ExportError(f"Keras could not export the model as a SavedModel: {e}") from e


def _configure(format: str, names: list[str], options: Options) -> Callable:
    import tensorflow as tf

    def apply(converter):
        converter.optimizations = [getattr(tf.lite.Optimize, n) for n in names]
        if format == "tflite-float16":
            converter.target_spec.supported_types = [tf.float16]
        if format == "tflite-int8-full":
            size = options.batch_size or 1

            def examples():
                for batch, _ in exact_batches(options.calibration, size):
                    yield dict(zip(options.input_names, flat(batch)))

            converter.representative_dataset = examples
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8

    return apply


def _tries(format: str, sparse) -> list[list[str]]:
    """Converter optimization lists to try, best first."""
    base = [] if format == "tflite" else ["DEFAULT"]
    if sparse is False:
        return [base]
    return [base + [_SPARSE], base]


def _choose_by_size(format: str, sparse) -> bool:
    return sparse == "auto" and format in ("tflite-int8", "tflite-int8-full")


def writer(format: str) -> Callable:
    def write(model: keras.Model, tmp: Path, x, options: Options) -> dict[str, Any]:
        notes, errors, kept = [], [], []
        with tempfile.TemporaryDirectory(prefix="keras_lottery_export_") as work:
            saved = Path(work) / "saved_model"
            serving_archive(model, saved, options)
            for names in _tries(format, options.sparse):
                label = "+".join(names) or "none"
                import tensorflow as tf

                converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
                _configure(format, names, options)(converter)
                try:
                    content = converter.convert()
                except Exception as e:
                    errors.append((label, "conversion failed", _why(e)))
                    continue
                candidate = Path(work) / f"{len(kept)}.tflite"
                candidate.write_bytes(content)
                try:
                    run = litert.run(
                        candidate, x, options.input_names, options.output_names, options.batch_size
                    )
                except ExportError as e:
                    errors.append((label, "the converted file does not run", str(e)))
                    continue
                kept.append((names, candidate, run, gzipped_size(content)))
                if not _choose_by_size(format, options.sparse):
                    break
            if not kept:
                raise ExportError(f"TFLite export ({format}) failed. {_failures(errors)}")
            names, candidate, run, gz = min(kept, key=lambda k: k[3])
            storage = "sparse" if _SPARSE in names else "dense"
            if len(kept) > 1:
                sizes = {("sparse" if _SPARSE in k[0] else "dense"): k[3] for k in kept}
                storage += (
                    f" (smaller gzipped: sparse {sizes['sparse']:,} B, dense {sizes['dense']:,} B)"
                )
            elif errors:
                notes.append(
                    f"fell back to optimizations {'+'.join(names) or 'none'}: {_failures(errors)}"
                )
            if run["interpreter"].get("default_failed"):
                notes.append(
                    "the default LiteRT settings (XNNPack delegate) failed: "
                    f"{run['interpreter']['default_failed']}"
                )
            tmp.write_bytes(candidate.read_bytes())
            run["layers"] = litert.stored_weights(tmp)
        return {**run, "optimizations": names, "storage": storage, "notes": notes}

    return write


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
    ops = re.findall(r"(?:Custom|Flex|TF Select) ops: (.+)", str(e))
    if ops:
        reasons.append(f"ops TFLite has no builtin kernel for: {', '.join(sorted(set(ops)))}")
    return "; ".join(reasons) if reasons else litert.first_line(e)


FORMATS = [
    Format(name, suffix, writer(name), tflite=True, signature=True)
    for name, suffix in (
        ("tflite", ".tflite"),
        ("tflite-int8", ".int8.tflite"),
        ("tflite-float16", ".float16.tflite"),
        ("tflite-int8-full", ".int8-full.tflite"),
    )
]

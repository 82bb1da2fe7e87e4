"""TensorFlow formats from another Keras backend: convert in a TensorFlow subprocess.

On the JAX (or torch) backend, :func:`keras_lottery.export` saves the prepared
model to a temporary ``.keras`` file and runs the format's writer in a fresh
Python process with ``KERAS_BACKEND=tensorflow``, which loads that file and
writes, loads back and runs the export there.  The outputs come back as arrays
and are compared with the model on the calling backend.

Run as ``python -m keras_lottery.export.tf_worker <folder>`` (internal).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from keras_lottery.export.inputs import Spec, flat
from keras_lottery.export.report import ExportError, StoredWeight

_TIMEOUT_S = 1800


def _template_to_json(template) -> dict:
    def one(s: Spec):
        return {"shape": list(s.shape), "dtype": str(s.dtype), "name": s.name}

    if isinstance(template, dict):
        return {"kind": "dict", "specs": {k: one(s) for k, s in template.items()}}
    if isinstance(template, list):
        return {"kind": "list", "specs": [one(s) for s in template]}
    return {"kind": "one", "specs": one(template)}


def _template_from_json(d: dict):
    def one(s):
        return Spec(tuple(s["shape"]), np.dtype(s["dtype"]), s["name"])

    if d["kind"] == "dict":
        return {k: one(s) for k, s in d["specs"].items()}
    if d["kind"] == "list":
        return [one(s) for s in d["specs"]]
    return one(d["specs"])


def _modules(model) -> list[str]:
    """Modules that define the model's classes (other than Keras's own)."""
    from keras_lottery.masks.coverage import layer_tree

    names = {type(layer).__module__ for layer in layer_tree(model)}
    names = {n for n in names if not (n == "keras" or n.startswith("keras."))}
    if "__main__" in names:
        raise ExportError(
            f"Model '{model.name}' uses classes defined in the __main__ script, which the "
            "TensorFlow subprocess cannot import: move them to a module, or export on the "
            "TensorFlow backend (KERAS_BACKEND=tensorflow)."
        )
    return sorted(names)


def run_in_tensorflow(format: str, model, tmp: Path, x, options) -> dict[str, Any]:
    """Run ``format``'s writer on ``model`` in a TensorFlow-backend subprocess."""
    with tempfile.TemporaryDirectory(prefix="keras_lottery_tf_") as work:
        work = Path(work)
        model.save(work / "model.keras")
        np.savez(work / "x.npz", *flat(x))
        if options.calibration is not None:
            np.savez(work / "calibration.npz", *flat(options.calibration))
        request = {
            "format": format,
            "tmp": str(tmp),
            "template": _template_to_json(options.template),
            "input_names": options.input_names,
            "output_names": options.output_names,
            "sparse": options.sparse,
            "batch_size": options.batch_size,
            "modules": _modules(model),
        }
        (work / "request.json").write_text(json.dumps(request))
        env = {
            **os.environ,
            "KERAS_BACKEND": "tensorflow",
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p)),
        }
        done = subprocess.run(
            [sys.executable, "-m", "keras_lottery.export.tf_worker", str(work)],
            env=env,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
        )
        result_file = work / "result.json"
        if done.returncode != 0 or not result_file.exists():
            error = work / "error.json"
            if error.exists():
                info = json.loads(error.read_text())
                raise ExportError(f"{info['message']} (in the TensorFlow subprocess)")
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise ExportError(f"The TensorFlow subprocess failed (exit {done.returncode}): {tail}")
        result = json.loads(result_file.read_text())
        with np.load(work / "outputs.npz") as f:
            result["outputs"] = [f[f"arr_{i}"] for i in range(len(f.files))]
    layers = result["layers"]
    if isinstance(layers, list):
        result["layers"] = [(n, _stored(w)) for n, w in layers]
    else:
        result["layers"] = {n: _stored(w) for n, w in layers.items()}
    result["route"] = (
        "tensorflow_subprocess (model saved as .keras on the "
        f"{_backend()} backend, converted with KERAS_BACKEND=tensorflow)"
    )
    return result


def _backend() -> str:
    import keras

    return keras.backend.backend()


def _stored(w: dict) -> StoredWeight:
    return StoredWeight(**{**w, "shape": tuple(w["shape"])})


def _main(work: Path) -> None:
    import importlib
    from dataclasses import asdict

    request = json.loads((work / "request.json").read_text())
    try:
        for module in request["modules"]:
            importlib.import_module(module)
        import keras

        from keras_lottery.export.formats import registry
        from keras_lottery.export.writer import Options

        template = _template_from_json(request["template"])

        def load(name):
            with np.load(work / name) as f:
                arrays = [f[f"arr_{i}"] for i in range(len(f.files))]
            return keras.tree.pack_sequence_as(template, arrays)

        model = keras.saving.load_model(work / "model.keras", compile=False)
        options = Options(
            template=template,
            input_names=request["input_names"],
            output_names=request["output_names"],
            calibration=load("calibration.npz") if (work / "calibration.npz").exists() else None,
            sparse=request["sparse"],
            batch_size=request["batch_size"],
        )
        fmt = registry()[request["format"]]
        result = fmt.write(model, Path(request["tmp"]), load("x.npz"), options)
    except Exception as e:
        (work / "error.json").write_text(
            json.dumps({"type": type(e).__name__, "message": f"{type(e).__name__}: {e}"})
        )
        raise
    np.savez(work / "outputs.npz", *result.pop("outputs"))
    layers = result["layers"]
    if isinstance(layers, list):
        result["layers"] = [(n, asdict(w)) for n, w in layers]
    else:
        result["layers"] = {n: asdict(w) for n, w in layers.items()}
    (work / "result.json").write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    _main(Path(sys.argv[1]))

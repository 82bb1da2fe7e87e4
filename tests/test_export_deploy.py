"""Exports for deployment: fixed-batch signatures without per-call shape work, and int8
files (Keras's own quantization and TFLite's) that keep every pruned weight exactly 0."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

import keras_lottery as kl
from keras_lottery.masks.coverage import layer_tree

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None
    or importlib.util.find_spec("ai_edge_litert") is None,
    reason="TFLite export needs tensorflow and ai-edge-litert",
)

SHAPE_OPS = {"SHAPE", "STRIDED_SLICE", "PACK"}
#: int8 tolerance: max |diff| of the logits as a fraction of their largest magnitude.  Weights
#: quantized per output channel (activations float or quantized per call): 2%; activations
#: quantized with ranges calibrated once on representative data: 10%.
INT8_TOLERANCE = {"tflite-int8": 0.02, "keras-int8": 0.02, "tflite-int8-full": 0.1}


def _net(seed: int = 0) -> keras.Model:
    """A small conv chain with a Flatten (dynamic batch -> shape ops) and logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x), name="net")


def _inputs(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 12, 12, 1), dtype=np.float32)


def _ticket(sparsity: float = 0.75) -> keras.Model:
    """Unstructured: a random ``sparsity`` of every kernel masked."""
    model = kl.make_prunable(_net())
    rng = np.random.default_rng(0)
    model.set_masks(
        {pw.name: rng.random(pw.mask.shape) >= sparsity for pw in kl.prunable_weights(model)}
    )
    return model


def _compacted() -> keras.Model:
    """Structured: half the conv filters and hidden units masked, then compacted."""
    model = kl.make_prunable(_net())
    masks = {}
    for pw in kl.prunable_weights(model):
        mask = np.ones(pw.mask.shape, bool)
        if not pw.name.startswith("logits"):
            mask[..., ::2] = False
        masks[pw.name] = mask
    model.set_masks(masks)
    small, report = kl.compact(model)
    assert list(report.units.values())[:2] == [(8, 4), (16, 8)]
    return small


def _ops(path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return [op["op_name"] for op in interp._get_ops_details()]


def _kernels_in_file(path) -> list[np.ndarray]:
    """The kernel of every dense / conv op of a TFLite file, in Keras's layout."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    ops = interp._get_ops_details()
    producer = {int(t): op for op in ops for t in op["outputs"]}
    details = {d["index"]: d for d in interp.get_tensor_details()}
    found = []
    for op in ops:
        if op["op_name"] not in ("FULLY_CONNECTED", "CONV_2D"):
            continue
        tensor = int(op["inputs"][1])
        while tensor in producer and producer[tensor]["op_name"] == "DEQUANTIZE":
            tensor = int(producer[tensor]["inputs"][0])
        value = interp.get_tensor(tensor)
        zeros = details[tensor]["quantization_parameters"]["zero_points"]
        assert not np.any(zeros), "weights are quantized symmetrically (zero point 0)"
        dense = op["op_name"] == "FULLY_CONNECTED"
        found.append(value.T if dense else value.transpose(1, 2, 3, 0))
    return found


def _zeros_kept(model: keras.Model, stored: list[np.ndarray]) -> None:
    """Every kernel entry that is 0 in ``model`` is exactly 0 in its stored twin."""
    kernels = [np.asarray(pw.kernel) * np.asarray(pw.mask) for pw in kl.prunable_weights(model)]
    assert len(stored) == len(kernels)
    for kernel in kernels:
        (twin,) = [s for s in stored if s.shape == kernel.shape]
        assert np.count_nonzero(kernel == 0) > 0
        assert np.all(twin[kernel == 0] == 0), "a pruned weight is not 0 in the file"


# -- fixed batch ------------------------------------------------------------------


def test_a_dynamic_batch_runs_shape_ops_outside_the_delegate(tmp_path):
    report = kl.export(_net(), tmp_path / "dynamic.tflite", verify_data=_inputs(4))
    # Flatten computes its target shape from the batch in every call, outside XNNPack.
    assert SHAPE_OPS <= set(_ops(report.path)) and SHAPE_OPS <= set(report.undelegated_ops)
    assert report.batch_size is None and "outside XNNPack: SHAPE" in report.summary()


@pytest.mark.backends
def test_batch_size_one_removes_the_shape_ops_and_matches_keras(tmp_path):
    model, x = _net(), _inputs(13)
    fixed = kl.export(model, tmp_path / "fixed.tflite", verify_data=x, batch_size=1)
    assert not SHAPE_OPS & set(_ops(fixed.path)) and fixed.undelegated_ops == []
    assert fixed.batch_size == 1 and fixed.samples == 13 and fixed.max_abs_diff < 1e-5
    assert "per call of 1" in fixed.summary()

    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(fixed.path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert list(inp["shape_signature"]) == [1, 12, 12, 1]
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i : i + 1])
        interp.invoke()
        np.testing.assert_allclose(interp.get_tensor(out["index"])[0], expected[i], atol=1e-5)


def test_a_batch_that_does_not_divide_the_data_is_padded_and_cut(tmp_path):
    model, x = _compacted(), _inputs(10)
    for format in ("tflite", "saved_model"):
        report = kl.export(model, tmp_path / format, format, verify_data=x, batch_size=4)
        assert report.samples == 10 and report.max_abs_diff < 1e-5, format
    import tensorflow as tf

    serve = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serve"]
    assert serve.structured_input_signature[1]["input_0"].shape.as_list() == [4, 12, 12, 1]


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "1"])
def test_batch_size_must_be_a_positive_integer(tmp_path, value):
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        kl.export(_net(), tmp_path / "x.tflite", batch_size=value)
    assert not list(tmp_path.iterdir())


def test_batch_size_is_refused_for_keras_files(tmp_path):
    with pytest.raises(ValueError, match="keeps the model's own input shapes"):
        kl.export(_net(), tmp_path / "x.keras", "keras", batch_size=1)
    assert not list(tmp_path.iterdir())


# -- int8 -------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["tflite-int8", "tflite-int8-full"])
def test_tflite_int8_keeps_pruned_weights_zero(tmp_path, format):
    ticket, x = _ticket(), _inputs(64)
    report = kl.export(
        ticket,
        tmp_path / "t.tflite",
        format,
        verify_data=x,
        representative_data=_inputs(64, seed=2) if format == "tflite-int8-full" else None,
        sparse=False,  # dense storage: every stored entry can be read back
        batch_size=1,
    )
    _zeros_kept(ticket, _kernels_in_file(report.path))
    reference = keras.ops.convert_to_numpy(kl.strip(ticket)(x))
    assert report.max_abs_diff <= INT8_TOLERANCE[format] * np.abs(reference).max()
    for path, stored in report.layers.items():
        assert stored.sparsity >= 0.7, path


@pytest.mark.backends
def test_keras_int8_keeps_pruned_weights_zero_and_leaves_the_model_alone(tmp_path):
    ticket, x = _ticket(), _inputs(64)
    before = [np.array(w) for w in ticket.get_weights()]
    report = kl.export(ticket, tmp_path / "t.int8.keras", "keras-int8", verify_data=x)
    assert report.path.name == "t.int8.keras"
    loaded = keras.models.load_model(report.path)
    hidden = loaded.get_layer("hidden")
    assert hidden.quantization_mode == "int8"
    stored = [
        keras.ops.convert_to_numpy(hidden._kernel),
        keras.ops.convert_to_numpy(loaded.get_layer("logits")._kernel),
        keras.ops.convert_to_numpy(loaded.get_layer("conv").kernel),  # Keras has no int8 conv
    ]
    assert stored[0].dtype == np.int8 and stored[1].dtype == np.int8
    _zeros_kept(ticket, stored)
    reference = keras.ops.convert_to_numpy(kl.strip(ticket)(x))
    assert report.max_abs_diff <= INT8_TOLERANCE["keras-int8"] * np.abs(reference).max()
    assert any("kept float32" in n and "conv" in n for n in report.notes)
    after = ticket.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # not quantized in place
    assert not any(getattr(layer, "quantization_mode", None) for layer in layer_tree(ticket))


@pytest.mark.parametrize("format", ["keras-int8", "tflite-int8-full"])
def test_compacted_model_quantizes_within_tolerance_and_smaller(tmp_path, format):
    small, x = _compacted(), _inputs(64)
    dense = _net()
    kw = {"representative_data": _inputs(64, seed=2)} if format == "tflite-int8-full" else {}
    suffix = ".int8.keras" if format == "keras-int8" else ".tflite"
    compacted = kl.export(small, tmp_path / f"small{suffix}", format, verify_data=x, **kw)
    full = kl.export(dense, tmp_path / f"dense{suffix}", format, verify_data=x, **kw)
    reference = keras.ops.convert_to_numpy(small(x))
    assert compacted.max_abs_diff <= INT8_TOLERANCE[format] * np.abs(reference).max()
    assert compacted.bytes < full.bytes


@pytest.mark.backends
def test_keras_files_of_a_compiled_model_carry_no_optimizer_state(tmp_path):
    import zipfile

    import h5py

    model = kl.zoo.lenet5(seed=0)  # compiled with Adam
    x = np.random.default_rng(3).random((8, 28, 28, 1), dtype=np.float32)
    model.fit(x, np.zeros(8), verbose=0)  # the optimizer has state
    for format in ("keras", "keras-int8"):
        report = kl.export(model, tmp_path / f"m.{format}.keras", format)
        with zipfile.ZipFile(report.path) as z:
            z.extract("model.weights.h5", tmp_path / format)
        with h5py.File(tmp_path / format / "model.weights.h5") as f:
            assert "optimizer" not in f, format
        assert report.bytes < (2 if format == "keras" else 1) * report.dense_bytes, format

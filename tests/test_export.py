"""keras_lottery.export: stripped .keras, SavedModel and sparse TFLite that run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import keras_lottery as kl
from keras_lottery.export import FORMATS, ExportError

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not MNIST.exists(), reason=f"real MNIST not found at {MNIST}")
atomic_module = sys.modules["keras_lottery.export.atomic"]
litert_module = sys.modules["keras_lottery.export.litert"]


@pytest.fixture(scope="module")
def mnist():
    if not MNIST.exists():
        pytest.skip(f"real MNIST not found at {MNIST}")
    return kl.load_dataset(str(MNIST))


def _lenet(name="lenet"):
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="out"),
        ],
        name=name,
    )


def _prune_by_magnitude(model, sparsity):
    masks = {}
    for pw in kl.prunable_weights(model):
        kernel = np.abs(np.asarray(pw.kernel))
        masks[pw.name] = kernel > np.quantile(kernel, sparsity)
    model.set_masks(masks)


@pytest.fixture(scope="module")
def ticket(mnist):
    """A 90%-sparse LeNet-300-100: trained dense, pruned by magnitude, retrained (1 epoch each)."""
    keras.utils.set_random_seed(0)
    model = kl.make_prunable(_lenet())
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = mnist.x_train[:10000], mnist.y_train[:10000]
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    _prune_by_magnitude(model, 0.9)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    assert kl.sparsity(model)["overall"] == pytest.approx(0.9, abs=1e-3)
    return model


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.x_test[:1000], mnist.y_test[:1000]


def _run_tflite(path, x, resolver=OpResolverType.AUTO):
    interpreter = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def _stored_zeros(path):
    """(zeros, size) over the file's sparse weight tensors, read without densifying."""
    interpreter = Interpreter(model_path=str(path))
    zeros = size = 0
    for d in interpreter.get_tensor_details():
        if d.get("sparsity_parameters"):
            values = interpreter.get_tensor(d["index"])
            n = int(np.prod(d["shape"]))
            zeros += n - int(np.count_nonzero(values))
            size += n
    return zeros, size


def _w(report, suffix):
    """The stored weight whose variable path ends with ``suffix`` (paths start with the model)."""
    (key,) = [k for k in report.layers if k == suffix or k.endswith("/" + suffix)]
    return report.layers[key]


def _contents(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# -- formats ------------------------------------------------------------------


@needs_mnist
def test_tflite_float32_is_sparse_and_matches_keras(ticket, digits, tmp_path):
    x, y = digits
    report = kl.export(ticket, tmp_path / "lenet.tflite", verify_data=(x, y))

    assert report.path == tmp_path / "lenet.tflite" and report.path.is_file()
    assert report.bytes == report.path.stat().st_size
    assert report.params == 266_610 and report.dense_bytes == 4 * 266_610
    assert report.bytes < 0.2 * report.dense_bytes  # sparse storage, not dense float32
    assert set(report.layers) == {f"lenet/{n}/kernel" for n in ("fc1", "fc2", "out")}
    for stored in report.layers.values():
        assert stored.encoding == "sparse" and stored.sparsity >= 0.9
    assert report.sparsity >= 0.9 and report.prunable == 266_200
    assert report.max_abs_diff <= 1e-5 and report.argmax_agreement == 1.0
    assert report.exported_accuracy == report.keras_accuracy > 0.85
    assert report.interpreter["op_resolver"] == "AUTO" and report.latency_ms > 0

    # Independently of the report: zeros stored in the file, outputs on real digits.
    zeros, size = _stored_zeros(report.path)
    assert size == 266_200 and zeros / size >= 0.9
    np.testing.assert_allclose(_run_tflite(report.path, x), ticket.predict(x, verbose=0), atol=1e-5)
    assert json.dumps(report.to_dict())
    assert "90.00% zeros" in str(report) and "op resolver AUTO" in str(report)


@needs_mnist
def test_stripped_keras_loads_without_keras_lottery(ticket, digits, tmp_path):
    x = digits[0][:200]
    report = kl.export(ticket, tmp_path / "ticket.keras", "keras", verify_data=x)
    assert report.max_abs_diff == 0.0 and report.sparsity >= 0.9
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import keras
        model = keras.models.load_model(sys.argv[1])
        assert "keras_lottery" not in sys.modules
        assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)
        np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(report.path), tmp_path / "x.npy", tmp_path / "y.npy"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # keras_lottery is not importable from here
    )
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ticket.predict(x, verbose=0), atol=1e-6)


@needs_mnist
def test_int8_runs_in_litert_and_keeps_accuracy(ticket, digits, tmp_path):
    x, y = digits
    report = kl.export(ticket, tmp_path / "lenet.int8.tflite", "tflite-int8", verify_data=(x, y))
    assert abs(report.exported_accuracy - report.keras_accuracy) <= 0.005
    # sparse="auto": the smaller of sparse and dense storage, gzipped, is kept.
    sizes = dict(re.findall(r"(sparse|dense) ([\d,]+) B", report.storage))
    sizes = {k: int(v.replace(",", "")) for k, v in sizes.items()}
    assert set(sizes) == {"sparse", "dense"}
    assert report.gzipped_bytes == min(sizes.values()) < report.dense_bytes / 8
    assert report.storage.startswith(min(sizes, key=sizes.get))
    assert _w(report, "fc1/kernel").dtype == "int8"
    assert _w(report, "fc1/kernel").sparsity >= 0.9
    # The report names the settings that ran it; run it again with those.
    resolver = OpResolverType[report.interpreter["op_resolver"]]
    outputs = _run_tflite(report.path, x, resolver)
    assert (outputs.argmax(-1) == y).mean() == pytest.approx(report.exported_accuracy)
    if "EXPERIMENTAL_SPARSITY" in report.optimizations and resolver != OpResolverType.AUTO:
        assert any("XNNPack" in note for note in report.notes)


@needs_mnist
@pytest.mark.parametrize("format", ["tflite-float16", "tflite-int8-full"])
def test_other_tflite_formats_run(ticket, digits, mnist, tmp_path, format):
    x, y = digits
    report = kl.export(
        ticket,
        tmp_path,
        format,
        verify_data=(x[:300], y[:300]),
        representative_data=mnist.x_train[:100] if format == "tflite-int8-full" else None,
    )
    assert report.path == tmp_path / f"lenet{FORMATS[format]}" and report.path.is_file()
    assert report.argmax_agreement >= 0.97 and report.sparsity >= 0.9
    assert report.interpreter is not None and report.latency_ms > 0


@needs_mnist
def test_saved_model_loads_and_matches(ticket, digits, tmp_path):
    x = digits[0][:200]
    report = kl.export(ticket, tmp_path / "sm", "saved_model", verify_data=x)
    assert (report.path / "saved_model.pb").is_file() and report.sparsity >= 0.9
    loaded = tf.saved_model.load(str(report.path))
    np.testing.assert_allclose(
        np.asarray(loaded.serve(tf.constant(x))), ticket.predict(x, verbose=0), atol=1e-5
    )
    assert _contents(tmp_path) == ["sm"]


def test_conv_model_exports_to_tflite_and_matches(tmp_path):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(5, name="head")(h)
    model = kl.make_prunable(keras.Model(inputs, outputs, name="convnet"))
    _prune_by_magnitude(model, 0.8)
    x = np.random.default_rng(0).random((64, 12, 12, 1), dtype=np.float32)

    report = kl.export(model, tmp_path / "conv.tflite", verify_data=x)
    assert set(report.layers) == {"conv/kernel", "head/kernel"}
    assert all(w.sparsity >= 0.79 for w in report.layers.values())
    assert report.max_abs_diff <= 1e-5
    np.testing.assert_allclose(_run_tflite(report.path, x), model.predict(x, verbose=0), atol=1e-5)


def test_default_folder_and_find_ticket_result(mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _lenet("tiny")
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    found = kl.find_ticket(
        model,
        (mnist.x_train[:600], mnist.y_train[:600]),
        target_sparsity=0.9,
        rounds=1,
        one_shot=True,
        steps=5,
        seed=0,
        verbose=0,
    )
    assert hasattr(found, "lottery")
    report = kl.export(found)
    assert report.path == Path("saved_models/tiny/tiny.tflite")
    assert (tmp_path / "saved_models" / "tiny" / "tiny.tflite").is_file()
    assert _w(report, "fc1/kernel").sparsity == pytest.approx(0.9, abs=1e-3)
    assert report.samples == 32  # random inputs of the model's input shape
    renamed = kl.export(found, format="keras", name="my ticket")
    assert renamed.path == Path("saved_models/my_ticket/my_ticket.keras")


# -- overwriting and bad input ------------------------------------------------


@pytest.fixture
def small():
    model = kl.make_prunable(
        keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)], name="small")
    )
    _prune_by_magnitude(model, 0.5)
    return model


def test_refuses_to_overwrite_unless_asked(small, tmp_path):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kl.export(small, target)
    assert target.read_bytes() == b"keep me" and _contents(tmp_path) == ["m.tflite"]
    kl.export(small, target, overwrite=True)
    assert target.read_bytes()[4:8] == b"TFL3"

    folder = tmp_path / "sm"
    kl.export(small, folder, "saved_model")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        kl.export(small, folder, "saved_model")
    kl.export(small, folder, "saved_model", overwrite=True)
    assert (folder / "saved_model.pb").is_file()
    assert _contents(tmp_path) == ["m.tflite", "sm"]  # no temporary leftovers


def test_unknown_format_lists_valid_ones(small, tmp_path):
    with pytest.raises(ValueError, match="tflite-int8-full") as info:
        kl.export(small, tmp_path / "m.onnx", "onnx")
    assert all(f in str(info.value) for f in FORMATS)
    assert _contents(tmp_path) == []


def test_path_not_writable(small, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        kl.export(small, tmp_path / "file" / "sub" / "m.tflite")
    assert _contents(tmp_path) == ["file"]


def test_read_only_folder(small, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if atomic_module.os.access(locked, atomic_module.os.W_OK):  # root ignores modes
            monkeypatch.setattr(atomic_module.os, "access", lambda *a, **k: False)
        with pytest.raises(PermissionError, match="not writable"):
            kl.export(small, locked / "m.tflite")
    finally:
        locked.chmod(0o700)
    assert _contents(locked) == []


def test_plain_keras_model_exports(tmp_path):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="d")], name="plain")
    report = kl.export(model, tmp_path / "plain.keras", "keras")
    loaded = keras.models.load_model(report.path)
    assert [type(layer) for layer in loaded.layers] == [keras.layers.Dense]
    assert _w(report, "d/kernel").sparsity == 0.0 and report.max_abs_diff == 0.0


def test_subclassed_model_without_build_config_needs_verify_data(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3, name="d")

        def call(self, x):
            return self.dense(x)

    model = Net()
    model(np.zeros((1, 4), "float32"))  # build config: input shape (1, 4)
    masked = kl.make_prunable(model)
    _prune_by_magnitude(masked, 0.5)
    report = kl.export(masked, tmp_path / "m.tflite")
    assert report.samples == 32 and report.max_abs_diff <= 1e-6
    assert _w(report, "d/kernel").sparsity == 0.5

    model.get_build_config = lambda: None  # a model that does not say its inputs
    with pytest.raises(ValueError, match="does not say what inputs.*verify_data="):
        kl.export(masked, tmp_path / "n.tflite")
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    report = kl.export(masked, tmp_path / "n.tflite", verify_data=x)
    assert report.samples == 5 and report.max_abs_diff <= 1e-6
    assert _contents(tmp_path) == ["m.tflite", "n.tflite"]


def test_unbuilt_model(tmp_path):
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="not built"):
        kl.export(model, tmp_path / "m.tflite")
    assert _contents(tmp_path) == []


def test_representative_data_missing_or_wrong_shape(small, tmp_path):
    target = tmp_path / "new" / "m.tflite"
    with pytest.raises(ValueError, match="representative_data"):
        kl.export(small, target, "tflite-int8-full")
    with pytest.raises(ValueError, match=r"shape \(5,\).*\(6,\)"):
        kl.export(small, target, "tflite-int8-full", representative_data=np.zeros((8, 5)))
    with pytest.raises(ValueError, match="verify_data"):
        kl.export(small, target, verify_data=np.zeros((8, 2, 3)))
    assert _contents(tmp_path) == []


@keras.saving.register_keras_serializable(package="test_export")
class Igamma(keras.layers.Layer):
    """A layer whose op (tf.math.igamma) has no TFLite kernel."""

    def call(self, x):
        return tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 1.0)


def test_failed_conversion_leaves_nothing(tmp_path):
    model = kl.make_prunable(
        keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), Igamma()], name="odd")
    )
    with pytest.raises(ExportError, match="Igamma"):
        kl.export(model, tmp_path / "a" / "b" / "odd.tflite")
    assert _contents(tmp_path) == []  # not even the folders it created


def test_file_that_does_not_run_is_not_written(small, tmp_path, monkeypatch):
    def broken(path, resolver=None):
        raise RuntimeError("Node number 3 (FULLY_CONNECTED) failed to prepare.")

    monkeypatch.setattr(litert_module, "interpreter", broken)
    with pytest.raises(ExportError, match="does not run.*AUTO.*BUILTIN_WITHOUT_DEFAULT"):
        kl.export(small, tmp_path / "m.tflite")
    assert _contents(tmp_path) == []

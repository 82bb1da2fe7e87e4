"""What a JAX or PyTorch user gets without TensorFlow: the core, the CLI, clear errors.

CI runs these (``-m backends``) on TensorFlow, in a JAX environment without
TensorFlow and in a PyTorch one; the checks that need TensorFlow to be absent
skip where it is installed, and the one that needs another backend skips on
TensorFlow.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import lenet
from test_cli import child_env

import keras_lottery as kl
from keras_lottery.data import distributed
from keras_lottery.extras import MissingExtraError

HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
BACKEND = keras.backend.backend()
without_tensorflow = pytest.mark.skipif(HAS_TENSORFLOW, reason="TensorFlow is installed")
EXTRA = r"pip install 'keras-lottery\[tensorflow\]'"


def _python(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**child_env(), "KERAS_BACKEND": BACKEND, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


#: Makes ``import tensorflow`` fail in a process, as where it is not installed (where it
#: is not, nothing to do: ``find_spec`` must then answer None, as PyTorch's dynamo asks it).
HIDE_TENSORFLOW = """
import importlib.abc, importlib.util, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

if importlib.util.find_spec("tensorflow") is not None:
    sys.meta_path.insert(0, NoTensorFlow())
"""


@pytest.mark.backends
@pytest.mark.skipif(BACKEND == "tensorflow", reason="Keras's TensorFlow backend needs it")
def test_a_search_export_and_analysis_never_need_tensorflow(tmp_path):
    """On JAX/PyTorch the core runs with ``import tensorflow`` failing, installed or not.

    (Keras itself imports TensorFlow where it is installed, e.g. to serialize a
    compile config; here it cannot, as on a machine without it.)
    """
    done = _python(
        HIDE_TENSORFLOW
        + """
import keras
import keras_lottery as kl
import keras_lottery.seeding
import keras_lottery_cli.main

data = kl.load_dataset().subset(200, 50)

def net():
    kl.seeding.set_random_seed(0)
    dense = [keras.layers.Dense(16, "relu"), keras.layers.Dense(10)]
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), *dense])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model

ticket = kl.find_ticket(net(), data, rounds=1, steps=5, run_dir="run", verbose=0)
again = kl.find_ticket(net(), data, rounds=1, steps=5, run_dir="run", verbose=0)  # reloaded
assert all((a == b).all() for a, b in zip(ticket.get_weights(), again.get_weights()))
kl.coverage(ticket), kl.compact(ticket)
kl.export(ticket, "t.keras", format="keras", verify_data=data)
kl.instability(net(), data, steps=2, batch_size=20, points=3)
print("tensorflow loaded:", "tensorflow" in sys.modules)
""",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tensorflow loaded: False" in done.stdout, done.stdout


@pytest.mark.backends
def test_embedded_dataset_search_compact_and_keras_file_round_trip(tmp_path):
    data = kl.load_dataset("mnist-5k").subset(300, 100)
    model = lenet(hidden=(24, 12))
    ticket = kl.find_ticket(model, data, rounds=1, rate=0.5, steps=10, seed=0, verbose=0)
    masks = ticket.lottery.final.masks
    report = kl.export(ticket, tmp_path / "t.keras", format="keras", verify_data=data)
    assert report.max_abs_diff <= 1e-6
    loaded = keras.models.load_model(tmp_path / "t.keras")
    for layer_kernel, (path, mask) in zip(_kernels(loaded), masks.items(), strict=True):
        assert layer_kernel.shape == mask.shape, path
        assert not np.any(layer_kernel[~mask]), f"{path}: a pruned weight is not 0 in the file"
    small, compaction = kl.compact(ticket)
    x = data.x_test[:20]
    np.testing.assert_allclose(small.predict(x, verbose=0), ticket.predict(x, verbose=0), atol=1e-5)
    assert compaction.params_after <= compaction.params_before
    assert kl.coverage(ticket).fraction_covered() == 1.0


def _kernels(model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.weights if w.path.endswith("kernel")]


@pytest.mark.backends
@without_tensorflow
def test_what_needs_tensorflow_names_the_extra_in_one_line(tmp_path):
    model = lenet(hidden=(8,))
    x = np.zeros((4, 28, 28), "float32")
    for fmt in ("tflite", "saved_model", "tflite-int8"):
        with pytest.raises(MissingExtraError, match=EXTRA) as caught:
            kl.export(kl.MaskedModel(model), tmp_path / f"t.{fmt}", format=fmt, verify_data=x)
        assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MissingExtraError, match="TFDS dataset 'cifar10' needs tensorflow_datasets"):
        kl.load_dataset("cifar10")
    for module in ("keras_lottery.tfmot.compat", "keras_lottery.tfmot.schedules"):
        with pytest.raises(MissingExtraError, match=EXTRA):
            importlib.import_module(module)
    with pytest.raises(MissingExtraError, match=EXTRA):
        distributed.patch_keras_multi_worker()
    assert distributed.is_chief()  # no TensorFlow, no strategy: this process writes


@pytest.mark.backends
@without_tensorflow
def test_cli_on_the_tensorflow_backend_without_tensorflow_says_what_to_do(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "keras_lottery_cli.main", "list", str(tmp_path)],
        env={**child_env(), "KERAS_BACKEND": "tensorflow"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("Error: The Keras backend is tensorflow")
    assert "--backend jax" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.backends
def test_a_cli_run_leaves_nothing_in_the_temp_directory(tmp_path):
    """TensorFlow's autograph writes temp files removed at exit: the CLI's fast exit runs that."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    args = ["find", "--train-size", "200", "--test-size", "50", "--steps", "5", "--rounds", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "keras_lottery_cli.main", *args, "--runs-root", "runs", "-q"],
        cwd=tmp_path,
        env={**child_env(), "KERAS_BACKEND": BACKEND, "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done" in done.stdout
    assert sorted(p.name for p in temp.iterdir()) == []

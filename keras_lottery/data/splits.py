"""The data a method is given: one reading for every way to a ticket, and a search's splits.

:func:`~keras_lottery.find_ticket` and :func:`~keras_lottery.prune_at_init`
take the same things (:func:`read_data`): ``(x, y)`` with ``x`` and ``y``
arrays of any framework (NumPy, JAX, TensorFlow or PyTorch tensors) or dicts,
lists or tuples of them (several inputs or outputs), a
:class:`~keras_lottery.data.Dataset` or a dataset name, or a stream of batches
(``tf.data.Dataset``, ``keras.utils.PyDataset``).
"""

from __future__ import annotations

from typing import Any

import keras

from keras_lottery.data import structure
from keras_lottery.data.datasets import Dataset, load_dataset
from keras_lottery.extras import is_tf_dataset


def resolve_splits(data, validation_data, validation_split, test_data, data_dir):
    """What a user passed as data, as ``(train, validation_data, test_data)``.

    ``data`` is ``(x, y)`` arrays (or nests of them), a ``tf.data.Dataset``, a
    ``keras.utils.PyDataset``, a :class:`~keras_lottery.data.datasets.Dataset`, a dataset
    name, or None for the embedded MNIST sample. Arrays are converted to NumPy and the
    last ``validation_split`` of them is held out.
    """
    train, test = read_data(data, data_dir)
    test_data = test_data or test
    if is_stream(train):
        if validation_split is not None:
            raise ValueError(
                "validation_split needs (x, y) arrays; pass validation_data with a "
                f"{type(train).__name__}."
            )
        return train, validation_data, test_data
    x, y = train
    n = structure.num_examples(x, y)
    if validation_split:
        n_val = int(round(n * validation_split))
        validation_data = (
            structure.take(x, slice(n - n_val, n)),
            structure.take(y, slice(n - n_val, n)),
        )
        x, y = structure.take(x, slice(0, n - n_val)), structure.take(y, slice(0, n - n_val))
    return (x, y), validation_data, test_data


def is_stream(data: Any) -> bool:
    """Whether ``data`` is a stream of batches Keras reads as it is."""
    return is_tf_dataset(data) or isinstance(data, keras.utils.PyDataset)


def is_pair(data: Any) -> bool:
    """Whether ``data`` is read as ``(x, y)``: a tuple or list of two items."""
    return isinstance(data, tuple | list) and len(data) == 2


def read_data(data: Any, data_dir: str | None = None) -> tuple[Any, tuple | None]:
    """``(train, test)``: the training data and a test split (``None``: none came with it).

    ``train`` is ``(x, y)`` as NumPy arrays in the structure given, or the
    stream itself.  ``None`` or a name loads :func:`~keras_lottery.data.load_dataset`.

    Raises:
        TypeError: ``data`` is none of these.
    """
    if data is None or isinstance(data, str):
        data = load_dataset(data or "mnist-5k", data_dir=data_dir)
    if isinstance(data, Dataset):
        return (data.x_train, data.y_train), (data.x_test, data.y_test)
    if is_stream(data):
        return data, None
    if not is_pair(data):
        raise TypeError(
            "data must be (x, y) arrays (x and y may be dicts/lists/tuples of arrays of any "
            "framework), a tf.data.Dataset, a keras.utils.PyDataset, a "
            "keras_lottery.data.Dataset or a dataset name; got "
            f"{type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, tuple | list) else "")
            + "."
        )
    return (structure.as_arrays(data[0]), structure.as_arrays(data[1])), None

"""The data a search is given, resolved into its training, validation and test splits."""

from __future__ import annotations

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
    if data is None or isinstance(data, str):
        data = load_dataset(data or "mnist-5k", data_dir=data_dir)
    if isinstance(data, Dataset):
        test_data = test_data or (data.x_test, data.y_test)
        data = (data.x_train, data.y_train)
    if is_tf_dataset(data) or isinstance(data, keras.utils.PyDataset):
        if validation_split is not None:
            raise ValueError(
                "validation_split needs (x, y) arrays; pass validation_data with a "
                f"{type(data).__name__}."
            )
        return data, validation_data, test_data
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise TypeError(
            "data must be (x, y) arrays (x and y may be dicts/lists of arrays), a "
            "tf.data.Dataset, a keras.utils.PyDataset, a keras_lottery.Dataset or a dataset "
            f"name; got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, tuple | list) else "")
            + "."
        )
    x, y = structure.as_arrays(data[0]), structure.as_arrays(data[1])
    n = structure.num_examples(x, y)
    if validation_split:
        n_val = int(round(n * validation_split))
        validation_data = (
            structure.take(x, slice(n - n_val, n)),
            structure.take(y, slice(n - n_val, n)),
        )
        x, y = structure.take(x, slice(0, n - n_val)), structure.take(y, slice(0, n - n_val))
    return (x, y), validation_data, test_data

"""Data: datasets and batch streams (:mod:`~keras_lottery.data.datasets`), the structure of
a model's inputs and outputs (:mod:`~keras_lottery.data.structure`) and several workers
(:mod:`~keras_lottery.data.distributed`)."""

from keras_lottery.data.datasets import Dataset, DatasetError, load_dataset, load_mnist_5k

__all__ = ["Dataset", "DatasetError", "load_dataset", "load_mnist_5k"]

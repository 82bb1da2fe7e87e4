"""Optional dependencies: import them where a feature needs them, or name the extra to install.

The core installs Keras, NumPy and pure-Python packages only; the backend is the
user's choice (``keras-lottery[jax]``, ``[torch]`` or ``[tensorflow]``).  TensorFlow
and what needs it (TFLite/LiteRT and SavedModel export, TFMOT, TFDS names,
``tf.data`` input, ``tf.distribute``) come with the ``tensorflow`` extra.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

#: Module -> the extra that installs it (every module the library imports through
#: :func:`require` or checks with :func:`check_installed`).
EXTRA = {
    "tensorflow": "tensorflow",
    "tensorflow_datasets": "tensorflow",
    "tensorflow_model_optimization": "tensorflow",
    "ai_edge_litert": "tensorflow",
    "ray": "ray",
}


class MissingExtraError(ImportError):
    """A feature needs a package that is not installed; the message names the extra."""


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise a one-line :class:`MissingExtraError`."""
    if sys.modules.get(module) is not None:
        return sys.modules[module]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name is None or e.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed
        raise _missing(top, feature) from None


def _missing(module: str, feature: str) -> MissingExtraError:
    top = module.split(".")[0]
    return MissingExtraError(
        f"{feature} needs {top}, which is not installed: "
        f"pip install 'keras-lottery[{EXTRA.get(top, top)}]'"
    )


def check_installed(module: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` if ``module`` is not installed; imports nothing.

    For work that runs ``module`` elsewhere (a TensorFlow subprocess).
    """
    if module not in sys.modules and importlib.util.find_spec(module) is None:
        raise _missing(module, feature)


def tensorflow(feature: str) -> ModuleType:
    """``import tensorflow`` for ``feature`` (see :func:`require`)."""
    return require("tensorflow", feature)


def is_tf_dataset(obj: object) -> bool:
    """True for a ``tf.data.Dataset``; never imports TensorFlow to find out.

    Without TensorFlow loaded in the process, no object can be one.
    """
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(obj, tf.data.Dataset)

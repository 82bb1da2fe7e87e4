"""Seeds for Python, NumPy, Keras and the backend, without importing TensorFlow.

``keras.utils.set_random_seed`` also seeds TensorFlow whenever it is installed,
which imports it (seconds, and GPU memory on a GPU machine) into a JAX or
PyTorch process that never uses it.  :func:`set_random_seed` seeds the same
generators and TensorFlow's only where TensorFlow is already loaded.
"""

from __future__ import annotations

import random
import sys

import keras
import numpy as np


def set_random_seed(seed: int, *, tensorflow: bool = True) -> None:
    """Seed as ``keras.utils.set_random_seed`` does, TensorFlow only if already imported.

    Args:
        seed: the seed.
        tensorflow: also set TensorFlow's global seed when TensorFlow is loaded.
            Setting it clears TensorFlow's kernel caches, so an already traced
            train step re-optimises its graph at its next call (10-30 s for
            ResNet50): a search sets it once, not every round.
    """
    try:
        from keras.src.backend.common import global_state
        from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
        from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    except ImportError:  # another Keras layout: the public call
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)  # made anew from the seed
    random.seed(seed)
    np.random.seed(seed)
    tf = sys.modules.get("tensorflow")
    if tensorflow and tf is not None:
        tf.random.set_seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def seed_round(seed: int) -> None:
    """Seed Python, NumPy, Keras's random generator and the backend for one round.

    TensorFlow's global seed (set once per search) stays as it is: setting it
    clears TensorFlow's kernel caches (see :func:`set_random_seed`).  Keras's
    random ops and the search's data streams take no seed from it, so a resumed
    search draws the same random streams as an uninterrupted one.
    """
    set_random_seed(seed, tensorflow=False)

"""Seeding each round: the same random streams whether a search was resumed or not."""

from __future__ import annotations

import random

import keras
import numpy as np


def _seed_round(seed: int) -> None:
    """Seed Python, NumPy and Keras's random generator as ``keras.utils.set_random_seed``.

    On TensorFlow it leaves TF's global seed (set once per search) alone: setting
    it clears TensorFlow's kernel caches, so the next call of the already traced
    train step re-optimises its whole graph (10-30 s a round for ResNet50 here).
    Keras's random ops and the search's data streams take no seed from it.
    """
    if keras.backend.backend() != "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    try:
        from keras.src.backend.common import global_state
        from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
        from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED
    except ImportError:  # another Keras layout: the public call, caches and all
        keras.utils.set_random_seed(seed)
        return
    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)

"""Files saved by earlier versions load: the registered class names do not move with modules."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import keras_lottery as kl

pytestmark = pytest.mark.backends

DATA = Path(__file__).parent / "data"


def test_masked_model_saved_by_0_3_0_loads_with_its_masks_and_outputs():
    """tests/data/masked_model_0.3.0.keras: a MaskedModel saved by keras-lottery 0.3.0 (before
    the modules moved into packages), with its masks and outputs on fixed inputs."""
    expected = np.load(DATA / "masked_model_0.3.0.npz")
    ticket = keras.saving.load_model(DATA / "masked_model_0.3.0.keras")
    assert isinstance(ticket, kl.MaskedModel)
    # The same weights, in order (a reloaded model's paths may drop the model's name).
    masks = [np.asarray(pw.mask, bool) for pw in ticket.prunable_weights()]
    saved = [expected["sequential|hidden|kernel"], expected["sequential|out|kernel"]]
    assert [m.shape for m in masks] == [(6, 8), (8, 3)]
    for mask, want in zip(masks, saved, strict=True):
        np.testing.assert_array_equal(mask, want)
    np.testing.assert_allclose(np.asarray(ticket(expected["x"])), expected["y"], atol=1e-6)


def test_registered_names_are_those_of_0_3_0():
    assert keras.saving.get_registered_name(kl.MaskedModel) == "keras_lottery>MaskedModel"
    assert keras.saving.get_registered_object("keras_lottery>MaskedModel") is kl.MaskedModel

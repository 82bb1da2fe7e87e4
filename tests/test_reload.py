"""A saved MaskedModel masks the same weights after loading, whatever paths they get.

Keras variable paths depend on how a model is built: a nested model or a
``Bidirectional`` layer loaded from a file gives its variables other paths
(``block/dense/kernel`` becomes ``dense/kernel``, ``bi/forward_lstm/...``
becomes ``forward_lstm/...``).  ``include``/``exclude`` selectors match paths,
so a file records the selection they resolved to, by position in the wrapped
model's weights.  Weights are compared here by that position, never by path.
"""

from __future__ import annotations

import json
import re
import zipfile

import keras
import numpy as np
import pytest

import keras_lottery as kl


def _nested() -> keras.Model:
    """A functional model holding a Sequential and a functional sub-model."""
    block = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(4),
        ],
        name="block",
    )
    sub_in = keras.Input((4,))
    sub = keras.Model(sub_in, keras.layers.Dense(4, activation="relu")(sub_in), name="sub")
    inp = keras.Input((6,))
    x = keras.layers.Dense(6, activation="relu")(inp)
    return keras.Model(inp, keras.layers.Dense(3)(sub(block(x))))


def _bidirectional() -> keras.Model:
    inp = keras.Input((5, 2))
    x = keras.layers.Bidirectional(keras.layers.LSTM(3), name="bi")(inp)
    return keras.Model(inp, keras.layers.Dense(2)(x))


MODELS = {"nested": (_nested, (6,)), "bidirectional": (_bidirectional, (5, 2))}

CASES = {
    "nested-include-glob": ("nested", {"include": "block/*"}),  # adds biases and BN too
    "nested-exclude-glob": ("nested", {"exclude": ["block/*", "sub/*"]}),
    "nested-include-regex": ("nested", {"include": re.compile(r"^(block|sub)/.*kernel$")}),
    "nested-exclude-regex": ("nested", {"exclude": re.compile(r"^sub/")}),
    "bidirectional-include-glob": ("bidirectional", {"include": "bi/forward_*"}),
    "bidirectional-exclude-glob": ("bidirectional", {"exclude": "bi/backward_*"}),
    "bidirectional-include-regex": (
        "bidirectional",
        {"include": re.compile(r"^bi/.*/recurrent_kernel$")},
    ),
    "bidirectional-exclude-mixed": (
        "bidirectional",
        {"exclude": [re.compile(r"^bi/backward"), "*recurrent_kernel"]},
    ),
}


def _masked(kind: str, selectors: dict, seed: int = 0) -> tuple[kl.MaskedModel, np.ndarray]:
    """The model with random masks (set, and pruned weights zeroed, by ``set_masks``)."""
    make, shape = MODELS[kind]
    keras.utils.set_random_seed(seed)
    masked = kl.make_prunable(make(), **selectors)
    rng = np.random.default_rng(seed)
    masked.set_masks({pw.name: rng.random(pw.mask.shape) < 0.5 for pw in masked.prunable_weights()})
    return masked, rng.random((3, *shape)).astype("float32")


def _snapshot(masked: kl.MaskedModel) -> dict:
    """What a reload must keep, by position in the wrapped model's weights (not by path)."""
    rows = masked.coverage().rows
    position = {id(row.variable): i for i, row in enumerate(rows)}
    pruned = masked.prunable_weights()
    return {
        "weights": [np.array(row.variable) for row in rows],
        "statuses": [row.reason for row in rows],
        "positions": [position[id(pw.kernel)] for pw in pruned],
        "masks": [np.array(pw.mask) for pw in pruned],
        "outputs": [pw.is_output for pw in pruned],
    }


def _perturb_names() -> None:
    """Build and drop layers and models of the same classes: auto-generated names move on."""
    for make, _ in MODELS.values():
        make()
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    keras.layers.Bidirectional(keras.layers.LSTM(2))
    keras.layers.BatchNormalization()


def _rewrite_config(path, edit) -> None:
    """Apply ``edit`` to the MaskedModel config inside the ``.keras`` file at ``path``."""
    with zipfile.ZipFile(path) as z:
        entries = {name: z.read(name) for name in z.namelist()}
    config = json.loads(entries["config.json"])
    edit(config["config"])
    entries["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)


@pytest.mark.backends
@pytest.mark.parametrize("case", list(CASES))
def test_reload_masks_the_same_weights(case, tmp_path):
    kind, selectors = CASES[case]
    masked, x = _masked(kind, selectors)
    before, expected = _snapshot(masked), keras.ops.convert_to_numpy(masked(x))
    config = masked.get_config()
    masked.save(tmp_path / "m.keras")
    _perturb_names()
    loaded = keras.models.load_model(tmp_path / "m.keras")
    after = _snapshot(loaded)

    assert isinstance(loaded, kl.MaskedModel)
    assert after["statuses"] == before["statuses"]  # the same selection, row by row
    assert after["positions"] == before["positions"]  # masks on the same weights
    assert after["outputs"] == before["outputs"]
    for a, b in zip(before["masks"], after["masks"]):
        np.testing.assert_array_equal(a, b)  # same shapes, same bits
    for a, b in zip(before["weights"], after["weights"]):
        np.testing.assert_array_equal(a, b)
    for i, mask in zip(after["positions"], after["masks"]):
        assert not np.any(after["weights"][i][~mask])  # pruned weights are exactly 0
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)
    again = loaded.get_config()
    assert {k: again[k] for k in ("include", "exclude", "selection")} == {
        k: config[k] for k in ("include", "exclude", "selection")
    }


@pytest.mark.backends
def test_reload_keeps_masks_off_other_weights_of_the_same_shape(tmp_path):
    """Matched again after loading, this selector picks ``d1`` instead of ``d2`` (both 4x4)."""
    block = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, name="d1"), keras.layers.Dense(4, name="d2")],
        name="block",
    )
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(block(inp)))
    masked = kl.make_prunable(model, exclude=["block/d1/*", "d2/*"])
    rng = np.random.default_rng(0)
    masked.set_masks({pw.name: rng.random(pw.mask.shape) < 0.5 for pw in masked.prunable_weights()})
    x = rng.random((3, 4)).astype("float32")
    before, expected = _snapshot(masked), keras.ops.convert_to_numpy(masked(x))
    masked.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert _snapshot(loaded)["positions"] == before["positions"] == [2, 4]  # d2, out
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)


@pytest.mark.backends
def test_config_round_trip_is_symmetric():
    masked, _ = _masked(*CASES["bidirectional-exclude-mixed"])
    config = masked.get_config()
    regex = {"regex": "^bi/backward", "flags": re.UNICODE}
    assert config["exclude"] == [regex, "*recurrent_kernel"]
    rebuilt = kl.MaskedModel.from_config(config)
    assert rebuilt._selectors[1] == [re.compile(r"^bi/backward"), "*recurrent_kernel"]
    assert rebuilt.get_config() == config


@pytest.mark.backends
def test_predicate_selector_cannot_be_saved(tmp_path):
    def lstm_only(variable):
        return "lstm" in variable.path

    masked, _ = _masked("bidirectional", {"include": lstm_only})
    assert len(masked.prunable_weights()) == 6  # kernels, recurrent kernels and biases
    with pytest.raises(ValueError, match=r"include= holds a predicate \(lstm_only\).*strip\(\)"):
        masked.get_config()
    with pytest.raises(ValueError, match="cannot be saved: its include= holds a predicate"):
        masked.save(tmp_path / "m.keras")


@pytest.mark.backends
def test_file_without_selection_loads_as_before(tmp_path):
    """A file of an older version (no ``selection``) matches the selectors again."""
    masked, x = _masked("bidirectional", {"exclude": "*backward*"})  # a path-independent glob
    before, expected = _snapshot(masked), keras.ops.convert_to_numpy(masked(x))
    masked.save(tmp_path / "m.keras")
    _rewrite_config(tmp_path / "m.keras", lambda config: config.pop("selection"))
    loaded = keras.models.load_model(tmp_path / "m.keras")
    after = _snapshot(loaded)
    assert after["positions"] == before["positions"] == [0, 1, 6]
    for a, b in zip(before["masks"], after["masks"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), expected, atol=1e-6)


def _moving_mean_pruned(config):
    statuses = config["selection"]
    statuses[statuses.index("frozen")] = "pruned"  # BatchNormalization's moving mean


@pytest.mark.backends
@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c["selection"].pop(), "records the selection of 13 variables, but"),
        (_moving_mean_pruned, r"as pruned, but it cannot be: not trainable"),
        (lambda c: c["selection"].__setitem__(0, "maybe"), "unknown status 'maybe'"),
    ],
    ids=["count", "not-prunable", "unknown"],
)
def test_selection_that_does_not_fit_is_an_error(edit, message, tmp_path):
    masked, _ = _masked("nested", {"exclude": "sub/*"})
    masked.save(tmp_path / "m.keras")
    _rewrite_config(tmp_path / "m.keras", edit)
    with pytest.raises(ValueError, match=message):
        keras.models.load_model(tmp_path / "m.keras")

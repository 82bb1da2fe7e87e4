"""keras_lottery.export on the model matrix: .keras round trips, TFLite files that keep zeros.

Each model gets random ~50% masks on every weight matrix; the exported files
are read back independently of the report (the reloaded .keras weights, the
TFLite file run in LiteRT by its signature).
"""

from __future__ import annotations

import keras
import matrix
import numpy as np
import pytest
from conftest import HAS_TENSORFLOW

import keras_lottery as kl
from keras_lottery.extras import MissingExtraError
from keras_lottery.masks.coverage import discover

RECURRENT = {"lstm_gru", "bidirectional"}
# Weights that TFLite uses through ops other than matmul / conv / gather (a
# position table sliced and added), which the report's reader does not find.
UNREAD_IN_TFLITE = {
    "hub_encoder": {"embed/position_embedding/embeddings"},
    "bert": {"position_embedding/embeddings"},
}
CASES = [pytest.param(n, marks=pytest.mark.slow) if n in matrix.SLOW else n for n in matrix.MODELS]
# MobileNetV3's .keras round trip takes 25 s here; its TFLite export is the test that matters.
KERAS_CASES = [c for c in CASES if getattr(c, "values", (c,))[0] != "mobilenet_v3"]


def _ticket(name, seed=0):
    """The matrix model, mask-aware, with random masks keeping about half of each weight."""
    model, x, _ = matrix.build(name, seed)
    masked = kl.make_prunable(model)
    rng = np.random.default_rng(seed)
    masks = {pw.name: rng.random(pw.kernel.shape) >= 0.5 for pw in masked.prunable_weights()}
    masked.set_masks(masks)
    return masked, x, masks


def _outputs(model, x):
    return [np.asarray(o) for o in keras.tree.flatten(model(x, training=False))]


def _run_litert(path, x, input_names, output_names):
    """The file's outputs on ``x``, fed by its signature's input names (LiteRT defaults)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    arrays = keras.tree.flatten(x)
    got = runner(**dict(zip(input_names, arrays)))
    return [got[n] for n in output_names]


@pytest.mark.parametrize("name", KERAS_CASES)
def test_keras_round_trip_keeps_zeros_and_outputs(name, tmp_path):
    masked, x, masks = _ticket(name)
    expected = _outputs(masked, x)
    report = kl.export(masked, tmp_path / "ticket.keras", "keras", verify_data=x)
    assert report.path.is_file() and report.max_abs_diff <= 1e-6

    loaded = keras.models.load_model(report.path)
    for got, want in zip(_outputs(loaded, x), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    rows = [r for r in discover(kl.strip(masked)) if r.is_matrix]
    values = [np.asarray(r.variable) for r in discover(loaded) if r.is_matrix]
    assert [v.shape for v in values] == [tuple(r.variable.shape) for r in rows]
    for row, value in zip(rows, values):
        np.testing.assert_array_equal(value, np.asarray(row.variable))
        if row.path in masks:
            assert not value[~masks[row.path]].any(), row.path  # pruned weights stored as 0
    assert report.nonzero == sum(np.count_nonzero(v) for v in values)


@pytest.mark.parametrize("name", CASES)
def test_tflite_keeps_zeros_per_weight_and_matches_keras(name, tmp_path):
    masked, x, masks = _ticket(name)
    rnn = "unroll" if name in RECURRENT else None
    report = kl.export(masked, tmp_path / "ticket.tflite", verify_data=x, rnn=rnn)
    n_outputs = len(keras.tree.flatten(masked(keras.tree.map_structure(lambda a: a[:1], x))))
    assert len(report.output_max_abs_diff) == n_outputs
    assert report.max_abs_diff <= 1e-4, report.output_max_abs_diff

    unread = UNREAD_IN_TFLITE.get(name, set())
    for path, mask in masks.items():
        if path in unread:
            continue
        stored = report.layers[path]  # read from the file's tensors
        assert stored.size == mask.size, path
        assert stored.nonzero <= int(mask.sum()), path

    # Independently of the report: run the file by its signature names.
    names = list(report.output_max_abs_diff)
    inputs = _input_names(x)
    expected = _outputs(masked, x)
    for got, want in zip(_run_litert(report.path, x, inputs, names), expected, strict=True):
        np.testing.assert_allclose(
            got, want.astype(np.float32), atol=1e-4 if name != "mixed_float16" else 1e-2
        )
    if name in RECURRENT:
        assert report.conversion == ["unrolled_rnn"]
    if name == "mixed_float16":
        assert report.conversion == ["float32"] and "float32 copy" in report.notes[0]
        assert all(w.dtype == "float32" for w in report.layers.values())


def _input_names(x):
    if isinstance(x, dict):
        return sorted(x)
    if isinstance(x, list):
        return [f"input_{i}" for i in range(len(x))]
    return ["input_0"]


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_model_needs_the_rnn_option(name, tmp_path):
    masked, x, _ = _ticket(name)
    with pytest.raises(ValueError, match=r"recurrent layers .*rnn='unroll'"):
        kl.export(masked, tmp_path / "sub" / "ticket.tflite", verify_data=x)
    assert list(tmp_path.iterdir()) == []


def test_subclassed_model_takes_its_inputs_from_the_build_config(tmp_path):
    masked, x, _ = _ticket("subclassed")
    report = kl.export(masked, tmp_path / "t.tflite")  # no data: random inputs of (8, 4)
    assert report.samples == 32 and report.max_abs_diff <= 1e-5


def test_two_outputs_wrong_input_structure(tmp_path):
    masked, x, _ = _ticket("two_in_two_out")
    with pytest.raises(ValueError, match=r"keys \['image'\].*missing \['meta'\]"):
        kl.export(masked, tmp_path / "t.tflite", verify_data={"image": x["image"]})
    with pytest.raises(ValueError, match="dict of inputs"):
        kl.export(masked, tmp_path / "t.tflite", verify_data=x["image"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.backends
def test_export_on_this_backend(tmp_path):
    """On JAX (or torch), TensorFlow formats go through a TensorFlow subprocess."""
    masked, x, masks = _ticket("two_in_two_out")
    backend = keras.backend.backend()
    kept = kl.export(masked, tmp_path / "t.keras", "keras", verify_data=x)
    assert kept.route == "tensorflow" and kept.max_abs_diff <= 1e-6
    if not HAS_TENSORFLOW:  # the .keras file above is all a backend gives without it
        with pytest.raises(MissingExtraError, match=r"pip install 'keras-lottery\[tensorflow\]'"):
            kl.export(masked, tmp_path / "t.tflite", verify_data=x)
        assert not (tmp_path / "t.tflite").exists()
        return
    report = kl.export(masked, tmp_path / "t.tflite", verify_data=x)
    assert report.max_abs_diff <= 1e-4
    assert ("subprocess" in report.route) == (backend != "tensorflow")
    for path, mask in masks.items():
        assert report.layers[path].nonzero <= int(mask.sum())

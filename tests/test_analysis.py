"""keras_lottery.analysis: instability (linear mode connectivity), weight movement, connectivity."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_lottery as kl


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype("float32")
    y = ((x[:, 0] * x[:, 1] > 0) ^ (x[:, 2] > 0.5)).astype("int32")
    return x, y


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((10,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(keras.optimizers.SGD(0.2), "sparse_categorical_crossentropy")
    return model


@pytest.mark.backends
def test_one_data_order_is_stable_and_endpoints_are_the_copies_own_errors():
    model, data = _model(), _data()
    before = [np.array(v) for v in model.weights]
    same = kl.instability(model, data, rewind_to=5, steps=60, batch_size=20, seeds=(3, 3), points=7)
    assert same.instability == pytest.approx(0.0, abs=1e-6)
    assert same.endpoint_errors[0] == pytest.approx(same.endpoint_errors[1], abs=1e-6)
    assert len(same.alphas) == len(same.errors) == len(same.losses) == 7
    for after, b in zip(model.weights, before):  # the model is left as it was
        np.testing.assert_array_equal(np.array(after), b)

    other = kl.instability(model, data, steps=60, batch_size=20, seeds=(3, 4), points=7)
    assert other.instability >= 0.0
    assert other.errors[0] == pytest.approx(other.endpoint_errors[0], abs=1e-6)
    assert other.errors[-1] == pytest.approx(other.endpoint_errors[1], abs=1e-6)
    assert (
        other.endpoint_errors[0] != other.endpoint_errors[1] or other.losses[0] != other.losses[-1]
    )


def test_masks_are_kept_along_the_path_and_the_scan_stops_at_the_first_stable_k():
    ticket = kl.make_prunable(_model())
    ticket.compile(keras.optimizers.SGD(0.2), "sparse_categorical_crossentropy")
    w = ticket.prunable_weights()[0]
    mask = np.random.default_rng(0).random(w.mask.shape) > 0.5
    ticket.set_masks({w.name: mask})
    scan = kl.stable_rewind_point(
        ticket, _data(), candidates=(10, 0), threshold=1.0, steps=30, batch_size=20, points=3
    )
    assert scan.stable == 0 and list(scan.results) == [0]  # threshold 1: k=0 is stable
    assert np.all(np.array(w.kernel)[~mask] == 0)
    with pytest.raises(ValueError, match="steps"):
        kl.instability(ticket, _data(), rewind_to=30, steps=30)


def test_weight_movement_and_connectivity_on_known_masks():
    theta0 = {"a": np.array([[1.0, -1.0], [0.5, 2.0]])}
    trained = {"a": np.array([[3.0, -1.0], [0.5, 2.5]])}
    masks = {"a": np.array([[1, 0], [0, 1]], bool)}
    move = kl.weight_movement(theta0, trained, masks)["a"]
    assert move["mean_move_kept"] == pytest.approx(1.25)  # (2 + 0.5) / 2
    assert move["mean_move_pruned"] == 0.0 and move["move_ratio_kept_over_pruned"] is None
    assert move["mean_abs_initial_pruned"] == pytest.approx(0.75)

    first = np.ones((4, 3), bool)
    first[:, 0] = False  # unit 0: no input
    first[3, :] = False  # input 3 unused
    second = np.ones((3, 2), bool)
    second[1, :] = False  # unit 1: no output
    rows = kl.connectivity({"d1": first, "d2": second})
    assert rows[0]["units_no_input"] == 1 and rows[0]["units_no_output"] == 1
    assert rows[0]["units_dead"] == 2 and rows[0]["inputs_unused"] == 1
    assert rows[0]["in_per_unit_min"] == 0 and rows[0]["in_per_unit_max"] == 3
    assert "units_dead" not in rows[1] and rows[1]["in_per_unit_mean"] == 2.0


def test_cli_stability_prints_each_k_and_writes_the_plot(tmp_path):
    from click.testing import CliRunner
    from keras_lottery_cli.main import cli

    out = tmp_path / "stability.png"
    args = ["stability", "--steps", "20", "--rewind-to", "0", "--rewind-to", "5"]
    result = CliRunner().invoke(cli, [*args, "--points", "3", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "rewind_to=0: instability" in result.output and "rewind_to=5" in result.output
    assert "earliest stable k" in result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(cli, ["stability", "--steps", "5", "--rewind-to", "5"])
    assert bad.exit_code != 0 and "steps" in bad.output

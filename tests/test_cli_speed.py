"""``keras-lottery --backend``, ``find --early-bird`` and ``--steps-per-execution``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from test_cli import TINY, child_env, invoke

import keras_lottery as kl
from keras_lottery.records.checkpoint import committed_record
from keras_lottery.runs import directory as runs
from keras_lottery.zoo import lenet_300_100

SHORT = [*TINY, "--rounds", "1", "--steps", "40", "--eval-every", "10", "-q"]


def test_early_bird_and_steps_per_execution_reach_the_search(tmp_path):
    result = invoke(
        "find", *SHORT, "--early-bird", "--steps-per-execution", "5", "--runs-root", tmp_path
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    config = runs.load_config(run_dir)
    assert config["early_bird"] is True and config["steps_per_execution"] == 5
    record = committed_record(run_dir)
    assert record.config["early_bird"] is not None  # find_ticket got an EarlyBird
    first, final = record.rounds
    assert first.mask_distances, "round 0 checked its mask"
    assert final.iterations == 40  # the final ticket trains in full
    assert all(d["iteration"] % 5 == 0 for d in first.mask_distances)


def test_steps_per_execution_is_not_part_of_the_run_id(tmp_path):
    base = runs.normalize_config({"rounds": 1})
    fast = runs.normalize_config({"rounds": 1, "steps_per_execution": 50})
    assert runs.config_hash(base) == runs.config_hash(fast)
    assert runs.config_hash(base) != runs.config_hash({**base, "early_bird": True})
    with pytest.raises(ValueError, match="early_bird must be true or false"):
        runs.normalize_config({"early_bird": "yes"})
    with pytest.raises(ValueError, match="steps_per_execution"):
        runs.normalize_config({"steps_per_execution": 0})


def test_steps_per_execution_gives_the_same_ticket(tmp_path):
    """Several steps per compiled call change the speed, not the result."""
    masks = []
    for spe in ("1", "5"):
        root = tmp_path / spe
        result = invoke("find", *SHORT, "--steps-per-execution", spe, "--runs-root", root)
        assert result.exit_code == 0, result.output
        (run_dir,) = root.iterdir()
        record = committed_record(run_dir)
        masks.append(record.final.masks)
        assert [r.iterations for r in record.rounds] == [40, 40]
    assert masks[0].keys() == masks[1].keys()
    for name in masks[0]:
        assert (masks[0][name] == masks[1][name]).all(), name


def test_backend_option_refuses_a_backend_keras_is_not_loaded_with():
    result = invoke("--backend", "jax", "list", ".")
    assert result.exit_code == 2
    assert "already loaded with the tensorflow backend" in result.output


@pytest.mark.slow
def test_backend_option_runs_the_search_on_jax(tmp_path):
    script = (
        "from keras_lottery_cli.main import cli\n"
        "import sys\n"
        "cli(sys.argv[1:], standalone_mode=False)\n"
        "import keras\n"
        "print('BACKEND', keras.backend.backend())\n"
    )
    args = ["--backend", "jax", "find", *SHORT, "--runs-root", str(tmp_path)]
    env = {k: v for k, v in child_env().items() if k != "KERAS_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "BACKEND jax" in out.stdout
    (run_dir,) = tmp_path.iterdir()
    assert runs.is_done(run_dir)


@pytest.mark.parametrize(
    "options, what",
    [
        ({"steps": 40, "eval_every": 10}, "the iterations per fit epoch"),
        ({"steps": 42, "eval_every": 8}, "steps"),
        ({"steps": 40, "rewind_to": 3}, "rewind_to"),
        ({"steps": 40, "early_bird": kl.EarlyBird(check_every=6)}, "the early-bird"),
    ],
)
def test_steps_per_execution_that_does_not_divide_is_refused(options, what):
    model = lenet_300_100((28, 28), 10, seed=0)
    config = {**model.get_compile_config(), "steps_per_execution": 4}
    model.compile_from_config(config)
    x = np.zeros((120, 28, 28), "float32")
    y = np.zeros(120, "int64")
    with pytest.raises(ValueError, match=f"steps_per_execution=4 .* must divide {what}"):
        kl.find_ticket(model, (x, y), rounds=1, verbose=0, **options)

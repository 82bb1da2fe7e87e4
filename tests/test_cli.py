"""The ``keras-lottery`` command line: find, resume, sweep, report, export.

Every run is tiny (300 training images, 1 epoch or a few steps per round).
The CLI package lives in ``cli/`` and installs as ``keras_lottery_cli``; without
an install, a symlink in a temporary folder makes it importable (also for the
subprocesses, through PYTHONPATH).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

import keras_lottery
from keras_lottery.records.checkpoint import committed_record
from keras_lottery.runs import directory as runs

ROOT = Path(__file__).resolve().parents[1]
try:
    import keras_lottery_cli  # noqa: F401  (installed)

    SHIM = None
except ImportError:
    SHIM = Path(tempfile.mkdtemp(prefix="keras-lottery-cli-"))
    (SHIM / "keras_lottery_cli").symlink_to(ROOT / "cli", target_is_directory=True)
    sys.path.insert(0, str(SHIM))

    @atexit.register
    def _remove_shim() -> None:
        (SHIM / "keras_lottery_cli").unlink()
        SHIM.rmdir()


from keras_lottery_cli.main import cli  # noqa: E402

TINY = ["--train-size", "300", "--test-size", "100", "--epochs", "1", "--rounds", "2"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT)] + ([str(SHIM)] if SHIM else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    return env


def error_line(result) -> str:
    """The user-facing message: exactly one 'Error: ...' line, no traceback."""
    assert result.exit_code != 0
    text = result.output.strip()
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, text
    return lines[0]


def masks_of(run_dir: Path) -> dict[str, np.ndarray]:
    record = committed_record(run_dir)
    return {f"round{r.round}/{k}": m for r in record.rounds for k, m in r.masks.items()}


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in run_dir.iterdir()}


# -- find ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One finished tiny run (shared by the find, report and export tests)."""
    root = tmp_path_factory.mktemp("runs")
    log = root.parent / "log.jsonl"
    result = invoke("find", *TINY, "--runs-root", root, "--log-jsonl", log, "--quiet")
    assert result.exit_code == 0, result.output
    (run_dir,) = root.iterdir()
    return run_dir, log, result


@pytest.mark.backends
def test_find_writes_a_complete_run_directory(tiny_run):
    run_dir, log, result = tiny_run
    for name in ("config.json", "checkpoint.json", "record.json", "state.npz", "ticket.keras"):
        assert (run_dir / name).is_file(), name
    done = json.loads((run_dir / "DONE").read_text())
    assert done["rounds"] == 3 and done["percent_remaining"] == pytest.approx(64.06, abs=0.1)
    stored = json.loads((run_dir / "config.json").read_text())
    assert run_dir.name == stored["run_id"] == runs.config_hash(stored["config"])
    assert stored["non_default"] == {"train_size": 300, "test_size": 100, "epochs": 1, "rounds": 2}
    assert "Done" in result.output and "Round" not in result.output  # --quiet
    ticket = keras.models.load_model(run_dir / "ticket.keras")
    assert ticket.model.name == "lenet_300_100"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["round", "round", "round", "done"]
    assert [e["round"] for e in events[:3]] == [0, 1, 2]
    assert all(e["test_accuracy"] is not None and e["eta"] >= 0 for e in events[:3])
    assert events[2]["percent_remaining"] == pytest.approx(done["percent_remaining"])


@pytest.mark.backends
def test_find_again_does_not_retrain(tiny_run):
    run_dir, _, _ = tiny_run
    before = snapshot(run_dir)
    t0 = time.perf_counter()
    result = invoke("find", *TINY, "--runs-root", run_dir.parent)
    assert result.exit_code == 0, result.output
    assert "already done" in result.output
    assert time.perf_counter() - t0 < 5
    assert snapshot(run_dir) == before


def test_run_directory_is_the_hash_of_non_default_settings(tmp_path):
    def run_dir(**options):
        return runs.run_dir_for(runs.normalize_config(options), tmp_path)

    assert run_dir() == tmp_path / runs.config_hash({})
    assert run_dir(rate=0.2, strategy="rewind", data_dir="/x") == run_dir()  # defaults
    assert run_dir(seed=1) != run_dir() != run_dir(strategy="reinit")
    assert run_dir(rounds=3, seed=1) == run_dir(seed=1, rounds="3")
    assert len(run_dir().name) == 12


def test_progress_lines(tmp_path):
    has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    tensorboard = ["--tensorboard", tmp_path / "tb"] if has_tensorboard else []
    result = invoke("find", *TINY, "--rounds", "1", "--runs-root", tmp_path, *tensorboard)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(ln.startswith("Round 0/1: training with 100.0% of weights") for ln in lines)
    done = [ln for ln in lines if ln.startswith("Round 1/1 done: 80.0% of weights")]
    assert done and "test acc" in done[0] and "left" in done[0]
    if has_tensorboard:
        assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["round_0", "round_1"]
    else:
        result = invoke("find", "--runs-root", tmp_path / "x", "--tensorboard", tmp_path / "tb")
        assert result.exit_code == 2 and "needs the tensorboard package" in result.output


def test_find_with_a_keras_file(tmp_path):
    inputs = keras.Input((28, 28))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="out")(x)
    keras.Model(inputs, outputs, name="mine").save(tmp_path / "mine.keras")  # not compiled
    args = ["--model", tmp_path / "mine.keras", "--optimizer", "sgd", "--lr", "0.05"]
    args += [*TINY, "--rounds", "1", "--layer-rate", "hidden=0.5", "-q"]
    result = invoke("find", *args, "--runs-root", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = runs.load_config(run_dir)
    assert config["layer_rates"] == {"hidden": 0.5} and config["model_sha256"]
    masks = masks_of(run_dir)
    hidden = next(v for k, v in masks.items() if k.startswith("round1/") and "hidden" in k)
    assert hidden.mean() == pytest.approx(0.5, abs=0.01)
    ticket = keras.models.load_model(run_dir / "ticket.keras")
    assert isinstance(ticket.optimizer, keras.optimizers.SGD)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet"], "Unknown model 'resnet'"),
        (["--model", "missing.keras"], "No such model file"),
        (["--dataset", "no_such_dataset_xyz"], "Could not load dataset 'no_such_dataset_xyz'"),
        (["--dataset", "missing.npz"], "No such dataset file"),
        (["--rate", "1.5"], "rate must be in (0.0, 1.0)"),
        (["--rewind-to", "soon"], "rewind_to must be 'init' or an iteration"),
        (["--scope", "global", "--layer-rate", "dense_1=0.3"], "cannot be combined"),
        (["--layer-rate", "nope=0.3"], "which match no pruned weight"),
        (["--rewind-to", "1000"], "beyond the training length"),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(tmp_path, args, message):
    result = invoke("find", *TINY, *args, "--runs-root", tmp_path, "-q")
    assert message in error_line(result)


def test_bad_option_syntax_is_a_usage_error(tmp_path):
    result = invoke("find", "--layer-rate", "dense_1", "--runs-root", tmp_path)
    assert result.exit_code == 2 and "NAME=RATE" in result.output
    result = invoke("find", "--strategy", "magic", "--runs-root", tmp_path)
    assert result.exit_code == 2 and "rewind" in result.output


# -- structured granularities -----------------------------------------------------


def _final_masks(run_dir: Path) -> dict[str, np.ndarray]:
    last = committed_record(run_dir).rounds[-1]
    return {k: np.asarray(m) for k, m in last.masks.items()}


def test_find_unit_granularity_with_the_l2_criterion_removes_whole_units(tmp_path):
    args = [*TINY, "--rounds", "1", "--rate", "0.5", "--granularity", "unit"]
    result = invoke("find", *args, "--unit-criterion", "l2", "--runs-root", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    config = runs.load_config(run_dir)
    assert config["granularity"] == "unit" and config["unit_criterion"] == "l2"
    masks = _final_masks(run_dir)
    for name, units in (("dense_1/kernel", 300), ("dense_2/kernel", 100)):
        mask = next(m for k, m in masks.items() if k.endswith(name))
        columns = mask.sum(axis=0)  # a removed unit's inputs go: its rows here are all 0
        rows = int(mask.any(axis=1).sum())
        assert set(np.unique(columns)) <= {0, rows}, f"{name}: a partly pruned unit"
        assert (columns > 0).sum() == units // 2, name
    output = next(m for k, m in masks.items() if k.endswith("output/kernel"))
    assert output.any(axis=0).all()  # the output layer keeps its units
    small, report = keras_lottery.compact(keras.models.load_model(run_dir / "ticket.keras"))
    assert list(report.units.values()) == [(300, 150), (100, 50), (10, 10)]
    assert small.count_params() == 784 * 150 + 150 + 150 * 50 + 50 + 50 * 10 + 10


def test_find_n_m_granularity_keeps_at_most_n_of_every_m_inputs(tmp_path):
    args = [*TINY, "--rounds", "1", "--granularity", "2:4"]
    result = invoke("find", *args, "--runs-root", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    assert runs.load_config(run_dir)["granularity"] == "2:4"
    masks = _final_masks(run_dir)
    assert len(masks) == 3
    for name, mask in masks.items():
        fan_in, units = mask.shape
        groups = mask.reshape(fan_in // 4, 4, units).sum(axis=1)  # 784, 300, 100: all % 4 == 0
        assert groups.max() == 2 and (groups == 2).mean() > 0.99, name
        assert mask.mean() == pytest.approx(0.5, abs=0.01), name


@pytest.mark.parametrize("value", ["4:2", "0:4", "2:x", "2:4:8", "blocks"])
def test_bad_granularity_is_a_usage_error(tmp_path, value):
    result = invoke("find", "--granularity", value, "--runs-root", tmp_path)
    assert result.exit_code == 2, result.output
    assert "N:M" in result.output and not list(tmp_path.iterdir())


def test_structured_choices_round_trip_through_the_run_config():
    for options in (
        {"granularity": "unit", "unit_criterion": "l1"},
        {"granularity": "unit", "unit_criterion": "l2"},
        {"granularity": "02:4"},
    ):
        config = runs.normalize_config(options)
        assert runs.normalize_config(json.loads(json.dumps(config))) == config
    assert runs.normalize_config({"granularity": "02:4"})["granularity"] == "2:4"
    for bad in ("3:3", "2:", "unit:4", 2):
        with pytest.raises(ValueError, match="granularity must be one of weight, unit or an N:M"):
            runs.normalize_config({"granularity": bad})
    with pytest.raises(ValueError, match="unit_criterion must be one of"):
        runs.normalize_config({"unit_criterion": "l3"})


# -- resume -------------------------------------------------------------------


def _wait_for_round(run_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    manifest = run_dir / "checkpoint.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (run_dir.parent.parent / "child.log").read_text(errors="replace")
            raise AssertionError(f"the search ended before it could be killed:\n{log[-2000:]}")
        try:
            return json.loads(manifest.read_text())["completed_round"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.02)
    raise AssertionError("no round finished in time")


@pytest.mark.backends
def test_kill_9_then_resume_gives_the_same_ticket(tmp_path):
    options = ["--train-size", "300", "--test-size", "100", "--rounds", "4"]
    options += ["--steps", "40", "--seed", "3"]
    config = runs.normalize_config(
        {"train_size": 300, "test_size": 100, "rounds": 4, "steps": 40, "seed": 3}
    )
    killed = runs.run_dir_for(config, tmp_path / "killed")
    cmd = [sys.executable, "-m", "keras_lottery_cli.main", "find", *options, "-q"]
    with open(tmp_path / "child.log", "wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--runs-root", str(tmp_path / "killed")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
        try:
            completed = _wait_for_round(killed, proc)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert completed >= 0 and not (killed / "DONE").exists()
    completed = runs.completed_round(killed)  # it may have gone on before the kill

    result = invoke("resume", killed)
    assert result.exit_code == 0, result.output
    assert f"Resuming after round {completed}" in result.output
    assert (killed / "DONE").exists()
    # the same config, never interrupted, in another runs root
    result = invoke("find", *options, "--runs-root", tmp_path / "clean", "-q")
    assert result.exit_code == 0, result.output
    clean = tmp_path / "clean" / killed.name
    a, b = masks_of(killed), masks_of(clean)
    assert sorted(a) == sorted(b) and len({k.split("/")[0] for k in a}) == 5
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    rec_a = json.loads((killed / "record.json").read_text())["rounds"]
    rec_b = json.loads((clean / "record.json").read_text())["rounds"]
    assert [r["sparsity"] for r in rec_a] == [r["sparsity"] for r in rec_b]
    assert [r["test_accuracy"] for r in rec_a] == pytest.approx(
        [r["test_accuracy"] for r in rec_b], abs=0.02
    )


def test_resume_errors(tmp_path, tiny_run):
    assert "not a run directory" in error_line(invoke("resume", tmp_path))
    assert "not a directory" in error_line(invoke("resume", tmp_path / "nope"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert "unreadable or corrupt" in error_line(invoke("resume", bad))
    # a corrupt checkpoint is reported, not used
    run_dir, _, _ = tiny_run
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in run_dir.rglob("*"):
        if f.is_file() and f.name not in ("DONE", "ticket.keras"):
            (copy / f.relative_to(run_dir)).parent.mkdir(exist_ok=True)
            (copy / f.relative_to(run_dir)).write_bytes(f.read_bytes())
    fcntl = pytest.importorskip("fcntl")
    with open(copy / ".lock", "a") as lock:  # another process holds the run
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert "in use by another process" in error_line(invoke("resume", copy, "-q"))
    state = copy / "state.npz"
    state.write_bytes(state.read_bytes()[:-100])
    assert "corrupt" in error_line(invoke("resume", copy, "-q"))


@pytest.mark.backends
def test_resume_of_a_finished_run(tiny_run):
    run_dir, _, _ = tiny_run
    before = snapshot(run_dir)
    result = invoke("resume", run_dir)
    assert result.exit_code == 0 and "already done" in result.output
    assert snapshot(run_dir) == before


# -- sweep and report -----------------------------------------------------------

YAML_SPEC = """\
# two strategies x two seeds
base:
  train_size: 300
  test_size: 100
  epochs: 1
  rounds: 2
grid:
  strategy: [rewind, reinit]
  seed: [0, 1]
"""


@pytest.fixture(scope="module")
def yaml_sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    spec = folder / "spec.yaml"
    spec.write_text(YAML_SPEC + "runs_root: runs\n")
    result = invoke("sweep", spec, "-q")
    assert result.exit_code == 0, result.output
    return folder / "runs", spec, result


@pytest.mark.backends
def test_yaml_sweep_runs_the_grid_and_skips_finished_jobs(yaml_sweep):
    root, spec, result = yaml_sweep
    assert "4 jobs, 0 done, 4 to run" in result.output
    dirs = sorted(root.iterdir())
    assert len(dirs) == 4 and all((d / "DONE").exists() for d in dirs)
    configs = [runs.load_config(d) for d in dirs]
    assert {(c["strategy"], c["seed"]) for c in configs} == {
        (s, seed) for s in ("rewind", "reinit") for seed in (0, 1)
    }
    again = invoke("sweep", spec)
    assert again.exit_code == 0 and "4 jobs, 4 done, 0 to run" in again.output
    assert again.output.count("skip (done)") == 4


@pytest.mark.backends
def test_report_table_csv_json_and_plots(yaml_sweep, tmp_path):
    root, _, _ = yaml_sweep
    csv_file, json_file = tmp_path / "r.csv", tmp_path / "r.json"
    result = invoke("report", root, "--output", tmp_path, "--csv", csv_file, "--json", json_file)
    assert result.exit_code == 0, result.output
    assert "rewind" in result.output and "reinit" in result.output
    # the cost table: 2 prunings + the final training of one epoch each, IMP itself
    cost = result.output.split("Cost (from a random network to the trained ticket):")[1]
    assert "x IMP" in cost and cost.count("1.000") == 2, cost
    for name in ("accuracy.png", "early_stop.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1024
    rows = json.loads(json_file.read_text())
    assert sorted((r["group"], r["round"], r["runs"]) for r in rows) == [
        (g, i, 2) for g in ("reinit", "rewind") for i in range(3)
    ]
    csv_lines = csv_file.read_text().splitlines()
    assert csv_lines[0].startswith("group,round,runs,percent_remaining_mean")
    assert len(csv_lines) == 7


@pytest.mark.backends
def test_output_is_one_option_name_across_commands(yaml_sweep, tmp_path):
    """--output/-o wherever a command writes; --out, the old name, works but is not shown."""
    for command in ("report", "export", "stability"):
        shown = invoke(command, "--help").output
        assert "-o, --output" in shown and "--out " not in shown, command
    root, _, _ = yaml_sweep
    old = invoke("report", root, "--out", tmp_path / "old")
    assert old.exit_code == 0, old.output
    assert (tmp_path / "old" / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    both = invoke("report", root, "-o", tmp_path / "a", "--out", tmp_path / "b")
    assert both.exit_code == 2 and "same option" in both.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_report_series_one_line_per_strategy(yaml_sweep, tmp_path):
    from keras_lottery.runs import report

    root, _, _ = yaml_sweep
    loaded = report.load_runs([root])
    rows = report.summarize(loaded)
    figures = report.plot(rows, tmp_path)
    # x: percent of weights remaining after 0, 1, 2 rounds (output layer at 10%)
    expected_x = [r.percent_remaining for r in loaded[0].rounds]
    assert expected_x[0] == 100.0 and expected_x[1] == pytest.approx(80.04, abs=0.01)
    for name in ("accuracy", "early_stop"):
        lines = figures[name].series
        assert sorted(lines) == ["reinit", "rewind"]
        for s in lines.values():
            assert s.x == pytest.approx(expected_x)
            assert all(lo <= y <= hi for lo, y, hi in zip(s.low, s.y, s.high))
    # the accuracy plotted is the early-stop test accuracy, averaged over seeds
    rewind = [r for r in loaded if r.config["strategy"] == "rewind"]
    mean0 = np.mean([r.rounds[0].early_stop_test_accuracy for r in rewind])
    assert figures["accuracy"].series["rewind"].y[0] == pytest.approx(mean0)
    # --json to stdout, --group-by seed gives one line per seed
    result = invoke("report", root, "--json", "-", "--group-by", "seed")
    assert {r["group"] for r in json.loads(result.output)} == {"0", "1"}


def test_json_sweep_in_two_processes(tmp_path):
    spec = {
        "base": {"train_size": 300, "test_size": 100, "steps": 3, "rounds": 1},
        "grid": {"seed": [5, 6]},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    dry = invoke("sweep", path, "--dry-run", "--runs-root", tmp_path / "out")
    assert dry.output.count("todo") == 2 and not (tmp_path / "out").exists()
    both = invoke("sweep", path, "--ray", "--threads", "1", "--runs-root", tmp_path / "out")
    assert both.exit_code == 2 and "--cpus-per-job caps each job's threads" in both.output
    result = invoke("sweep", path, "--jobs", "2", "--runs-root", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert result.output.count("started") == 2 and result.output.count("done in") == 2
    dirs = list((tmp_path / "out").iterdir())
    assert len(dirs) == 2 and all((d / "DONE").exists() for d in dirs)
    assert all((d / "sweep.log").exists() for d in dirs)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("s.yaml", "base:\n  rounds: 2\ngrid:\n  seed: [0, 1\n", "s.yaml: line 5"),
        ("s.yaml", "base:\n  rounds: 2\ngrid:\n  strategyy: [rewind]\n", "line 4: unknown option"),
        ("s.yaml", "base:\n  rounds: 2\nstrategy: rewind\n", "line 3: unknown key 'strategy'"),
        ("s.yaml", "grid:\n  strategy:\n    - rewind\n    - magic\n", "line 4: grid: strategy"),
        ("s.yaml", "base:\n  rate: 2\n", "line 2: base: rate must be in"),
        ("s.yaml", "grid:\n  seed: 3\n", "line 2: grid: seed must be a non-empty list"),
        ("s.yaml", "- 1\n- 2\n", "must be a mapping"),
        ("s.json", '{"base": {"rounds": 2},\n "grid": {"seed": [0 1]}}', "s.json: line 2"),
        ("s.json", '{"base": {"rounds": 2},\n "grid": {"sede": [0]}}', "'sede'"),
    ],
)
def test_malformed_spec(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    line = error_line(invoke("sweep", path, "--dry-run"))
    assert message in line
    if "unknown option" in message:
        assert "did you mean 'strategy'" in line


def test_sweep_reports_failed_jobs(tmp_path):
    spec = tmp_path / "fail.yaml"
    spec.write_text("base: {train_size: 300, layer_rates: {nope: 0.5}}\ngrid: {seed: [0]}\n")
    line = error_line(invoke("sweep", spec, "--runs-root", tmp_path / "runs"))
    assert "1 of 1 jobs failed" in line and "which match no pruned weight" in line


def test_missing_spec(tmp_path):
    assert "No such sweep spec" in error_line(invoke("sweep", tmp_path / "none.yaml"))


# -- export and list ------------------------------------------------------------


@pytest.mark.backends
def test_export(tiny_run, tmp_path):
    run_dir, _, _ = tiny_run
    result = invoke("export", run_dir, "--format", "keras", "--verify-size", "50")
    assert result.exit_code == 0, result.output
    out = run_dir / "export" / "ticket.keras"
    assert out.is_file() and "keras ->" in result.output
    assert "accuracy" in result.output
    target = tmp_path / "t.tflite"
    result = invoke("export", run_dir, "--format", "tflite", "-o", target)
    if importlib.util.find_spec("tensorflow") is None:  # a JAX or PyTorch install
        assert "pip install 'keras-lottery[tensorflow]'" in error_line(result)
        assert not target.exists()
        return
    assert result.exit_code == 0, result.output
    assert target.stat().st_size > 1000
    assert "already exists" in error_line(invoke("export", run_dir, "-o", target))
    assert "not a run directory" in error_line(invoke("export", tmp_path))


def test_export_with_a_fixed_batch_and_keras_int8(tiny_run, tmp_path):
    run_dir, _, _ = tiny_run
    target = tmp_path / "t.tflite"
    result = invoke("export", run_dir, "--batch-size", "1", "--verify-size", "20", "-o", target)
    assert result.exit_code == 0, result.output
    assert "per call of 1" in result.output and "outside XNNPack" not in result.output
    result = invoke("export", run_dir, "--format", "keras-int8", "--verify-size", "20")
    assert result.exit_code == 0, result.output
    assert (run_dir / "export" / "ticket.int8.keras").is_file() and "int8" in result.output
    message = error_line(invoke("export", run_dir, "--format", "keras", "--batch-size", "1"))
    assert "keeps the model's own input shapes" in message


@pytest.mark.backends
def test_list(tiny_run):
    run_dir, _, _ = tiny_run
    result = invoke("list", run_dir.parent)
    assert result.exit_code == 0
    assert f"{run_dir}  done" in result.output and "rounds=2" in result.output

"""Trustworthy runs: crash consistency, fingerprints, bad input, quiet CLI, no leaks.

Every search here is tiny (a few hundred images, a few steps per round).
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_cli import child_env, invoke

import keras_lottery as kl
from keras_lottery.callbacks import DivergenceError
from keras_lottery.records import files
from keras_lottery.records.checkpoint import FingerprintMismatchError, RunDirInUseError
from keras_lottery.runs import directory as runs
from keras_lottery.runs.sweep import SpecError, load_sweep

TINY = ["--train-size", "200", "--test-size", "50", "--steps", "3", "--rounds", "2"]


def tiny_model(seed: int = 0, hidden: int = 16) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.fixture(scope="module")
def small():
    return kl.load_dataset().subset(200, 50)


def no_run_dirs(root: Path) -> bool:
    return not root.exists() or not any(root.iterdir())


# -- crash consistency ---------------------------------------------------------

CRASH_CHILD = textwrap.dedent(
    """
    import json, os, shutil, signal, sys, time, warnings
    from pathlib import Path
    import keras
    import numpy as np
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    from keras_lottery.records import checkpoint
    from keras_lottery.records import files
    from keras_lottery.runs import directory as runs
    from keras_lottery_cli.main import cli

    root, mode = Path(sys.argv[1]), sys.argv[3]
    config = runs.normalize_config(json.loads(sys.argv[2]))

    def result(run_dir, ticket):
        masks = checkpoint.committed_record(run_dir).rounds
        got = [np.array(v) for v in ticket.weights]
        got += [m for r in masks for _, m in sorted(r.masks.items())]
        return np.concatenate([a.ravel() for a in got])

    if mode in ("exit", "kill"):  # end this process for real at commit point k
        if mode == "kill":
            seen = []
            def kill(path):
                seen.append(path)
                if len(seen) == int(sys.argv[4]):
                    os.kill(os.getpid(), signal.SIGKILL)
            files.commit_hook = kill
        runs.run(config, runs.prepare_run(config, root), verbose=0)
        sys.exit(0)

    class Rounds(keras.callbacks.Callback):
        trained = 0
        def on_train_begin(self, logs=None):
            Rounds.trained += 1

    # Copy the run directory at every commit point (before its rename, the temp
    # file written): the state a crash there leaves.  Finish uninterrupted,
    # then resume every copy in this process and compare bitwise.
    run_dir = runs.prepare_run(config, root / "runs")
    snaps, commits = [], []
    def snapshot(path):
        commits.append(path.relative_to(run_dir).as_posix())
        snaps.append(root / f"snap{len(snaps):03d}")
        shutil.copytree(run_dir, snaps[-1])
    files.commit_hook = snapshot
    reference = result(run_dir, runs.run(config, run_dir, verbose=0))
    files.commit_hook = None
    total = config["rounds"] + 1
    bad = []
    for snap in snaps:
        temp = sorted(p.name for p in snap.rglob("*") if files.is_temp_file(p.name))
        done = checkpoint.read_manifest(snap)
        done = -1 if done is None else done["completed_round"]
        Rounds.trained = 0
        problems = []
        try:
            got = result(snap, runs.run(config, snap, callbacks=[Rounds()], verbose=0))
        except Exception as e:  # e.g. a checkpoint that does not load
            bad.append((snap.name, commits[snaps.index(snap)], [f"{type(e).__name__}: {e}"]))
            continue
        if not temp:
            problems.append("no temp file at the crash point")
        if got.tobytes() != reference.tobytes():
            problems.append("result differs")
        if Rounds.trained != total - 1 - done:
            problems.append(f"trained {Rounds.trained} rounds after round {done} committed")
        if not (snap / "DONE").is_file():
            problems.append("no DONE")
        left = [p.name for p in snap.rglob("*") if files.is_temp_file(p.name)]
        left += [p.name for p in snap.glob("round_*") if p.name != f"round_{total - 1}"]
        if left:
            problems.append(f"left behind {left}")
        if problems:
            bad.append((snap.name, commits[snaps.index(snap)], problems))
        shutil.rmtree(snap)
    # Then `keras-lottery resume` in the directories of the real crashes,
    # once the test has seen those children die (it writes crashed.json).
    for _ in range(3000):
        if (root / "crashed.json").exists():
            break
        time.sleep(0.2)
    resumed = []
    for crashed in map(Path, json.loads((root / "crashed.json").read_text())):
        try:
            cli(["resume", str(crashed), "-q"])
        except SystemExit as e:
            assert not e.code, e.code
        got = result(crashed, runs.load_ticket(crashed))
        resumed.append(got.tobytes() == reference.tobytes())
    print(json.dumps({"commits": commits, "bad": bad, "resumed": resumed}))
    """
)


def _crash_child(logs: Path, root: Path, config: dict, mode: str, *args) -> subprocess.Popen:
    """Start CRASH_CHILD in ``mode``; its output goes to ``logs/<mode>.out|.err``."""
    logs.mkdir(exist_ok=True)
    env = {**child_env(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    if mode == "exit":
        env["KERAS_LOTTERY_CRASH_AT"] = str(args[0])
    with open(logs / f"{mode}.out", "w") as out, open(logs / f"{mode}.err", "w") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                CRASH_CHILD,
                str(root),
                json.dumps(config),
                mode,
                *map(str, args),
            ],
            stdout=out,
            stderr=err,
            env=env,
        )


def _finished(proc: subprocess.Popen, logs: Path, mode: str) -> tuple[int, str, str]:
    code = proc.wait(timeout=600)
    return code, (logs / f"{mode}.out").read_text(), (logs / f"{mode}.err").read_text()[-3000:]


@pytest.mark.slow
def test_a_crash_at_every_commit_boundary_resumes_to_the_same_result(tmp_path):
    """A 3-round search crashed at each of its file commits, then resumed.

    Every commit point is replayed from a copy of the run directory at that
    point, all resumed in one child process; two are real crashes of other
    child processes (``os._exit`` inside round 1's files, SIGKILL between
    ``ticket.keras`` and ``DONE``), resumed there with ``keras-lottery resume``.
    """
    model = tiny_model(1, hidden=8)
    model.compile(
        "adam",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=True,  # no tracing: a resume takes about a second
    )
    model.save(tmp_path / "tiny.keras")
    config = {
        "model": str(tmp_path / "tiny.keras"),
        "train_size": 60,
        "test_size": 20,
        "batch_size": 20,
        "rounds": 3,
        "steps": 2,
        "validation_split": 0,
        "seed": 1,
    }
    logs = tmp_path / "logs"
    # commit points of a crash child: config.json, state.npz, then 4 per round
    # (masks, record, manifest, record copy; the final round's trained weights
    # first), then ticket.keras, DONE
    crashes = {"exit": 7, "kill": 21}  # before round_1/masks.npz; before DONE
    children = {m: _crash_child(logs, tmp_path / m, config, m, k) for m, k in crashes.items()}
    snapshots = _crash_child(logs, tmp_path / "snapshots", config, "snapshots")
    try:
        for mode, proc in children.items():
            code, _, err = _finished(proc, logs, mode)
            assert code == {"exit": files.CRASH_EXIT_CODE, "kill": -9}[mode], err
        crashed = [next((tmp_path / m).iterdir()) for m in crashes]
        for run_dir in crashed:
            assert not (run_dir / "DONE").exists()
            assert any(files.is_temp_file(p.name) for p in run_dir.rglob("*"))
        names = json.dumps([str(d) for d in crashed]).encode()
        (tmp_path / "snapshots").mkdir(exist_ok=True)
        files.atomic_write(tmp_path / "snapshots" / "crashed.json", lambda f: f.write(names))
        code, out, err = _finished(snapshots, logs, "snapshots")
    finally:
        for proc in [snapshots, *children.values()]:
            if proc.poll() is None:
                proc.kill()
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    commits = result["commits"]
    assert commits.count("checkpoint.json") == 4 and commits[-2:] == ["ticket.keras", "DONE"]
    assert len(commits) == 20, commits
    assert [commits[k - 2] for k in crashes.values()] == ["round_1/masks.npz", "DONE"]
    assert result["bad"] == []
    assert result["resumed"] == [True, True]  # bitwise the uninterrupted result
    for run_dir in crashed:
        assert (run_dir / "DONE").is_file()
        assert not any(files.is_temp_file(p.name) for p in run_dir.rglob("*"))
        assert sorted(p.name for p in run_dir.glob("round_*")) == ["round_3"]


def test_commit_point_counts_and_hooks(tmp_path):
    seen = []
    files.commit_hook = seen.append
    try:
        files.atomic_write(tmp_path / "a.json", lambda f: f.write(b"{}"))
        files.atomic_save(tmp_path / "m.weights.h5", lambda p: Path(p).write_bytes(b"x"))
    finally:
        files.commit_hook = None
    assert [p.name for p in seen] == ["a.json", "m.weights.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "m.weights.h5"]


# -- fingerprints and locks ------------------------------------------------------


def test_a_run_dir_of_another_search_is_refused(small, tmp_path):
    opts = dict(rounds=1, steps=2, seed=0, verbose=0)
    kl.find_ticket(tiny_model(0), small, run_dir=tmp_path, **opts)
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert set(manifest["fingerprint"]) == {"theta0", "data", "options"}
    # the same search again: resumed (finished), not redone
    again = kl.find_ticket(tiny_model(0), small, run_dir=tmp_path, **opts)
    assert len(again.lottery.rounds) == 2
    # moved, and resumed with another verbosity: still the same search
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.copytree(tmp_path, moved)

    class Trained(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise AssertionError("a finished search was trained again")

    kl.find_ticket(
        tiny_model(0), small, run_dir=moved, callbacks=[Trained()], **{**opts, "verbose": 2}
    )
    with pytest.raises(FingerprintMismatchError, match="initial weights") as e:
        kl.find_ticket(tiny_model(7), small, run_dir=tmp_path, **opts)  # another θ0
    assert "use another run_dir" in str(e.value)
    other = kl.Dataset("x", small.x_train[::-1], small.y_train[::-1], small.x_test, small.y_test)
    with pytest.raises(FingerprintMismatchError, match="the data"):
        kl.find_ticket(tiny_model(0), other, run_dir=tmp_path, **opts)
    with pytest.raises(FingerprintMismatchError, match="different configuration"):
        kl.find_ticket(tiny_model(0), small, run_dir=tmp_path, **{**opts, "rate": 0.3})


def test_tf_data_without_a_version_warns_and_an_endless_one_needs_steps(small, tmp_path):
    ds = tf.data.Dataset.from_tensor_slices((small.x_train, small.y_train)).batch(50)
    with pytest.warns(UserWarning, match="data_version"):
        kl.find_ticket(tiny_model(), ds, rounds=1, seed=0, verbose=0, run_dir=tmp_path / "a")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="endless tf.data.Dataset"):
        kl.find_ticket(tiny_model(), ds.repeat(), rounds=1, seed=0, verbose=0)
    assert time.perf_counter() - t0 < 30


def test_the_api_locks_its_run_dir_against_other_processes(small, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".lock", "a") as lock:  # held by "another process"
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunDirInUseError, match="in use by another process"):
            kl.find_ticket(tiny_model(), small, rounds=1, steps=2, verbose=0, run_dir=tmp_path)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rate="0.2"), "rate must be in"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(eval_every=-1), "eval_every must be a positive integer"),
        (dict(validation_split="0.1"), "validation_split must be in"),
    ],
)
def test_api_option_errors_are_one_line(small, kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        kl.find_ticket(tiny_model(), small, rounds=1, steps=2, verbose=0, **kwargs)
    assert "\n" not in str(e.value)


# -- divergence ----------------------------------------------------------------------


def test_a_diverging_search_is_marked_failed_and_never_done(tmp_path):
    root = tmp_path / "runs"
    result = invoke("find", *TINY, "--lr", "1e30", "--runs-root", root, "-q")
    assert result.exit_code == 1, result.output
    assert "diverged" in result.output and "Traceback" not in result.output
    (run_dir,) = root.iterdir()
    assert not (run_dir / "DONE").exists() and not (run_dir / "ticket.keras").exists()
    assert "diverged" in runs.failure_reason(run_dir)
    listing = invoke("list", root)
    assert "failed" in listing.output and "diverged" in listing.output


def test_check_divergence_needs_a_dense_net_that_learned():
    from keras_lottery.callbacks import check_divergence
    from keras_lottery.records.record import RoundRecord

    def rd(r, acc):
        return RoundRecord(round=r, sparsity=0.0, layer_sparsity={}, train_accuracy=acc)

    check_divergence([rd(0, 0.12), rd(1, 0.1)], 0.1)  # never learned: not divergence
    check_divergence([rd(0, 0.9), rd(1, 0.6)], 0.1)
    with pytest.raises(DivergenceError, match="at chance"):
        check_divergence([rd(0, 0.9), rd(1, 0.1)], 0.1)


# -- resources --------------------------------------------------------------------------


def test_thread_count_is_stable_across_rounds(small):
    class Threads(keras.callbacks.Callback):
        counts: list[int] = []

        def on_train_end(self, logs=None):
            Threads.counts.append(len(os.listdir("/proc/self/task")))

    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs /proc")
    kl.find_ticket(tiny_model(), small, rounds=5, steps=3, seed=0, verbose=0, callbacks=[Threads()])
    assert len(Threads.counts) == 6
    assert Threads.counts[5] == Threads.counts[1], Threads.counts


HELP_CHILD = textwrap.dedent(
    """
    import json, sys
    from click.testing import CliRunner
    from keras_lottery_cli.main import COMMANDS, cli
    heavy = ("tensorflow", "keras", "keras_lottery", "ray", "jax", "matplotlib", "numpy")
    imported = {}
    for args in [["--help"], ["--version"]] + [[name, "--help"] for name in COMMANDS]:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.output or "version" in result.output, result.output
        imported[" ".join(args)] = sorted({m.split(".")[0] for m in sys.modules} & set(heavy))
    print(json.dumps(imported))
    """
)


def test_help_of_every_command_does_not_import_tensorflow():
    from keras_lottery_cli.main import COMMANDS

    proc = subprocess.run(
        [sys.executable, "-c", HELP_CHILD], capture_output=True, text=True, env=child_env()
    )
    assert proc.returncode == 0, proc.stderr
    imported = json.loads(proc.stdout)
    assert {f"{name} --help" for name in COMMANDS} <= set(imported)
    assert {args: mods for args, mods in imported.items() if mods} == {}


def test_cli_choices_mirror_the_library():
    """cli/choices.py copies the library's constants (so --help needs no TensorFlow)."""
    from keras_lottery_cli import choices
    from keras_lottery_cli.export import export as export_command
    from keras_lottery_cli.find import find as find_command

    from keras_lottery import zoo
    from keras_lottery.criteria import magnitude
    from keras_lottery.data.datasets import DEFAULT_DATASET
    from keras_lottery.export import FORMATS
    from keras_lottery.search import loop as search

    assert choices.DEFAULTS == runs.DEFAULTS
    assert choices.DEFAULTS["dataset"] == DEFAULT_DATASET
    assert choices.MODELS == tuple(zoo.MODELS)
    assert choices.STRATEGIES == search.STRATEGIES
    assert choices.SCOPES == search.SCOPES
    assert choices.GRANULARITIES == search.GRANULARITIES
    assert choices.UNIT_CRITERIA == magnitude.FILTER_CRITERIA
    assert choices.EXPORT_FORMATS == tuple(FORMATS)
    # and the commands use them: find's choices and defaults, export's formats
    params = {p.name: p for p in find_command.params}
    for name, allowed in [
        ("strategy", search.STRATEGIES),
        ("scope", search.SCOPES),
        ("granularity", search.GRANULARITIES),
        ("unit_criterion", magnitude.FILTER_CRITERIA),
    ]:
        assert tuple(params[name].type.choices) == allowed, name
    defaults = {
        name: p.default
        for name, p in params.items()
        if isinstance(p.default, str | int | float) and not isinstance(p.default, bool)
    }
    assert set(runs.DEFAULTS) - set(params) == set(), "a run option without a find option"
    assert {k: runs.DEFAULTS[k] for k in defaults if k in runs.DEFAULTS} == {
        k: v for k, v in defaults.items() if k in runs.DEFAULTS
    }
    assert len(defaults) >= 10, defaults
    (fmt,) = [p for p in export_command.params if p.name == "format_"]
    assert tuple(fmt.type.choices) == tuple(FORMATS)


# -- bad input: one line, the right exit code, no run directory left ---------------------


def _idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (20, 28, 28)), rng.integers(0, 10, 20)

    def idx_folder(name, **broken):
        f = d / name
        f.mkdir()
        for stem, arr in [
            ("train-images-idx3-ubyte", images),
            ("train-labels-idx1-ubyte", labels),
            ("t10k-images-idx3-ubyte", images),
            ("t10k-labels-idx1-ubyte", labels),
        ]:
            _idx(f / stem, arr)
        for stem, content in broken.items():
            (f / f"{stem.replace('_', '-')}.gz").write_bytes(content)
        return f

    good_gz = (d / "x").with_suffix("")
    _idx(good_gz, images)
    full = (d / "x.gz").read_bytes()
    paths = {
        "truncated_gz": idx_folder("trunc", train_images_idx3_ubyte=full[: len(full) // 2]),
        "corrupt_gz": idx_folder("corrupt", train_images_idx3_ubyte=b"\x1f\x8b" + b"junk" * 50),
        "bad_magic": idx_folder("magic", train_images_idx3_ubyte=gzip.compress(b"\x01\x02\x03")),
        "short_labels": idx_folder(
            "short",
            train_labels_idx1_ubyte=gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 5]) + bytes(5)),
        ),
        "missing_file": d / "missing",
        "npz_garbage": d / "garbage.npz",
        "npz_missing": d / "missing_arrays.npz",
        "npz_pickle": d / "pickle.npz",
        "npz_lengths": d / "lengths.npz",
        "not_npz": d / "data.csv",
        "model_garbage": d / "garbage.keras",
        "model_zip": d / "zip.keras",
        "spec_bomb": d / "bomb.yaml",
        "spec_big": d / "big.yaml",
        "spec_bad": d / "bad.yaml",
    }
    paths["missing_file"].mkdir()
    paths["npz_garbage"].write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(paths["npz_missing"], x_train=images)
    np.savez(
        paths["npz_pickle"],
        x_train=np.array([object()] * 2, dtype=object),
        y_train=labels,
        x_test=images,
        y_test=labels,
    )
    np.savez(paths["npz_lengths"], x_train=images, y_train=labels[:5], x_test=images, y_test=labels)
    paths["not_npz"].write_text("1,2,3\n")
    paths["model_garbage"].write_bytes(b"not a keras file")
    import zipfile

    with zipfile.ZipFile(paths["model_zip"], "w") as z:
        z.writestr("config.json", '{"class_name": "Lambda", "config": {}}')
    bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    bomb += [
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]"
        for p, c in zip("abcdefgh", "bcdefghi")
    ]
    paths["spec_bomb"].write_text("\n".join(bomb) + "\nbase: *i\n")
    paths["spec_big"].write_text("# " + "x" * (2 << 20) + "\nbase: {}\n")
    paths["spec_bad"].write_text("base: {rounds: 2\n")
    return paths


BAD_FIND = [
    # (args, message, exit code)
    (["--batch-size", "0"], "--batch-size", 2),
    (["--eval-every", "-1"], "--eval-every", 2),
    (["--rounds", "0"], "--rounds", 2),
    (["--steps", "0"], "--steps", 2),
    (["--epochs", "0"], "--epochs", 2),
    (["--train-size", "-5"], "--train-size", 2),
    (["--rate", "1.5"], "rate must be in", 2),
    (["--rate", "nan"], "rate must be a finite number", 2),
    (["--lr", "-1"], "lr must be in", 2),
    (["--validation-split", "1"], "validation_split must be in", 2),
    (["--rewind-to", "soon"], "rewind_to must be 'init'", 2),
    (["--model", "nope"], "Unknown model 'nope'", 2),
    (["--model", "missing.keras"], "No such model file", 2),
    (["--strategy", "magic"], "Invalid value for '--strategy'", 2),
    (["--log-jsonl", "no/such/folder/log.jsonl"], "does not exist", 2),
    (["--dataset", "{truncated_gz}"], "corrupt or truncated gzip", 1),
    (["--dataset", "{corrupt_gz}"], "corrupt or truncated gzip", 1),
    (["--dataset", "{bad_magic}"], "bad magic number", 1),
    (["--dataset", "{short_labels}"], "20 train images but 5 train labels", 1),
    (["--dataset", "{missing_file}"], "has no train-images-idx3-ubyte", 1),
    (["--dataset", "{npz_garbage}"], "not a readable .npz", 1),
    (["--dataset", "{npz_missing}"], "lacks arrays", 1),
    (["--dataset", "{npz_pickle}"], "not a readable .npz", 1),
    (["--dataset", "{npz_lengths}"], "they must match", 1),
    (["--dataset", "{not_npz}"], "is a file but not a .npz", 1),
    (["--dataset", "no/such/folder"], "No such dataset folder", 1),
    (["--model", "{model_garbage}"], "is not a loadable .keras model", 1),
    (["--model", "{model_zip}"], "is not a loadable .keras model", 1),
]


@pytest.mark.parametrize("args,message,code", BAD_FIND, ids=[" ".join(a) for a, _, _ in BAD_FIND])
def test_bad_find_input(tmp_path, bad_files, monkeypatch, args, message, code):
    args = [a.format(**{k: str(v) for k, v in bad_files.items()}) for a in args]
    root = tmp_path / "runs"
    monkeypatch.chdir(tmp_path)  # relative paths (the missing model/log) resolve here
    result = invoke("find", *TINY, *args, "--runs-root", root, "-q")
    assert result.exit_code == code, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if "Error" in ln]) == 1, result.output
    assert no_run_dirs(root), list(root.iterdir())


def test_sweep_alias_bomb_is_refused_fast_with_little_memory(bad_files):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match="aliases"):
        load_sweep(bad_files["spec_bomb"])
    assert time.perf_counter() - t0 < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
    result = invoke("sweep", bad_files["spec_bomb"])
    assert result.exit_code == 1 and "aliases" in result.output


@pytest.mark.parametrize("spec,message", [("spec_big", "at most"), ("spec_bad", "line")])
def test_bad_sweep_specs(bad_files, spec, message):
    result = invoke("sweep", bad_files[spec])
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output


def test_run_directory_errors(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    result = invoke("find", *TINY, "--runs-root", root, "-q")
    assert result.exit_code == 0, result.output
    (run_dir,) = root.iterdir()
    done = json.loads((run_dir / "DONE").read_text())
    assert done["ticket_sha256"] == files.file_sha256(run_dir / "ticket.keras")
    # export --name never leaves the export folder
    result = invoke("export", run_dir, "--format", "keras", "--name", "../../x")
    assert result.exit_code == 1 and "plain file name" in result.output
    assert not (tmp_path / "x.keras").exists() and not (run_dir / "export").exists()
    # one corrupt run among good ones: report and list skip it with a warning
    bad = root / "corrupt"
    bad.mkdir()
    (bad / "config.json").write_text("{nope")
    listing = invoke("list", root)
    assert (
        listing.exit_code == 0 and "skipping" in listing.output and run_dir.name in listing.output
    )
    report = invoke("report", root)
    assert report.exit_code == 0 and "skipping" in report.output, report.output
    # a tampered ticket is never loaded: export rebuilds it from the checkpoint first
    ticket = run_dir / "ticket.keras"
    ticket.write_bytes(ticket.read_bytes()[:-10] + b"0123456789")
    result = invoke("export", run_dir, "--format", "keras")
    assert result.exit_code == 0 and "checksum" in result.output and "rebuilding" in result.output
    assert runs.ticket_problem(run_dir) is None
    # --debug: the exception itself, not a one-line message
    for name in ("KERAS_LOTTERY_DEBUG", "KERAS_LOTTERY_VERBOSE"):
        monkeypatch.delenv(name, raising=False)  # restored after the test
    with pytest.raises(runs.RunError, match="not a directory"):
        invoke("--debug", "resume", tmp_path / "nope")


def test_no_half_made_run_directory_after_an_interrupted_first_round(tmp_path, monkeypatch):
    config = runs.normalize_config({"train_size": 100, "test_size": 20, "steps": 2, "rounds": 1})
    run_dir = runs.prepare_run(config, tmp_path)

    class Stop(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runs.run(config, run_dir, callbacks=[Stop()], verbose=0)
    assert not run_dir.exists()


def test_an_export_carries_its_checksum(tmp_path):
    root = tmp_path / "runs"
    assert invoke("find", *TINY, "--runs-root", root, "-q").exit_code == 0
    (run_dir,) = root.iterdir()
    result = invoke("export", run_dir, "--format", "keras", "--verify-size", "10")
    assert result.exit_code == 0, result.output
    digest = (run_dir / "export" / "ticket.keras.sha256").read_text().split()[0]
    assert digest == files.file_sha256(run_dir / "export" / "ticket.keras")
    assert f"sha256 {digest}" in result.output

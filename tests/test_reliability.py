"""Trustworthy runs: crash consistency, fingerprints, bad input, quiet CLI, no leaks.

Every search here is tiny (a few hundred images, a few steps per round).
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_cli import ROOT, child_env, invoke

import keras_lottery as kl
from keras_lottery import files, runs
from keras_lottery.callbacks import DivergenceError
from keras_lottery.checkpoint import FingerprintMismatchError, RunDirInUseError
from keras_lottery.sweep import SpecError, load_sweep

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
    import json, os, shutil, sys
    from pathlib import Path
    import numpy as np
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    from keras_lottery import checkpoint, files, runs

    root = Path(sys.argv[1])
    config = runs.normalize_config(json.loads(sys.argv[2]))

    def result(run_dir, ticket):
        masks = checkpoint.committed_record(run_dir).rounds
        return [np.array(v) for v in ticket.weights] + [
            m for r in masks for _, m in sorted(r.masks.items())
        ]

    if sys.argv[3] == "crash":  # KERAS_LOTTERY_CRASH_AT ends this process at a boundary
        runs.run(config, runs.prepare_run(config, root), verbose=0)
        sys.exit(0)
    # "snapshots": copy the run directory at every commit boundary (the state a
    # crash there leaves), finish, then resume every copy and compare bitwise.
    run_dir = runs.prepare_run(config, root / "runs")
    snaps = []

    def snapshot(path):
        snaps.append(root / f"snap{len(snaps):03d}")
        shutil.copytree(run_dir, snaps[-1])

    files.commit_hook = snapshot
    reference = result(run_dir, runs.run(config, run_dir, verbose=0))
    files.commit_hook = None
    bad = []
    for snap in snaps:
        temp = [p.name for p in snap.rglob("*.tmp*")]
        got = result(snap, runs.run(config, snap, verbose=0))
        same = len(got) == len(reference) and all(
            a.shape == b.shape and a.tobytes() == b.tobytes() for a, b in zip(got, reference)
        )
        left = [p.name for p in snap.rglob("*") if files.is_temp_file(p.name)]
        if not same or left or not (snap / "DONE").exists():
            bad.append((snap.name, same, left))
        np.save(snap / "result.npy", np.concatenate([a.ravel() for a in got]))
    np.save(root / "reference.npy", np.concatenate([a.ravel() for a in reference]))
    print(json.dumps({"boundaries": len(snaps), "bad": bad}))
    """
)

CRASH_CONFIG = {
    "train_size": 120,
    "test_size": 40,
    "rounds": 3,
    "steps": 3,
    "validation_split": 0,
    "seed": 1,
}


def _child(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, *map(str, args)],
        capture_output=True,
        text=True,
        env={**child_env(), **(env or {})},
        timeout=timeout,
    )


@pytest.mark.slow
def test_a_crash_at_every_commit_boundary_resumes_to_the_same_result(tmp_path):
    spec = json.dumps(CRASH_CONFIG)
    proc = _child(tmp_path, spec, "snapshots")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # 3-round search: state + 4 rounds x (weights, masks, record, manifest, record copy),
    # then ticket.keras and DONE
    assert out["boundaries"] >= 20
    assert out["bad"] == []
    # a real os._exit at two boundaries (inside round 1's files; between ticket and DONE)
    reference = np.load(tmp_path / "reference.npy")
    for k in (9, out["boundaries"]):
        root = tmp_path / f"crash{k}"
        proc = _child(root, spec, "crash", env={"KERAS_LOTTERY_CRASH_AT": str(k)})
        assert proc.returncode == files.CRASH_EXIT_CODE, proc.stderr[-2000:]
        (run_dir,) = root.iterdir()
        assert not (run_dir / "DONE").exists()
        assert any(files.is_temp_file(p.name) for p in run_dir.rglob("*"))
        result = invoke("resume", run_dir, "-q")
        assert result.exit_code == 0, result.output
        assert not any(files.is_temp_file(p.name) for p in run_dir.rglob("*"))
        ticket = runs.load_ticket(run_dir)
        masks = kl.checkpoint.committed_record(run_dir).rounds
        got = [np.array(v) for v in ticket.weights]
        got += [m for r in masks for _, m in sorted(r.masks.items())]
        assert np.concatenate([a.ravel() for a in got]).tobytes() == reference.tobytes()


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
    from keras_lottery.record import RoundRecord

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


def test_help_does_not_import_tensorflow():
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from click.testing import CliRunner\n"
        "from keras_lottery_cli.main import cli\n"
        "for args in (['--help'], ['find', '--help'], ['resume', '--help'], "
        "['export', '--help'], ['list', '--help'], ['report', '--help']):\n"
        "    r = CliRunner().invoke(cli, args)\n"
        "    assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'keras_lottery')), time.perf_counter() - t)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    modules, _ = proc.stdout.rsplit(" ", 1)
    assert modules == "[]"


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
    # a tampered ticket is refused on load
    ticket = run_dir / "ticket.keras"
    ticket.write_bytes(ticket.read_bytes()[:-10] + b"0123456789")
    result = invoke("export", run_dir, "--format", "keras")
    assert result.exit_code == 1 and "checksum" in result.output
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

"""One find_ticket across two worker processes (tf.distribute.MultiWorkerMirroredStrategy).

Two local workers (TF_CONFIG on free localhost ports) run this file as a
script; each reports its masks as JSON.  They must equal a single-process run
of the same global batch in every round, and only the chief may write its run
directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = dict(rounds=2, rate=0.5, seed=0, verbose=0, epochs=2, batch_size=32, eval_every=5)


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(320, 12)).astype("float32")
    return x, x[:, :3].argmax(1).astype("int64")


def model():
    import keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(24, activation="relu"), keras.layers.Dense(3)]
    )
    m.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return m


def search(run_dir=None):
    import keras_lottery as kl

    x, y = data()
    return kl.find_ticket(
        model(), (x, y), validation_data=(x[:64], y[:64]), run_dir=run_dir, **OPTIONS
    )


def round_masks(ticket) -> list[list[list]]:
    """Each round's masks, in layer order (names carry a per-process counter)."""
    return [[np.asarray(v).tolist() for v in r.masks.values()] for r in ticket.lottery.rounds]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def workers(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("multiworker")
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    procs = []
    for index in range(2):
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        env.update(
            PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
            TF_CPP_MIN_LOG_LEVEL="3",
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            KERAS_BACKEND="tensorflow",
        )
        cmd = [sys.executable, __file__, str(folder / f"run_{index}")]
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    reports = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("the two workers did not finish within 5 minutes")
        assert proc.returncode == 0, err[-4000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    for index, report in enumerate(reports):
        report["run_dir"] = folder / f"run_{index}"
    return reports


@pytest.mark.multiworker
def test_two_workers_find_the_masks_of_one_process(workers):
    assert [w["workers"] for w in workers] == [2, 2]
    assert [w["chief"] for w in workers] == [True, False]
    single = round_masks(search())
    for w in workers:
        assert len(w["masks"]) == len(single) == OPTIONS["rounds"] + 1
        for r, (theirs, ours) in enumerate(zip(w["masks"], single)):
            assert len(theirs) == len(ours) == 2
            for i, (a, b) in enumerate(zip(theirs, ours)):
                differ = int((np.array(a) != np.array(b)).sum())
                assert differ == 0, f"round {r}, layer {i}: {differ} mask entries differ"


@pytest.mark.multiworker
def test_only_the_chief_writes_its_run_directory(workers):
    chief, other = (w["run_dir"] for w in workers)
    assert (chief / "checkpoint.json").is_file()
    assert json.loads((chief / "checkpoint.json").read_text())["completed_round"] == 2
    assert not other.exists() or not any(other.iterdir())


def test_is_chief_follows_tensorflows_convention():
    from types import SimpleNamespace

    from keras_lottery.data.distributed import is_chief

    def strategy(task_type, task_id, cluster):
        spec = SimpleNamespace(as_dict=lambda: cluster)
        resolver = SimpleNamespace(task_type=task_type, task_id=task_id, cluster_spec=lambda: spec)
        return SimpleNamespace(cluster_resolver=resolver)

    workers = {"worker": ["a:1", "b:2"]}
    with_chief = {"chief": ["c:3"], **workers}
    assert is_chief()  # no strategy: this process is its own chief
    assert is_chief(strategy("worker", 0, workers))
    assert not is_chief(strategy("worker", 1, workers))
    assert not is_chief(strategy("worker", 0, with_chief))
    assert is_chief(strategy("chief", 0, with_chief))
    assert not is_chief(strategy("evaluator", 0, with_chief))


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_non_chief_resumes_from_the_run_directory_and_never_writes(tmp_path, monkeypatch):
    import keras_lottery.search.loop

    chief = search(tmp_path / "run")
    before = _files(tmp_path / "run")
    monkeypatch.setattr(keras_lottery.search.loop, "is_chief", lambda: False)
    resumed = search(tmp_path / "run")  # every round is checkpointed: nothing to train
    assert round_masks(resumed) == round_masks(chief)
    assert _files(tmp_path / "run") == before
    fresh = search(tmp_path / "other")  # trains every round, writes nothing
    assert round_masks(fresh) == round_masks(chief)
    assert not (tmp_path / "other").exists()


def _worker(run_dir: str) -> dict:  # pragma: no cover - runs in the subprocesses
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from keras_lottery.data.distributed import is_chief, patch_keras_multi_worker

    patch_keras_multi_worker()
    with strategy.scope():
        ticket = search(run_dir)
        chief = is_chief()
    return {"workers": strategy.num_replicas_in_sync, "chief": chief, "masks": round_masks(ticket)}


def _data_parallel() -> dict:  # pragma: no cover - runs in a JAX subprocess
    import jax
    import keras

    import keras_lottery as kl

    single = search()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    try:
        parallel = search()
    finally:
        keras.distribution.set_distribution(None)
    return {
        "devices": len(jax.devices()),
        "same_masks": round_masks(single) == round_masks(parallel),
        "max_weight_difference": max(
            float(np.abs(np.asarray(a, "float64") - np.asarray(b, "float64")).max())
            for a, b in zip(single.weights, parallel.weights)
        ),
        "mesh": str(kl.prunable_weights(parallel)[0].kernel.value.sharding.mesh.shape),
    }


@pytest.mark.multiworker
def test_jax_data_parallel_on_two_host_devices_finds_the_masks_of_one_device():
    """keras.distribution.DataParallel over two XLA host devices, one global batch."""
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    out = subprocess.run(
        [sys.executable, __file__, "--data-parallel"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 2 and "2" in result["mesh"]
    assert result["same_masks"]  # every round's masks, bitwise
    assert result["max_weight_difference"] < 1e-5


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1] == "--data-parallel":
        print(json.dumps(_data_parallel()))
    else:
        print(json.dumps(_worker(sys.argv[1])))

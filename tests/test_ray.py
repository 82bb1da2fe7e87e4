"""Sweeps on Ray: same masks as ``--jobs 1``, killed tasks resume, clear errors.

One local Ray instance (two CPUs) serves the module; every job is tiny.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from keras_lottery.runs import directory as runs
from keras_lottery.runs import executors
from keras_lottery.runs.executors import ExecutorError, LocalProcesses, RayCluster, run_sweep
from keras_lottery.runs.sweep import SpecError, load_sweep

TINY = {"train_size": 200, "test_size": 100, "steps": 20, "eval_every": 10, "rounds": 2}


def write_spec(folder: Path, base: dict, grid: dict, name="sweep.json", **extra) -> Path:
    path = folder / name
    path.write_text(json.dumps({"base": base, "grid": grid, **extra}))
    return path


def masks(run_dir: Path) -> dict[str, np.ndarray]:
    """The masks of every round (the last checkpoint's masks.npz)."""
    (path,) = run_dir.glob("**/masks.npz")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray", reason='needs the ray extra: pip install "keras-lottery[ray]"')
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def _pid_holding(path: Path) -> int | None:
    """The process (not this one) with ``path`` open, from /proc."""
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fd_dir.parent.name)
        if pid == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                return pid
        except OSError:
            continue
    return None


@pytest.mark.ray
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker in /proc")
def test_ray_sweep_equals_jobs_1_and_a_killed_task_resumes(ray, tmp_path):
    spec = write_spec(tmp_path, TINY, {"seed": [0, 1], "rate": [0.2, 0.5]})
    local = run_sweep(spec, runs_root=tmp_path / "local", executor=LocalProcesses(1))
    assert local.ok and len(local.plan.jobs) == 4

    # The first job's Ray task is killed (SIGKILL to its worker) after a round.
    target = (tmp_path / "ray" / local.plan.jobs[0].run_dir.name).resolve()
    killed: dict = {}

    def kill_after_a_round():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "pid" not in killed:
            if (target / "checkpoint.json").exists() and not runs.is_done(target):
                completed = runs.completed_round(target)
                pid = _pid_holding(target / executors.LOG_FILE)
                if pid is not None and completed < TINY["rounds"]:
                    killed.update(pid=pid, round=completed)
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_after_a_round, daemon=True)
    watcher.start()
    lines: list[str] = []
    result = run_sweep(
        spec,
        runs_root=tmp_path / "ray",
        executor=RayCluster(max_retries=2),
        echo=lambda line, err=False: lines.append(line),
    )
    watcher.join(timeout=5)
    assert result.ok, result.failures
    assert "pid" in killed, "the task finished before it could be killed"
    assert lines[-1].endswith("(4/4 finished)")
    log = (target / executors.LOG_FILE).read_text()
    assert log.count("Starting:") == 1  # the retry resumed, it did not start over
    resumed = [int(ln.split()[3].rstrip(":")) for ln in log.splitlines() if "Resuming" in ln]
    assert resumed and resumed[0] >= killed["round"]  # no checkpointed round redone
    for job in local.plan.jobs:
        on_ray = tmp_path / "ray" / job.run_dir.name
        assert runs.is_done(on_ray)
        a, b = masks(job.run_dir), masks(on_ray)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.ray
def test_ray_and_local_jobs_with_the_same_threads_give_bitwise_the_same_ticket(ray, tmp_path):
    """One thread setting for both executors (thread_caps): a Ray task with one CPU and a
    local job capped at one thread train bitwise the same weights, not just the same masks."""
    spec = write_spec(tmp_path, TINY, {})
    local = run_sweep(spec, runs_root=tmp_path / "local", executor=LocalProcesses(1, threads=1))
    on_ray = run_sweep(spec, runs_root=tmp_path / "ray", executor=RayCluster(cpus_per_job=1))
    assert local.ok and on_ray.ok
    (job,) = local.plan.jobs
    a = runs.load_ticket(job.run_dir).weights
    b = runs.load_ticket(tmp_path / "ray" / job.run_dir.name).weights
    assert len(a) == len(b) and all(np.array_equal(np.array(x), np.array(y)) for x, y in zip(a, b))
    assert "Starting:" in (job.run_dir / executors.LOG_FILE).read_text()  # in its own process


@pytest.mark.ray
def test_ray_refuses_a_job_bigger_than_any_node(ray, tmp_path):
    spec = write_spec(tmp_path, TINY, {})
    with pytest.raises(ExecutorError, match=r"asks for 64 CPUs .* largest node .* has 2"):
        run_sweep(spec, runs_root=tmp_path / "runs", executor=RayCluster(cpus_per_job=64))
    assert not (tmp_path / "runs").exists()  # nothing written


@pytest.mark.ray
def test_ray_refuses_a_runs_root_it_cannot_write(ray, tmp_path):
    spec = write_spec(tmp_path, TINY, {})
    (tmp_path / "file").write_text("")
    with pytest.raises(ExecutorError, match="Cannot write the runs root"):
        run_sweep(spec, runs_root=tmp_path / "file" / "runs", executor=RayCluster())


def test_unreachable_ray_address_fails_fast(tmp_path):
    pytest.importorskip("ray", reason='needs the ray extra: pip install "keras-lottery[ray]"')
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = write_spec(tmp_path, TINY, {})
    t0 = time.monotonic()
    with pytest.raises(
        ExecutorError, match=f"Cannot reach the Ray cluster at ray://127.0.0.1:{port}"
    ):
        run_sweep(spec, runs_root=tmp_path / "runs", executor=RayCluster(f"ray://127.0.0.1:{port}"))
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "runs").exists()


def test_ray_flag_without_ray_gives_the_install_hint(tmp_path, monkeypatch):
    from keras_lottery_cli.main import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = write_spec(tmp_path, TINY, {})
    result = CliRunner().invoke(cli, ["sweep", str(spec), "--ray", "--runs-root", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: Running a sweep on Ray needs ray, which is not installed: "
        "pip install 'keras-lottery[ray]'"
    )
    assert not any(tmp_path.glob("*/config.json"))


def test_spec_resources_are_checked(tmp_path):
    ok = load_sweep(write_spec(tmp_path, TINY, {}, resources={"cpus_per_job": 2}))
    assert ok.resources == {"cpus_per_job": 2}
    with pytest.raises(SpecError, match=r"unknown key 'cpu_per_job'.*did you mean 'cpus_per_job'"):
        load_sweep(write_spec(tmp_path, TINY, {}, resources={"cpu_per_job": 2}))
    with pytest.raises(SpecError, match="gpus_per_job must be a number >= 0"):
        load_sweep(write_spec(tmp_path, TINY, {}, resources={"gpus_per_job": -1}))


def test_thread_env_caps_every_pool_and_keeps_user_settings():
    env = executors.thread_env(1, {"OMP_NUM_THREADS": "3", "XLA_FLAGS": "--xla_dump_to=x"})
    assert env["TF_NUM_INTRAOP_THREADS"] == env["TF_NUM_INTEROP_THREADS"] == "1"
    assert env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["OMP_NUM_THREADS"] == "3"  # set by the user: kept
    assert env["XLA_FLAGS"] == "--xla_dump_to=x --xla_cpu_multi_thread_eigen=false"
    assert "XLA_FLAGS" not in executors.thread_env(4, {})
    # the same caps for local job processes and Ray tasks (only the thread variables)
    caps = executors.thread_caps(1, {"OMP_NUM_THREADS": "3", "HOME": "/x"})
    assert caps == {k: v for k, v in executors.thread_env(1, {"OMP_NUM_THREADS": "3"}).items()}
    with pytest.raises(ValueError, match="threads must be >= 1"):
        executors.thread_env(0, {})


def test_local_processes_cap_each_job_at_its_share_of_the_cores(tmp_path, monkeypatch):
    # The child process environment of a 2-job sweep on 4 cores: 2 threads per job.
    monkeypatch.setattr(executors, "available_cores", lambda: 4)
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    seen = {}

    class Popen:
        def __init__(self, cmd, env, **kwargs):
            seen.update(env)
            self.stdin, self.returncode = open(os.devnull, "wb"), 0

        def poll(self):
            return 0

    monkeypatch.setattr(executors.subprocess, "Popen", Popen)
    spec = write_spec(tmp_path, TINY, {"seed": [0, 1]})
    assert run_sweep(spec, runs_root=tmp_path / "runs", executor=LocalProcesses(2)).ok
    assert seen["TF_NUM_INTRAOP_THREADS"] == seen["OMP_NUM_THREADS"] == "2"

"""Run a sweep's jobs: in this process, in local processes, or as Ray tasks.

>>> run_sweep("sweep.yaml", executor=LocalProcesses(jobs=4))
>>> run_sweep("sweep.yaml", executor=RayCluster("auto", cpus_per_job=2))

Every job is one run directory (:func:`keras_lottery.runs.directory.run_dir_for`, the
same hashed names whatever runs it): finished jobs are skipped and unfinished
ones resume from their last checkpointed round, whichever process or node
picks them up.  A job is a function of its prepared run directory
(:func:`run_job` by default); it must pickle (a module-level function or a
``functools.partial`` of one) to run in another process or on Ray.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from keras_lottery.extras import MissingExtraError, require
from keras_lottery.runs import directory as runs
from keras_lottery.runs.sweep import Sweep, load_sweep

#: Each job's output (and, on failure, its reason in the last line) goes here.
LOG_FILE = "sweep.log"
#: The one-line hint when Ray is asked for but not installed.
#: Name of the Ray tasks that run jobs (their worker's process title is ``ray::<name>``).
RAY_TASK_NAME = "keras-lottery-job"

Job = Callable[[Path], Any]
Echo = Callable[..., None]


class ExecutorError(RuntimeError):
    """An executor cannot run the sweep (unreachable cluster, unwritable runs root, ...)."""


def one_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _print(line: str, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


# -- the job ------------------------------------------------------------------


def run_job(run_dir: str | os.PathLike) -> None:
    """Run or resume the prepared run directory ``run_dir`` (the default job).

    A finished run whose ticket is damaged gets it rebuilt from its checkpoint.
    """
    run_dir = Path(run_dir)
    config = runs.load_config(run_dir)
    completed = runs.completed_round(run_dir)
    problem = runs.ticket_problem(run_dir)
    verb = "Starting" if completed is None else f"Resuming after round {completed}"
    if problem is not None:
        verb = f"Done, but {problem}: {runs.REBUILDING}"
    print(f"{verb}: {run_dir}", flush=True)
    runs.run(config, run_dir, verbose=0)
    print(f"Done: {run_dir}", flush=True)


# -- the plan -----------------------------------------------------------------


@dataclass
class SweepJob:
    """One job of a sweep: its configuration, run directory and grid label."""

    config: dict[str, Any]
    run_dir: Path
    label: str


@dataclass
class SweepPlan:
    """The jobs of a sweep spec under a runs root, and which are finished."""

    spec: Path
    runs_root: Path
    jobs: list[SweepJob]
    todo: list[SweepJob]

    @property
    def done(self) -> int:
        return len(self.jobs) - len(self.todo)


def plan_sweep(spec: str | os.PathLike | Sweep, runs_root: str | os.PathLike | None = None):
    """The jobs of ``spec`` (a path or a loaded :class:`Sweep`); writes nothing.

    ``runs_root`` defaults to the spec's ``runs_root``, else ``runs``.  Jobs with
    the same run directory (configurations differing only in defaults) count once.
    """
    sweep = spec if isinstance(spec, Sweep) else load_sweep(spec)
    root = Path(runs_root or sweep.runs_root or "runs")
    seen: set[Path] = set()
    jobs: list[SweepJob] = []
    for config in sweep.jobs:
        run_dir = runs.run_dir_for(config, root)
        if run_dir in seen:
            continue
        seen.add(run_dir)
        label = " ".join(f"{k}={config[k]}" for k in sweep.grid) or "(base)"
        jobs.append(SweepJob(config, run_dir, label))
    # A finished job whose ticket is damaged is to do: its job rebuilds the ticket.
    todo = [j for j in jobs if not runs.is_done(j.run_dir) or runs.ticket_problem(j.run_dir)]
    return SweepPlan(sweep.path, root, jobs, todo)


@dataclass
class SweepResult:
    """What a sweep did: its plan and the jobs that failed, with their reasons."""

    plan: SweepPlan
    failures: list[tuple[SweepJob, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures


# -- thread caps --------------------------------------------------------------


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


#: The environment variables that size a job's thread pools (see :func:`thread_caps`).
THREAD_VARIABLES = (
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def thread_caps(threads: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that cap a job's thread pools at ``threads``: one setting for every executor.

    TensorFlow's intra-/inter-op pools (``TF_NUM_INTRAOP_THREADS``,
    ``TF_NUM_INTEROP_THREADS``), OpenMP/MKL/OpenBLAS, and with one thread XLA's
    multi-threaded Eigen turned off (``XLA_FLAGS``).  A variable already set in
    ``environ`` (default: this process's) is kept: the user's choice wins.  Local
    job processes and Ray tasks both get exactly these, so a job with the same
    ``threads`` computes bitwise the same on either.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}.")
    environ = os.environ if environ is None else environ
    caps = {name: environ.get(name, str(threads)) for name in THREAD_VARIABLES}
    flags = environ.get("XLA_FLAGS", "")
    flag = "--xla_cpu_multi_thread_eigen"
    if threads == 1 and flag not in flags:
        flags = f"{flags} {flag}=false".strip()
    if flags:
        caps["XLA_FLAGS"] = flags
    return caps


def thread_env(threads: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with :func:`thread_caps` applied."""
    env = dict(os.environ if environ is None else environ)
    env.update(thread_caps(threads, env))
    return env


# -- executors ----------------------------------------------------------------


class Executor(Protocol):
    """Runs prepared jobs.  ``open`` checks everything before any job is written."""

    def open(self, plan: SweepPlan) -> None: ...

    def run(self, jobs: Sequence[SweepJob], job: Job, echo: Echo) -> list[tuple[SweepJob, str]]: ...

    def close(self) -> None: ...


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"


def _child_env(threads: int | None) -> dict[str, str]:
    """The environment of a job process: this import path, and the thread caps."""
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return thread_env(threads, env) if threads else env


@dataclass
class LocalProcesses:
    """Run ``jobs`` jobs at a time on this machine.

    ``jobs=1`` without ``threads`` runs them one after another in this process,
    with the thread pools as they are.  Otherwise each job runs in its own
    Python process (output in ``<run_dir>/sweep.log``) with its thread pools
    capped at ``threads`` (default: the cores divided among the jobs) by
    :func:`thread_caps`, as a Ray task with ``cpus_per_job=threads`` is: the two
    give bitwise the same tickets.
    """

    jobs: int = 1
    threads: int | None = None

    def __post_init__(self):
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}.")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}.")

    def open(self, plan: SweepPlan) -> None:
        pass

    def close(self) -> None:
        pass

    def run(self, jobs, job, echo):
        if self.jobs == 1 and self.threads is None:
            return self._in_process(jobs, job, echo)
        return self._processes(jobs, job, echo)

    def _in_process(self, jobs, job, echo):
        import keras

        failures = []
        for i, item in enumerate(jobs, 1):
            echo(f"[{i}/{len(jobs)}] {item.run_dir}  {item.label}")
            keras.backend.clear_session()  # free the previous job's graphs
            try:
                job(item.run_dir)
            except Exception as e:
                if os.environ.get("KERAS_LOTTERY_DEBUG"):
                    raise
                echo(f"[{i}/{len(jobs)}] failed: {one_line(e)}", err=True)
                failures.append((item, one_line(e)))
        return failures

    def _processes(self, jobs, job, echo):
        payload = pickle.dumps(job)
        threads = self.threads or max(1, available_cores() // self.jobs)
        env = _child_env(threads)
        failures = []
        queue = list(enumerate(jobs, 1))
        running: dict[subprocess.Popen, tuple] = {}
        finished = 0
        try:
            while queue or running:
                while queue and len(running) < self.jobs:
                    i, item = queue.pop(0)
                    cmd = [sys.executable, "-m", "keras_lottery.runs.executors", str(item.run_dir)]
                    with open(item.run_dir / LOG_FILE, "ab") as log:
                        proc = subprocess.Popen(
                            cmd,
                            stdin=subprocess.PIPE,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            env=env,
                        )
                    proc.stdin.write(payload)
                    proc.stdin.close()
                    running[proc] = (i, item, time.perf_counter())
                    echo(f"[{i}/{len(jobs)}] started {item.run_dir}  {item.label}")
                for proc in [p for p in running if p.poll() is not None]:
                    i, item, t0 = running.pop(proc)
                    finished += 1
                    if proc.returncode == 0:
                        echo(
                            f"[{i}/{len(jobs)}] done in {time.perf_counter() - t0:.1f}s "
                            f"{item.run_dir} ({finished}/{len(jobs)} finished)"
                        )
                    else:
                        reason = _last_line(item.run_dir / LOG_FILE)
                        echo(
                            f"[{i}/{len(jobs)}] failed (exit {proc.returncode}): {reason} "
                            f"(log: {item.run_dir / LOG_FILE})",
                            err=True,
                        )
                        failures.append((item, reason))
                time.sleep(0.2)
        finally:
            for proc in running:  # interrupted: stop our children; their runs resume later
                proc.terminate()
            for proc in running:
                proc.wait()
        return failures


def _ray():
    try:
        return require("ray", "Running a sweep on Ray")
    except MissingExtraError as e:
        raise ExecutorError(str(e)) from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (instead of Ray's long retries) when ``host:port`` does not answer."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ExecutorError(
            f"Cannot reach the Ray cluster at {address} ({e}); start it with "
            "`ray start --head` and pass its address, or use --ray local."
        ) from None


def _probe_runs_root(root: str, token: str) -> tuple[str, str | None]:
    """On one node: can it see the driver's token file and write beside it?"""
    host = socket.gethostname()
    path = Path(root)
    if not (path / token).exists():
        return host, f"does not see {root} as the driver does (not a shared file system?)"
    probe = path / f"{token}.{host}.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return host, f"cannot write in {root} ({e.strerror or e})"
    return host, None


def _ray_job(job: Job, run_dir: str) -> dict[str, Any]:
    """A Ray task: run ``job`` on ``run_dir``, output appended to its sweep.log."""
    t0 = time.perf_counter()
    with open(Path(run_dir) / LOG_FILE, "a") as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            job(Path(run_dir))
    return {"seconds": time.perf_counter() - t0, "node": socket.gethostname(), "pid": os.getpid()}


@dataclass
class RayCluster:
    """Run every job as a Ray task.

    Args:
        address: ``"local"`` starts a Ray instance on this machine (``num_cpus``
            cores, default all); ``"auto"`` joins the cluster this machine belongs
            to; ``"ray://host:10001"`` connects with Ray Client.
        cpus_per_job, gpus_per_job: resources each task reserves; its thread
            pools are capped at ``ceil(cpus_per_job)``.
        max_retries: times Ray reruns a task whose worker or node died; the run
            resumes from its last checkpointed round.
        num_cpus: CPUs of a ``"local"`` instance.

    The runs root must be one shared path that every node (and this process)
    sees; :meth:`open` checks that on every node before any job is written.
    """

    address: str = "local"
    cpus_per_job: float = 1
    gpus_per_job: float = 0
    max_retries: int = 3
    num_cpus: int | None = None
    _started: bool = field(default=False, init=False, repr=False)

    def __post_init__(self):
        if self.cpus_per_job <= 0 or self.gpus_per_job < 0 or self.max_retries < 0:
            raise ValueError(
                "cpus_per_job must be > 0, gpus_per_job and max_retries >= 0; got "
                f"{self.cpus_per_job}, {self.gpus_per_job}, {self.max_retries}."
            )

    def open(self, plan: SweepPlan) -> None:
        ray = _ray()
        if self.address != "local":
            _check_reachable(self.address)
        if not ray.is_initialized():  # else: use this process's Ray connection
            options = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
            try:
                if self.address == "local":
                    ray.init(num_cpus=self.num_cpus, **options)
                else:
                    ray.init(address=self.address, **options)
            except Exception as e:
                raise ExecutorError(
                    f"Cannot connect to the Ray cluster at {self.address!r}: {one_line(e)}. "
                    "Start one with `ray start --head` and pass its address, or use --ray local."
                ) from None
            self._started = True
        try:
            self._check_resources(ray)
            self._check_runs_root(ray, plan.runs_root)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False

    def _check_resources(self, ray) -> None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        for key, need, flag in (
            ("CPU", self.cpus_per_job, "cpus_per_job"),
            ("GPU", self.gpus_per_job, "gpus_per_job"),
        ):
            most = max((n["Resources"].get(key, 0) for n in nodes), default=0)
            if need > most:
                raise ExecutorError(
                    f"Each job asks for {need:g} {key}s ({flag}) but the largest node of the "
                    f"Ray cluster has {most:g}; ask for fewer or add bigger nodes."
                )

    def _check_runs_root(self, ray, root: Path) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        root = root.resolve()
        created = not root.exists()
        token = f".keras-lottery-probe-{uuid.uuid4().hex}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            (root / token).write_bytes(b"")
        except OSError as e:
            raise ExecutorError(f"Cannot write the runs root {root} ({e}).") from None
        try:
            probe = ray.remote(num_cpus=0, max_retries=0)(_probe_runs_root)
            refs = [
                probe.options(
                    scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
                ).remote(str(root), token)
                for n in ray.nodes()
                if n.get("Alive")
            ]
            problems = [f"node {h} {p}" for h, p in ray.get(refs, timeout=120) if p]
        finally:
            (root / token).unlink(missing_ok=True)
        if problems:
            if created:
                with contextlib.suppress(OSError):
                    root.rmdir()
            raise ExecutorError(
                f"The runs root must be a path every Ray node can write: {problems[0]}"
                f"{f' (and {len(problems) - 1} more nodes)' if len(problems) > 1 else ''}."
            )

    def run(self, jobs, job, echo):
        ray = _ray()
        remote = ray.remote(max_calls=1)(_ray_job)  # a fresh worker (fresh TF) per job
        env = thread_caps(max(1, math.ceil(self.cpus_per_job)))  # as LocalProcesses(threads=)
        if os.environ.get("KERAS_BACKEND"):  # the driver's backend (`--backend`) for every job
            env["KERAS_BACKEND"] = os.environ["KERAS_BACKEND"]
        options = {
            "name": RAY_TASK_NAME,
            "num_cpus": self.cpus_per_job,
            "num_gpus": self.gpus_per_job,
            "max_retries": self.max_retries,
            "retry_exceptions": False,
            "runtime_env": {"env_vars": env},
        }
        pending = {}
        for i, item in enumerate(jobs, 1):
            ref = remote.options(**options).remote(job, str(item.run_dir.resolve()))
            pending[ref] = (i, item)
            echo(f"[{i}/{len(jobs)}] submitted {item.run_dir}  {item.label}")
        failures = []
        finished = 0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i, item = pending.pop(ref)
                    finished += 1
                    try:
                        info = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        reason = one_line(e.cause) if e.cause is not None else one_line(e)
                    except ray.exceptions.RayError as e:
                        reason = f"{type(e).__name__} after {self.max_retries} retries"
                    else:
                        echo(
                            f"[{i}/{len(jobs)}] done in {info['seconds']:.1f}s on "
                            f"{info['node']} {item.run_dir} ({finished}/{len(jobs)} finished)"
                        )
                        continue
                    echo(
                        f"[{i}/{len(jobs)}] failed: {reason} (log: {item.run_dir / LOG_FILE})",
                        err=True,
                    )
                    failures.append((item, reason))
        finally:
            for ref in pending:  # interrupted: stop the rest; their runs resume later
                ray.cancel(ref, force=True)
        return failures


# -- the sweep ------------------------------------------------------------------


def run_sweep(
    spec: str | os.PathLike | Sweep,
    *,
    runs_root: str | os.PathLike | None = None,
    executor: Executor | None = None,
    job: Job | None = None,
    echo: Echo = _print,
) -> SweepResult:
    """Run every unfinished job of a sweep spec on ``executor``; skip finished ones.

    Args:
        spec: a YAML/JSON sweep spec path or a loaded :class:`~keras_lottery.runs.sweep.Sweep`.
        runs_root: where run directories go [the spec's ``runs_root``, else ``runs``].
        executor: :class:`LocalProcesses` (default, one job at a time in this
            process) or :class:`RayCluster`.
        job: called with each prepared run directory [:func:`run_job`].
        echo: prints a progress line; called as ``echo(line)`` or ``echo(line, err=True)``.

    The executor's checks (cluster reachable, resources, runs root writable
    everywhere) run before any run directory is created.

    Raises:
        ExecutorError: the executor cannot run the sweep; nothing was written.
        SpecError, FileNotFoundError: a bad spec.
    """
    t0 = time.perf_counter()
    plan = plan_sweep(spec, runs_root)
    executor = executor or LocalProcesses()
    job = job or run_job
    for item in plan.jobs:
        if item not in plan.todo:
            echo(f"skip (done) {item.run_dir}  {item.label}")
        elif runs.is_done(item.run_dir):
            echo(f"rebuild (damaged ticket) {item.run_dir}  {item.label}")
    echo(f"Sweep {plan.spec}: {len(plan.jobs)} jobs, {plan.done} done, {len(plan.todo)} to run.")
    result = SweepResult(plan)
    if not plan.todo:
        return result
    if not (isinstance(executor, LocalProcesses) and executor.jobs == 1 and not executor.threads):
        try:
            pickle.dumps(job)
        except Exception as e:
            raise ValueError(
                f"The job {job!r} does not pickle ({one_line(e)}); give a module-level "
                "function or a functools.partial of one."
            ) from None
    executor.open(plan)
    try:
        for item in plan.todo:
            runs.prepare_run(item.config, plan.runs_root)
        result.failures = executor.run(plan.todo, job, echo)
    finally:
        executor.close()
    result.seconds = time.perf_counter() - t0
    return result


def _main(argv: list[str]) -> int:
    """``python -m keras_lottery.runs.executors RUN_DIR``: run the pickled job on stdin."""
    if len(argv) != 2:
        print("usage: python -m keras_lottery.runs.executors RUN_DIR  (a pickled job on stdin)")
        return 2
    job = pickle.loads(sys.stdin.buffer.read())
    try:
        job(Path(argv[1]))
    except Exception as e:
        if os.environ.get("KERAS_LOTTERY_DEBUG"):
            traceback.print_exc()
        print(f"Error: {one_line(e)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))

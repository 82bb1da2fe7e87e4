"""``sweep``: run the cartesian product of a YAML/JSON spec, N processes at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import keras

from keras_lottery import runs
from keras_lottery.sweep import load_sweep

from .errors import user_errors
from .find import execute

LOG_FILE = "sweep.log"


def _label(config: dict[str, Any], keys: list[str]) -> str:
    return " ".join(f"{k}={config[k]}" for k in keys) or "(base)"


def _child_env() -> dict[str, str]:
    """The environment of a job process: this process's import path included."""
    env = dict(os.environ)
    paths = [p or os.getcwd() for p in sys.path]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].strip() if lines else "no output"


def _run_in_process(jobs, quiet, log_jsonl) -> list[str]:
    failures = []
    for i, (config, run_dir, label) in enumerate(jobs, 1):
        click.echo(f"[{i}/{len(jobs)}] {run_dir}  {label}")
        keras.backend.clear_session()  # free the previous job's graphs
        try:
            with user_errors():
                execute(config, run_dir, quiet=quiet, log_jsonl=log_jsonl)
        except click.ClickException as e:
            click.echo(f"[{i}/{len(jobs)}] failed: {e.format_message()}", err=True)
            failures.append(f"{run_dir}: {e.format_message()}")
    return failures


def _run_processes(jobs, n_procs, log_jsonl) -> list[str]:
    failures: list[str] = []
    queue = list(enumerate(jobs, 1))
    running: dict[subprocess.Popen, tuple] = {}
    env = _child_env()
    try:
        while queue or running:
            while queue and len(running) < n_procs:
                i, (_, run_dir, label) = queue.pop(0)
                cmd = [sys.executable, "-m", "keras_lottery_cli.main", "resume", str(run_dir)]
                cmd += ["--quiet"] + (["--log-jsonl", str(log_jsonl)] if log_jsonl else [])
                log = open(run_dir / LOG_FILE, "ab")
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                log.close()
                running[proc] = (i, run_dir, label, time.perf_counter())
                click.echo(f"[{i}/{len(jobs)}] started {run_dir}  {label}")
            for proc in [p for p in running if p.poll() is not None]:
                i, run_dir, label, t0 = running.pop(proc)
                seconds = time.perf_counter() - t0
                if proc.returncode == 0:
                    click.echo(f"[{i}/{len(jobs)}] done in {seconds:.0f}s {run_dir}")
                else:
                    reason = _last_line(run_dir / LOG_FILE)
                    click.echo(
                        f"[{i}/{len(jobs)}] failed (exit {proc.returncode}): {reason} "
                        f"(log: {run_dir / LOG_FILE})",
                        err=True,
                    )
                    failures.append(f"{run_dir}: {reason}")
            time.sleep(0.2)
    finally:
        for proc in running:  # interrupted: stop our children; their runs resume later
            proc.terminate()
        for proc in running:
            proc.wait()
    return failures


@click.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--runs-root",
    type=click.Path(file_okay=False),
    help="Where run directories go [the spec's runs_root, relative to the spec; else runs].",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes at once (>1: each job runs in `keras-lottery resume`, log in the run dir).",
)
@click.option("--dry-run", is_flag=True, help="List the jobs and their run directories only.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (with --jobs 1).")
@click.option(
    "--log-jsonl",
    type=click.Path(dir_okay=False),
    help="Append one JSON object per round of every job to this file.",
)
def sweep(spec, runs_root, jobs, dry_run, quiet, log_jsonl):
    """Run every job of the sweep SPEC (YAML or JSON); finished jobs are skipped.

    \b
    SPEC:
      base: {model: lenet_300_100, rounds: 3, train_size: 1000}
      grid: {seed: [0, 1, 2], strategy: [rewind, reinit]}
      runs_root: runs          # optional

    base holds the options shared by all jobs, named like `find`'s options with
    underscores (--layer-rate becomes layer_rates: {dense_1: 0.3}); grid lists
    values, and the jobs are their cartesian product.
    """
    with user_errors():
        plan = load_sweep(spec)
        root = runs_root or plan.runs_root or "runs"
        seen, todo, done = set(), [], 0
        for config in plan.jobs:
            run_dir = runs.run_dir_for(config, root)
            if run_dir in seen:
                continue
            seen.add(run_dir)
            label = _label(config, list(plan.grid))
            if runs.is_done(run_dir):
                done += 1
                click.echo(f"skip (done) {run_dir}  {label}")
            else:
                if not dry_run:
                    runs.prepare_run(config, root)
                todo.append((config, run_dir, label))
        click.echo(f"Sweep {spec}: {len(seen)} jobs, {done} done, {len(todo)} to run.")
        if dry_run:
            for _, run_dir, label in todo:
                click.echo(f"todo {run_dir}  {label}")
            return
        if log_jsonl:
            log_jsonl = str(Path(log_jsonl).resolve())
    if jobs == 1:
        failures = _run_in_process(todo, quiet, log_jsonl)
    else:
        failures = _run_processes(todo, jobs, log_jsonl)
    if failures:
        raise click.ClickException(
            f"{len(failures)} of {len(todo)} jobs failed; first: {failures[0]}"
        )
    click.echo(f"Sweep done: {len(seen)} runs in {root}.")

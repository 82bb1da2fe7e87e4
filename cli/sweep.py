"""``sweep``: run the cartesian product of a YAML/JSON spec locally or on Ray."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from .errors import user_errors
from .find import execute


def sweep_job(run_dir: Path, quiet: bool = True, log_jsonl: str | None = None) -> None:
    """One job of a sweep: ``keras-lottery resume RUN_DIR`` with its progress output."""
    from keras_lottery.runs import directory as runs

    with user_errors():
        execute(runs.load_config(run_dir), run_dir, quiet=quiet, log_jsonl=log_jsonl)


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
    help="Processes at once (>1: each in its own process with 1/N of the cores' threads, "
    "log in the run dir).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    metavar="N",
    help="Cap each job's thread pools at N, each job in its own process (also with --jobs 1): "
    "the same N as a Ray sweep's --cpus-per-job gives bitwise its tickets.",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run each job as a Ray task: 'local' (the default) starts Ray here, 'auto' joins "
    "this machine's cluster, ray://HOST:PORT connects to one.  Needs keras-lottery[ray].",
)
@click.option(
    "--cpus-per-job",
    type=click.FloatRange(min=0, min_open=True),
    help="CPUs each Ray task reserves (and its thread cap) [the spec's resources, else 1].",
)
@click.option(
    "--gpus-per-job",
    type=click.FloatRange(min=0),
    help="GPUs each Ray task reserves [the spec's resources, else 0].",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Ray reruns a job whose worker or node died; it resumes from its last round.",
)
@click.option("--dry-run", is_flag=True, help="List the jobs and their run directories only.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (with --jobs 1).")
@click.option(
    "--log-jsonl",
    type=click.Path(dir_okay=False),
    help="Append one JSON object per round of every job to this file.",
)
def sweep(
    spec,
    runs_root,
    jobs,
    threads,
    ray_address,
    cpus_per_job,
    gpus_per_job,
    max_retries,
    dry_run,
    quiet,
    log_jsonl,
):
    """Run every job of the sweep SPEC (YAML or JSON); finished jobs are skipped.

    \b
    SPEC:
      base: {model: lenet_300_100, rounds: 3, train_size: 1000}
      grid: {seed: [0, 1, 2], strategy: [rewind, reinit]}
      runs_root: runs          # optional
      resources: {cpus_per_job: 2, gpus_per_job: 0}   # optional, for --ray

    base holds the options shared by all jobs, named like `find`'s options with
    underscores (--layer-rate becomes layer_rates: {dense_1: 0.3}); grid lists
    values, and the jobs are their cartesian product.  With --ray the runs root
    must be a path every node shares; an interrupted sweep resumes when run again.
    """
    from keras_lottery.runs import executors  # imports Keras and its backend: not at start-up
    from keras_lottery.runs.sweep import load_sweep

    with user_errors():
        plan = load_sweep(spec)
        if dry_run:
            todo = executors.plan_sweep(plan, runs_root)
            for item in todo.jobs:
                if item not in todo.todo:
                    click.echo(f"skip (done) {item.run_dir}  {item.label}")
            click.echo(
                f"Sweep {spec}: {len(todo.jobs)} jobs, {todo.done} done, {len(todo.todo)} to run."
            )
            for item in todo.todo:
                click.echo(f"todo {item.run_dir}  {item.label}")
            return
        if ray_address is not None and threads is not None:
            raise click.UsageError(
                "--threads is for local jobs; on Ray, --cpus-per-job caps each job's threads."
            )
        if ray_address is not None:
            executor = executors.RayCluster(
                ray_address,
                cpus_per_job=cpus_per_job or plan.resources.get("cpus_per_job", 1),
                gpus_per_job=gpus_per_job
                if gpus_per_job is not None
                else plan.resources.get("gpus_per_job", 0),
                max_retries=max_retries,
            )
        else:
            executor = executors.LocalProcesses(jobs, threads)
        if log_jsonl:
            log_jsonl = str(Path(log_jsonl).resolve())
        in_processes = jobs > 1 or threads is not None or bool(ray_address)
        job = functools.partial(sweep_job, quiet=quiet or in_processes, log_jsonl=log_jsonl)
        try:
            result = executors.run_sweep(
                plan, runs_root=runs_root, executor=executor, job=job, echo=click.echo
            )
        except executors.ExecutorError as e:
            raise click.ClickException(str(e)) from None
    if result.failures:
        item, reason = result.failures[0]
        raise click.ClickException(
            f"{len(result.failures)} of {len(result.plan.todo)} jobs failed; "
            f"first: {item.run_dir}: {reason}"
        )
    click.echo(f"Sweep done: {len(result.plan.jobs)} runs in {result.plan.runs_root}.")

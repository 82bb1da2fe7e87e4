"""Sweep throughput: ``--jobs 1/2/4`` on an 8-job sweep, Ray's per-job overhead, grid costs.

    PYTHONPATH=. python benchmarks/sweep_scale.py [--steps 300] [--parts jobs,conv6,ray]

A part left out takes its figure from ``--lenet-ms`` / ``--conv6-ms`` (ms per iteration at
one thread, from an earlier run).

Every sweep runs through the command line (``python -m keras_lottery_cli.main``)
into a fresh runs root, so process start-up and TensorFlow import are counted
as a user would see them.  Prints markdown tables for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: The paper's grids: (trials, pruning levels, arms, iterations per round).
GRIDS = {"LeNet-300-100 (MNIST)": (5, 20, 4, 50_000), "Conv-6 (CIFAR-10)": (5, 20, 4, 30_000)}


def cli(*args: str, env: dict | None = None) -> tuple[float, str]:
    """Run ``keras-lottery ARGS``; return (wall seconds, output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "keras_lottery_cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
    )
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"keras-lottery {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return seconds, out.stdout


def spec(folder: Path, name: str, base: dict, seeds: int) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"base": base, "grid": {"seed": list(range(seeds))}}))
    return path


def done(root: Path) -> list[dict]:
    return [json.loads((d / "DONE").read_text()) for d in sorted(root.iterdir()) if d.is_dir()]


def job_seconds(output: str) -> list[float]:
    return [float(s) for s in re.findall(r"done in ([\d.]+)s", output)]


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="Iterations per round.")
    parser.add_argument("--parts", default="jobs,conv6,ray", help="Which measurements to run.")
    parser.add_argument("--lenet-ms", type=float, help="LeNet ms/iteration if 'jobs' is left out.")
    parser.add_argument(
        "--conv6-ms", type=float, help="Conv-6 ms/iteration if 'conv6' is left out."
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="sweep-scale-"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    # 1. --jobs 1/2/4 on 8 LeNet-300-100 jobs (2 training rounds each).
    base = {"train_size": 2000, "test_size": 500, "rounds": 1, "steps": args.steps}
    base["eval_every"] = args.steps
    lenet = spec(tmp, "lenet", base, 8)
    uncapped = {"TF_NUM_INTRAOP_THREADS": "0", "TF_NUM_INTEROP_THREADS": "0"}
    uncapped |= {"OMP_NUM_THREADS": str(cores), "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}
    rows, walls, per_iteration = [], {}, {"2": args.lenet_ms}
    for jobs, env, label in (
        []
        if "jobs" not in parts
        else (
            (1, None, "1"),
            (2, None, "2"),
            (4, None, "4"),
            (4, uncapped, "4, no caps"),
        )
    ):
        root = tmp / f"jobs-{label.replace(', ', '-').replace(' ', '')}"
        wall, _ = cli(
            "sweep", str(lenet), "--runs-root", str(root), "--jobs", str(jobs), "-q", env=env
        )
        walls[label] = wall
        train = [d["seconds_training"] for d in done(root)]
        per_iteration[label] = 1000 * float(np.mean(train)) / (2 * args.steps)
        threads = "all" if jobs == 1 or env else str(max(1, cores // jobs))
        rows.append(
            f"| {label} | {threads} | {wall:.0f} | {walls['1'] / wall:.2f} | "
            f"{per_iteration[label]:.1f} |"
        )
    if rows:
        print(
            f"\n8 LeNet-300-100 jobs, 2 rounds x {args.steps} iterations, batch 60, "
            f"{cores} cores:\n"
        )
        print(
            "| --jobs | threads per job | wall s | speed-up vs --jobs 1 | ms/iteration in a job |"
        )
        print("|---|---|---:|---:|---:|")
        print("\n".join(rows))
        lenet_mb = size_mb(next(p for p in (tmp / "jobs-1").iterdir() if p.is_dir()))
        print(f"Run directory: LeNet-300-100 {lenet_mb:.1f} MB")

    # 2. Conv-6 per-iteration time (random CIFAR-shaped data: speed does not depend on values).
    conv6_ms = args.conv6_ms
    if "conv6" in parts:
        rng = np.random.default_rng(0)
        cifar = tmp / "cifar-shaped.npz"
        np.savez(
            cifar,
            x_train=rng.random((600, 32, 32, 3), dtype=np.float32),
            y_train=rng.integers(0, 10, 600),
            x_test=rng.random((100, 32, 32, 3), dtype=np.float32),
            y_test=rng.integers(0, 10, 100),
        )
        conv = spec(
            tmp, "conv6", {"model": "conv6", "dataset": str(cifar), "rounds": 1, "steps": 30}, 1
        )
        one_thread = {k: "1" for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}
        cli("sweep", str(conv), "--runs-root", str(tmp / "conv6"), "-q", env=one_thread)
        (conv6,) = done(tmp / "conv6")
        conv6_ms = 1000 * conv6["seconds_training"] / 60
        conv6_mb = size_mb(next(p for p in (tmp / "conv6").iterdir() if p.is_dir()))
        print(f"\nConv-6: {conv6_ms:.0f} ms/iteration (batch 60, 1 thread, one job)")
        print(f"Run directory: Conv-6 {conv6_mb:.1f} MB")

    # 3. Ray: a trivial job's wall time as a Ray task vs as a local process.
    ray_row = None
    if "ray" in parts:
        trivial = {"train_size": 120, "test_size": 60, "rounds": 1, "steps": 1}
        trivial |= {"validation_split": 0}
        small = spec(tmp, "trivial", trivial, 4)
        wall_p, out_p = cli("sweep", str(small), "--runs-root", str(tmp / "t-proc"), "--jobs", "2")
        wall_r, out_r = cli("sweep", str(small), "--runs-root", str(tmp / "t-ray"), "--ray")
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import ray; ray.init(num_cpus=2); ray.shutdown()"],
            capture_output=True,
        )
        start = time.perf_counter() - t0
        proc, ray = np.mean(job_seconds(out_p)), np.mean(job_seconds(out_r))
        # 4 jobs, 2 at a time: 2 waves.  A Ray job's own time excludes its worker's start.
        per_job = (wall_r - start - wall_p) / 2
        ray_row = (proc, ray, wall_p, wall_r, start, per_job)
        print("\n4 trivial jobs (1 iteration), 2 at a time:\n")
        print("| executor | mean job s (as the job sees it) | sweep wall s |")
        print("|---|---:|---:|")
        print(f"| local processes (--jobs 2) | {proc:.1f} | {wall_p:.0f} |")
        print(f"| Ray tasks (--ray local) | {ray:.1f} | {wall_r:.0f} |")
        print(f"\nRay per-job overhead {per_job:+.1f} s; starting and stopping Ray {start:.0f} s")

    # 4. The paper's grids: nodes like this machine, one job per core (1 thread each).
    ray_overhead = max(0.0, ray_row[5]) if ray_row else 0.0
    slots_per_node = cores
    print(
        f"\nGrid estimates: nodes like this one ({cores} cores, {cores} jobs of 1 thread each):\n"
    )
    print("| grid | jobs | iterations per job | core-hours | 1 machine | 8 nodes | 64 nodes |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (trials, levels, arms, iterations) in GRIDS.items():
        ms = per_iteration["2"] if name.startswith("LeNet") else conv6_ms
        jobs = trials * arms
        its = (levels + 1) * iterations
        job_hours = (its * ms / 1000 + ray_overhead) / 3600
        cells = []
        for nodes in (1, 8, 64):
            waves = math.ceil(jobs / (nodes * slots_per_node))
            cells.append(f"{waves * job_hours:.0f} h")
        print(f"| {name} | {jobs} | {its:,} | {jobs * job_hours:.0f} | {' | '.join(cells)} |")
    print(
        f"\n(ms/iteration at 1 thread: LeNet-300-100 {per_iteration['2']:.1f} with --jobs 2, "
        f"Conv-6 {conv6_ms:.0f} alone; Ray overhead {ray_overhead:.1f} s per job)"
    )


if __name__ == "__main__":
    main()

"""Shared pieces of the benchmark scripts: data, side-by-side timing, memory, tables.

TensorFlow is imported inside the functions, so a script can still choose
``tf_keras`` (``TF_USE_LEGACY_KERAS=1``) before anything loads it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


def set_threads(threads: int) -> None:
    """Pin TensorFlow's thread pools (0 keeps TensorFlow's default); call before any op."""
    if threads:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)


def mnist(path: str | os.PathLike = MNIST, train_size: int | None = None, channels: bool = False):
    """Real MNIST training images as float32 ``(x, y)``, optionally cut and with a channel axis."""
    from keras_lottery.data.datasets import load_dataset

    data = load_dataset(str(path))
    x, y = data.x_train[:train_size], data.y_train[:train_size]
    if channels and x.ndim == 3:
        x = x[..., None]
    return x.astype("float32"), y


def batches(x, y, batch_size: int = 60):
    """A cached, prefetched ``tf.data`` epoch of ``(x, y)`` (same for every framework)."""
    import tensorflow as tf

    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(batch_size)
        .cache()
        .prefetch(tf.data.AUTOTUNE)
    )


def alternate(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call every run once per repeat, in turn, so machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(run())
    return times


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """``fn`` made into a run that returns its wall time in seconds."""

    def run() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return run


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def spread(xs: Sequence[float]) -> str:
    """``min–max`` of a list of seconds, for the tables."""
    return f"{min(xs):.2f}–{max(xs):.2f}"


def epoch_cells(seconds: Sequence[float], steps: int) -> str:
    """Table cells ``median | min–max | ms per step`` of a list of epoch times."""
    med = median(seconds)
    return f"{med:.2f} | {spread(seconds)} | {1000 * med / steps:.2f}"


def lenet(k, seed: int = 0):
    """LeNet-300-100 with logits, compiled with Adam 1.2e-3, in ``k`` (``keras`` or ``tf_keras``).

    The same code builds both frameworks' models, so they differ only by the framework.
    """
    k.utils.set_random_seed(seed)
    model = k.Sequential(
        [
            k.Input((28, 28)),
            k.layers.Flatten(),
            k.layers.Dense(300, "relu", kernel_initializer="glorot_normal"),
            k.layers.Dense(100, "relu", kernel_initializer="glorot_normal"),
            k.layers.Dense(10, kernel_initializer="glorot_normal"),
        ]
    )
    model.compile(
        k.optimizers.Adam(1.2e-3), k.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def prune_randomly(model, sparsity: float, seed: int = 0):
    """Give every mask of a mask-aware model a random ``sparsity`` fraction of zeros."""
    import numpy as np

    import keras_lottery as kl

    rng = np.random.default_rng(seed)
    model.set_masks(
        {pw.name: rng.random(pw.mask.shape) >= sparsity for pw in kl.prunable_weights(model)}
    )
    return model


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Start the peak-memory count afresh from the current size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb() -> float:
    """Peak resident memory of this process since start or :func:`reset_peak_rss`, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class Worker:
    """A benchmark half that runs in its own Python process.

    Used where the two sides cannot share a process (``tf_keras`` vs Keras 3) or
    must not share one (peak memory).  The child (see :func:`serve`) prints one
    JSON line when ready and then one per ``send``; a child that exits without
    answering is an error.
    """

    def __init__(self, argv: Sequence[str]):
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise RuntimeError(f"benchmark worker {self.proc.args[1:]} died without answering")
        return json.loads(line)

    def send(self, command: str = "run") -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # e.g. a hang at interpreter exit
            self.proc.kill()


def serve(step: Callable[[], dict], ready: dict) -> None:
    """The child side of :class:`Worker`: answer every line on stdin with ``step()``."""
    print(json.dumps(ready), flush=True)
    for _ in sys.stdin:
        print(json.dumps(step()), flush=True)
    os._exit(0)  # skip TensorFlow's teardown: benchmarks need no cleanup, only the answer


def versions() -> str:
    import keras
    import tensorflow as tf

    return f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs"

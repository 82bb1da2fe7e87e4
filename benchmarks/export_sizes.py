"""Export sizes and LiteRT latency: dense vs 90%-sparse LeNet-300-100 on real MNIST.

Trains a dense LeNet-300-100 briefly (Adam, 2 epochs on the 60,000 training
digits), finds a 90%-sparse ticket from the same initialization
(``find_ticket(target_sparsity=0.9, output_rate=0.9, rounds=1, one_shot=True)``),
exports both to every format and prints a markdown table.  Every number comes
from :class:`keras_lottery.ExportReport`, i.e. from the written file and from
running it on the MNIST test set.

    PYTHONPATH=. python benchmarks/export_sizes.py [--data ../shared/data/mnist] \
        [--table benchmarks/results/export_sizes.md]

``--table FILE`` also writes the printed table there, after the command and the versions.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_lottery as kl  # noqa: E402
from keras_lottery.export import FORMATS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# (format, export keyword arguments, row label)
RUNS = [
    ("keras", {}, "keras"),
    ("saved_model", {}, "saved_model"),
    ("tflite", {}, "tflite (fp32)"),
    ("tflite", {"sparse": False}, "tflite (fp32), sparse=False"),
    ("tflite-float16", {}, "tflite-float16"),
    ("tflite-int8", {"sparse": True}, "tflite-int8"),
    ("tflite-int8", {"sparse": False}, "tflite-int8, sparse=False"),
    ("tflite-int8-full", {"sparse": True}, "tflite-int8-full"),
]


def lenet() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(10, name="out"),
        ],
        name="lenet",
    )
    model.compile(
        keras.optimizers.Adam(1.2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default=None, help="keep the exports here (default: temp)")
    parser.add_argument("--table", help="also write the table here (Markdown)")
    args = parser.parse_args(argv)

    data = kl.load_dataset(args.data)
    train, test = (data.x_train, data.y_train), (data.x_test, data.y_test)
    keras.utils.set_random_seed(0)
    dense = lenet()
    candidate = lenet()  # the same θ0: find_ticket trains its model in place
    candidate.set_weights(dense.get_weights())
    t0 = time.perf_counter()
    sparse = kl.find_ticket(
        candidate,
        train,
        target_sparsity=0.9,
        output_rate=0.9,  # every layer 90% sparse (the paper's default halves the output rate)
        rounds=1,
        one_shot=True,
        epochs=args.epochs,
        seed=0,
        verbose=0,
    )
    dense.fit(*train, epochs=args.epochs, batch_size=60, verbose=0)
    overall = kl.sparsity(sparse)["overall"]
    print(
        f"trained in {time.perf_counter() - t0:.0f}s; ticket sparsity {overall:.4f}",
        file=sys.stderr,
    )

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        rows = []
        for label, stem, model in (("dense", "dense", dense), ("90% sparse", "sparse90", sparse)):
            for fmt, kwargs, row in RUNS:
                extra = {"representative_data": data.x_train[:256]} if "full" in fmt else {}
                tag = "-dense-storage" if kwargs else ""
                report = kl.export(
                    model,
                    out / f"{stem}{tag}{FORMATS[fmt]}",
                    fmt,
                    verify_data=test,
                    overwrite=True,
                    **kwargs,
                    **extra,
                )
                rows.append((label, row, report))
                print(report, end="\n\n", file=sys.stderr)
        print(table(rows))
    if args.table:
        import importlib.metadata
        import platform

        import tensorflow as tf

        from keras_lottery.records.files import atomic_write

        command = shlex.join(["python", "benchmarks/export_sizes.py", *sys.argv[1:]])
        text = (
            f"`{command}`\n\nkeras-lottery {kl.__version__}, TF {tf.__version__}, "
            f"Keras {keras.__version__}, "
            f"ai-edge-litert {importlib.metadata.version('ai-edge-litert')}, "
            f"{platform.machine()}, {os.cpu_count()} CPUs\n\n"
            f"{table(rows)}\n"
        )
        atomic_write(args.table, lambda f: f.write(text.encode()))


def table(rows) -> str:
    lines = [
        "| model | format | bytes | gzipped | nonzero / prunable | max abs diff "
        "| test acc (Keras → file) | LiteRT settings | latency ms/example |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for label, row, r in rows:
        settings = "–" if r.interpreter is None else r.interpreter["op_resolver"]
        latency = "–" if r.latency_ms is None else f"{r.latency_ms:.4f}"
        lines.append(
            f"| {label} | {row} | {r.bytes:,} | {r.gzipped_bytes:,} | "
            f"{r.nonzero:,} / {r.prunable:,} | {r.max_abs_diff:.1e} | "
            f"{100 * r.keras_accuracy:.2f}% → {100 * r.exported_accuracy:.2f}% | "
            f"{settings} | {latency} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

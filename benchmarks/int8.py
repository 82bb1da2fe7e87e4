"""int8 on top of pruning: Keras's ``model.quantize("int8")`` and TFLite int8, sizes and errors.

LeNet-300-100 (``keras_lottery.zoo``, softmax outputs) on real MNIST (``../shared/data/mnist``,
the 60,000 training digits; accuracy on the 10,000 test digits): a dense net trained as long
as one round, an unstructured ticket (IMP, rewinding to θ0) and a structured ticket
(``granularity="unit"``) compacted.  Each is exported by :func:`keras_lottery.export` as
float32 TFLite (batch 1), ``tflite-int8`` (int8 weights), ``tflite-int8-full`` (int8 weights
and activations, calibrated on 256 training digits), ``keras`` and ``keras-int8``, and checked
on the test digits: the largest output difference from the float Keras model, the exported
file's test accuracy, its nonzero weights as read back from the file against the ticket's,
and LiteRT's median batch-1 latency (XNNPack, as measured by the export).

    PYTHONPATH=. python benchmarks/int8.py [--epochs 1] [--out benchmarks/results/int8.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_lottery as kl  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FORMATS = {
    "tflite": ".tflite",
    "tflite-int8": ".int8.tflite",
    "tflite-int8-full": ".int8-full.tflite",
    "keras": ".keras",
    "keras-int8": ".int8.keras",
}


def models(data, epochs: int) -> dict[str, keras.Model]:
    train = (data.x_train, data.y_train)
    options = {"epochs": epochs, "batch_size": 60, "verbose": 0, "seed": 0}
    dense = kl.zoo.lenet_300_100(seed=0)
    keras.utils.set_random_seed(0)
    dense.fit(*train, epochs=epochs, batch_size=60, verbose=0)
    ticket = kl.find_ticket(kl.zoo.lenet_300_100(seed=0), train, rounds=3, rate=0.55, **options)
    unit = kl.find_ticket(
        kl.zoo.lenet_300_100(seed=0), train, granularity="unit", rounds=2, rate=0.5, **options
    )
    small, report = kl.compact(unit)
    print(report.summary(), flush=True)
    return {"dense": dense, "unstructured ticket": ticket, "structured, compacted": small}


def rows_of(label: str, model, data, folder: Path) -> list[dict]:
    keras_nonzero = sum(w.nonzero for w in _keras_weights(model))
    rows = []
    for format, suffix in FORMATS.items():
        report = kl.export(
            model,
            folder / f"{label.replace(' ', '_').replace(',', '')}{suffix}",
            format,
            verify_data=(data.x_test, data.y_test),
            representative_data=data.x_train[:256] if format == "tflite-int8-full" else None,
            batch_size=1 if format.startswith("tflite") else None,
        )
        rows.append(
            {
                "model": label,
                "format": format,
                "bytes": report.bytes,
                "gzipped": report.gzipped_bytes,
                "diff": report.max_abs_diff,
                "accuracy": report.exported_accuracy,
                "keras_accuracy": report.keras_accuracy,
                "nonzero": report.nonzero,
                "keras_nonzero": keras_nonzero,
                "ms": report.latency_ms,
            }
        )
        print(report.summary(), flush=True)
    return rows


def _keras_weights(model):
    from keras_lottery.export.report import kernel_stats, weight_matrices

    stripped = kl.strip(model)
    return [kernel_stats(v) for _, v in weight_matrices(stripped)]


def table(rows) -> str:
    out = [
        "| model | format | bytes | gzipped bytes | max abs diff (probabilities) | "
        "test accuracy (float Keras) | nonzero weights in file (ticket) | LiteRT ms, batch 1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ms = "-" if r["ms"] is None else f"{r['ms']:.4f}"
        out.append(
            f"| {r['model']} | `{r['format']}` | {r['bytes']:,} | {r['gzipped']:,} | "
            f"{r['diff']:.2g} | {r['accuracy']:.2%} ({r['keras_accuracy']:.2%}) | "
            f"{r['nonzero']:,} ({r['keras_nonzero']:,}) | {ms} |"
        )
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--epochs", type=int, default=1, help="epochs of every round")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    data = kl.load_dataset(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, model in models(data, args.epochs).items():
            rows += rows_of(label, model, data, Path(folder))
    header = (
        f"keras-lottery {kl.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs; "
        "command: python benchmarks/int8.py " + " ".join(sys.argv[1:])
    )
    text = f"{header}\n\n{table(rows)}\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
    print(text)


if __name__ == "__main__":
    main()

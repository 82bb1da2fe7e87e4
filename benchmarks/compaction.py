"""Smaller *and* faster: dense vs ticket vs compacted vs structured, in LiteRT.

For LeNet-300-100 and LeNet-5 on real MNIST: a dense net, an unstructured
ticket (IMP with rewinding), the same ticket compacted
(:func:`keras_lottery.compact`) and a structured ticket
(``granularity="unit"``) compacted; each exported to float32 TFLite and run
in LiteRT by :func:`keras_lottery.export` (default interpreter settings,
XNNPack; median of up to 1000 single-example ``invoke()`` calls, all in this
one process).  Then a MobileNet-like net that meets XNNPack's sparse-inference
conditions (3x3 stride-2 conv on 3 channels, depthwise 3x3 and 1x1 convs,
spatial mean) with 90% of its 1x1 weights zero, exported with sparse and with
dense weight storage, to see whether LiteRT's XNNPack takes its sparse path.

    PYTHONPATH=. python benchmarks/compaction.py [--data ../shared/data/mnist] [--epochs 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lottery as kl  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def accuracy(model, x, y) -> float:
    logits = keras.ops.convert_to_numpy(model.predict(x, batch_size=1000, verbose=0))
    return float((logits.argmax(-1) == y).mean())


def row(label, model, keras_model, data, folder, x_eval=None, **export_kw):
    x_test = data.x_test if x_eval is None else x_eval
    keras_model = kl.strip(keras_model)
    report = kl.export(
        model, Path(folder) / f"{label}.tflite", "tflite", verify_data=x_test[:200], **export_kw
    )
    sp = kl.sparsity(model)["overall"]
    eff = kl.effective_sparsity(model)["overall"]
    return {
        "model": label,
        "params": int(keras_model.count_params()),
        "sparsity": sp,
        "effective": eff,
        "accuracy": accuracy(keras_model, x_test, data.y_test),
        "bytes": report.bytes,
        "latency_ms": report.latency_ms,
        "storage": report.storage,
    }


def lenet_rows(name, build, data, epochs, folder, unit_rate):
    x, y = data.x_train, data.y_train
    if build is kl.zoo.lenet5:  # images with a channel axis
        data = kl.Dataset(data.name, x[..., None], y, data.x_test[..., None], data.y_test)
        x = data.x_train
    options = {"epochs": epochs, "batch_size": 60, "verbose": 0, "seed": 0}
    dense = build(seed=0)
    dense.fit(x, y, epochs=epochs, batch_size=60, verbose=0)
    rows = [row(f"{name} dense", dense, dense, data, folder)]
    ticket = kl.find_ticket(build(seed=0), (x, y), rounds=3, rate=0.55, **options)
    rows.append(row(f"{name} unstructured ticket", ticket, ticket, data, folder))
    small, _ = kl.compact(ticket)
    rows.append(row(f"{name} unstructured, compacted", small, small, data, folder))
    unit = kl.find_ticket(
        build(seed=0), (x, y), rounds=2, rate=unit_rate, granularity="unit", **options
    )
    small, report = kl.compact(unit)
    rows.append(row(f"{name} structured, compacted", small, small, data, folder))
    print(report.summary(), flush=True)
    return rows


def mobilenet_like(seed=0, size=96) -> keras.Model:
    """MobileNet-v1-like: XNNPack's sparse subgraph conditions, 1x1 convs 90% zero."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    for filters, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)):
        x = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x), name="mobilenet_like")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1):
            k = np.array(layer.kernel)
            k[rng.random(k.shape) < 0.9] = 0
            layer.kernel.assign(k)
    return model


def mobilenet_rows(folder):
    model = mobilenet_like()
    x = np.random.default_rng(1).random((32, 96, 96, 3)).astype("float32")
    rows = []
    for label, sparse in (("sparse storage", True), ("dense storage", False)):
        report = kl.export(
            model, Path(folder) / f"mn_{sparse}.tflite", "tflite", verify_data=x, sparse=sparse
        )
        rows.append(
            {
                "model": f"MobileNet-like 96x96, 1x1 convs 90% zero, {label}",
                "params": int(model.count_params()),
                "sparsity": kl.sparsity(model)["overall"],
                "effective": kl.effective_sparsity(model)["overall"],
                "accuracy": None,
                "bytes": report.bytes,
                "latency_ms": report.latency_ms,
                "storage": report.storage,
            }
        )
    return rows


def table(rows) -> str:
    out = [
        "| model | parameters | sparsity | effective sparsity | test accuracy | "
        "TFLite bytes | LiteRT ms/example |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2%}"
        out.append(
            f"| {r['model']} | {r['params']:,} | {r['sparsity']:.1%} | {r['effective']:.1%} | "
            f"{acc} | {r['bytes']:,} | {r['latency_ms']:.4f} |"
        )
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    data = kl.load_dataset(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows += mobilenet_rows(folder)
        print(table(rows), flush=True)
        rows += lenet_rows("LeNet-300-100", kl.zoo.lenet_300_100, data, args.epochs, folder, 0.4)
        print(table(rows), flush=True)
        rows += lenet_rows("LeNet-5", kl.zoo.lenet5, data, args.epochs, folder, 0.5)
    print(table(rows))


if __name__ == "__main__":
    main()

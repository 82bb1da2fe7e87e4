"""Smaller *and* faster: dense vs ticket vs compacted vs structured, in LiteRT.

For LeNet-300-100 and LeNet-5 on real MNIST (trained on the first 55,000
training digits; the last 5,000 are the validation set the settings were
chosen by; accuracy on the 10,000 test digits): a dense net trained as long as
one round of the searches, an unstructured ticket (IMP with rewinding), the
same ticket compacted (:func:`keras_lottery.compact.compaction`) and a structured ticket
(``granularity="unit"``) compacted; each exported to float32 TFLite by
:func:`keras_lottery.export`.  Latency: every file of one net is loaded in the
LiteRT interpreter (default settings, XNNPack) in this one process and timed in
alternating blocks of single-example ``invoke()`` calls; the median per file.
Then a MobileNet-like net that meets XNNPack's sparse-inference conditions
(3x3 stride-2 conv on 3 channels, depthwise 3x3 and 1x1 convs, spatial mean)
with 90% of its 1x1 weights zero, exported with sparse and with dense weight
storage, to see whether LiteRT's XNNPack takes its sparse path.

    PYTHONPATH=. python benchmarks/compaction.py [--data ../shared/data/mnist] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lottery as kl  # noqa: E402
from keras_lottery.export.litert import interpreter  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VALIDATION = 5000  # the last training digits: the settings below were chosen on them

#: The structured search of each net (``granularity="unit"``), chosen by validation accuracy.
STRUCTURED = {
    "LeNet-300-100": {"rounds": 3, "rate": 0.35, "rewind_to": 500},  # late rewinding
    "LeNet-5": {"rounds": 2, "rate": 0.5},
}


def accuracy(model, x, y) -> float:
    logits = keras.ops.convert_to_numpy(model.predict(x, batch_size=1000, verbose=0))
    return float((logits.argmax(-1) == y).mean())


def side_by_side(files: dict[str, Path], x, blocks: int = 10, invokes: int = 300):
    """Median ms per single-example ``invoke()`` of each file, timed in alternating blocks.

    All interpreters live in this process with LiteRT's default settings (XNNPack);
    the order of the files is reversed every other block.
    """
    runners = {}
    for label, path in files.items():
        interp = interpreter(path)
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
        samples = [x[i : i + 1].astype(detail["dtype"]) for i in range(min(len(x), 100))]
        interp.set_tensor(detail["index"], samples[0])
        interp.invoke()  # warm-up
        runners[label] = (interp, detail["index"], samples)
    times: dict[str, list[float]] = {label: [] for label in files}
    labels = list(files)
    for block in range(blocks):
        for label in labels if block % 2 == 0 else labels[::-1]:
            interp, index, samples = runners[label]
            for i in range(invokes):
                interp.set_tensor(index, samples[i % len(samples)])
                t0 = time.perf_counter()
                interp.invoke()
                times[label].append(time.perf_counter() - t0)
    return {label: 1000.0 * float(np.median(t)) for label, t in times.items()}


def row(label, model, data, folder, val=None, x_eval=None, **export_kw):
    x_test = data.x_test if x_eval is None else x_eval
    keras_model = kl.strip(model)
    path = Path(folder) / f"{label}.tflite"
    report = kl.export(model, path, "tflite", verify_data=x_test[:200], **export_kw)
    return {
        "model": label,
        "params": int(keras_model.count_params()),
        "sparsity": kl.sparsity(model)["overall"],
        "effective": kl.effective_sparsity(model)["overall"],
        "val": None if val is None else accuracy(keras_model, *val),
        "accuracy": None if data is None else accuracy(keras_model, x_test, data.y_test),
        "bytes": report.bytes,
        "path": path,
    }


def timed(rows, x, **kw):
    """Fill in each row's latency and speed-up over the first row, timed side by side."""
    latency = side_by_side({r["model"]: r["path"] for r in rows}, x, **kw)
    for r in rows:
        r["latency_ms"] = latency[r["model"]]
        r["speedup"] = latency[rows[0]["model"]] / latency[r["model"]]
    return rows


def lenet_rows(name, build, data, epochs, folder):
    x, y = data.x_train, data.y_train
    if build is kl.zoo.lenet5:  # images with a channel axis
        x = x[..., None]
        data = kl.Dataset(data.name, x, y, data.x_test[..., None], data.y_test)
    train, val = (x[:-VALIDATION], y[:-VALIDATION]), (x[-VALIDATION:], y[-VALIDATION:])
    options = {"epochs": epochs, "batch_size": 60, "verbose": 0, "seed": 0}
    dense = build(seed=0)
    keras.utils.set_random_seed(0)  # the data order of the dense training
    dense.fit(*train, epochs=epochs, batch_size=60, verbose=0)
    rows = [row(f"{name} dense", dense, data, folder, val)]
    ticket = kl.find_ticket(build(seed=0), train, rounds=3, rate=0.55, **options)
    rows.append(row(f"{name} unstructured ticket", ticket, data, folder, val))
    small, _ = kl.compact(ticket)
    rows.append(row(f"{name} unstructured, compacted", small, data, folder, val))
    unit = kl.find_ticket(build(seed=0), train, granularity="unit", **STRUCTURED[name], **options)
    small, report = kl.compact(unit)
    rows.append(row(f"{name} structured, compacted", small, data, folder, val))
    print(report.summary(), flush=True)
    return timed(rows, data.x_test)


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
            k = keras.ops.convert_to_numpy(layer.kernel).copy()
            k[rng.random(k.shape) < 0.9] = 0
            layer.kernel.assign(k)
    return model


def mobilenet_rows(folder):
    model = mobilenet_like()
    x = np.random.default_rng(1).random((32, 96, 96, 3)).astype("float32")
    rows = []
    for label, sparse in (("dense storage", False), ("sparse storage", True)):
        r = row(
            f"MobileNet-like 96x96, 1x1 convs 90% zero, {label}",
            model,
            None,
            folder,
            x_eval=x,
            sparse=sparse,
        )
        rows.append(r)
    return timed(rows, x, blocks=6, invokes=100)


def table(rows) -> str:
    out = [
        "| model | parameters | sparsity | effective sparsity | validation accuracy | "
        "test accuracy | TFLite bytes | LiteRT ms/example | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(v):
        return "-" if v is None else f"{v:.2%}"

    for r in rows:
        out.append(
            f"| {r['model']} | {r['params']:,} | {r['sparsity']:.1%} | {r['effective']:.1%} | "
            f"{pct(r['val'])} | {pct(r['accuracy'])} | {r['bytes']:,} | "
            f"{r['latency_ms']:.4f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every round")
    parser.add_argument("--skip", nargs="*", default=[], choices=["mobilenet", "lenet5"])
    args = parser.parse_args()
    data = kl.load_dataset(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        if "mobilenet" not in args.skip:
            rows += mobilenet_rows(folder)
            print(table(rows), flush=True)
        rows += lenet_rows("LeNet-300-100", kl.zoo.lenet_300_100, data, args.epochs, folder)
        print(table(rows), flush=True)
        if "lenet5" not in args.skip:
            rows += lenet_rows("LeNet-5", kl.zoo.lenet5, data, args.epochs, folder)
    print(table(rows))


if __name__ == "__main__":
    main()

"""Compacted vs dense, side by side: LiteRT batch-1 latency and JAX CPU throughput.

For each model, structured masks keep a share (``--keep``) of the output units or
channels of every pruned layer but the output layer (those with the largest L1
norm; the weights are the seeded initial ones, since speed does not depend on
trained values), and :func:`keras_lottery.compact` turns the masked model into a
smaller dense one.  The dense model and every compacted one are exported to
float32 TFLite twice, with any batch and with ``batch_size=1``, and all files of
one model are timed in one process with LiteRT's default settings (XNNPack) in
alternating blocks of single-example ``invoke()`` calls; medians.  JAX
throughput: the same Keras models saved as ``.keras`` and loaded in a JAX-backend
child process, a jitted inference call on batches of ``--jax-batch``, timed in
alternating repeats; median examples per second.

    PYTHONPATH=. python benchmarks/structured_speed.py [--models lenet_300_100,lenet5,vgg]
        [--keep 0.5,0.25] [--size 96] [--out benchmarks/results/structured_speed.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and "--jax-child" not in sys.argv:
    os.environ["KERAS_BACKEND"] = "tensorflow"  # exports convert in this process
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# -- models -----------------------------------------------------------------------


def vgg(size: int, seed: int = 0):
    """A VGG-like chain: 4 stages of two 3x3 convs (32-64-96-128), pooling, Flatten, 2 Dense."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = inputs
    for filters in (32, 64, 96, 128):
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="vgg")


def build(name: str, size: int):
    """``(model, example input shape)`` of a benchmark model."""
    import keras_lottery as kl

    if name == "lenet_300_100":
        return kl.zoo.lenet_300_100(seed=0), (28, 28)
    if name == "lenet5":
        return kl.zoo.lenet5(seed=0), (28, 28, 1)
    if name == "vgg":
        return vgg(size), (size, size, 3)
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


MODELS = ("lenet_300_100", "lenet5", "vgg")


def structured(model, keep: float):
    """``model`` mask-aware, each pruned layer but the last keeping ``keep`` of its units."""
    import keras_lottery as kl

    masked = kl.make_prunable(model)
    weights = kl.prunable_weights(masked)
    masks = {}
    for i, pw in enumerate(weights):
        kernel = np.abs(np.asarray(pw.kernel))
        mask = np.ones(kernel.shape, bool)
        if i < len(weights) - 1:
            norms = kernel.reshape(-1, kernel.shape[-1]).sum(0)
            k = max(1, round(keep * len(norms)))
            mask[..., np.argsort(norms)[: len(norms) - k]] = False
        masks[pw.name] = mask
    masked.set_masks(masks)
    return masked


# -- timing -----------------------------------------------------------------------


def litert_latency(files: dict[str, Path], x, blocks: int, invokes: int) -> dict[str, float]:
    """Median ms per single-example ``invoke()`` of each file, timed in alternating blocks."""
    from keras_lottery.export.litert import interpreter

    runners = {}
    for label, path in files.items():
        interp = interpreter(path)
        detail = interp.get_input_details()[0]
        if detail["shape"][0] != 1:
            interp.resize_tensor_input(detail["index"], [1, *detail["shape"][1:]])
        interp.allocate_tensors()
        samples = [x[i : i + 1] for i in range(len(x))]
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


def jax_throughput(files: dict[str, str], shape, batch: int, repeats: int) -> dict[str, float]:
    """Examples per second of each ``.keras`` file on JAX, from a child process."""
    request = {"files": files, "shape": list(shape), "batch": batch, "repeats": repeats}
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run(
        [sys.executable, __file__, "--jax-child", json.dumps(request)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"JAX child failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _jax_child(request: dict) -> None:
    import jax
    import keras

    x = np.random.default_rng(0).random((request["batch"], *request["shape"]), dtype=np.float32)
    runs = {}
    for label, path in request["files"].items():
        model = keras.models.load_model(path, compile=False)
        state = (model.trainable_variables, model.non_trainable_variables)
        state = jax.tree.map(lambda v: v.value, state)

        @jax.jit
        def infer(trainable, non_trainable, x, model=model):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        infer(*state, x).block_until_ready()  # compile
        runs[label] = (infer, state)

    def once(infer, state, calls=20) -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            out = infer(*state, x)
        out.block_until_ready()
        return calls * len(x) / (time.perf_counter() - t0)

    rates: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(request["repeats"]):
        for label, (infer, state) in runs.items():
            rates[label].append(once(infer, state))
    print(json.dumps({label: float(np.median(r)) for label, r in rates.items()}))


# -- rows -------------------------------------------------------------------------


def invoke_floor(args, folder: Path) -> float:
    """LiteRT ms per ``invoke()`` of a 4-input, 1-unit Dense: the fixed cost of a call."""
    import keras

    import keras_lottery as kl

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)], name="floor")
    x = np.random.default_rng(1).random((32, 4), dtype=np.float32)
    path = kl.export(model, folder / "floor.tflite", verify_data=x, batch_size=1).path
    return litert_latency({"floor": path}, x, args.blocks, args.invokes)["floor"]


def model_rows(name: str, keeps, args, folder: Path) -> list[dict]:
    import keras_lottery as kl

    model, shape = build(name, args.size)
    x = np.random.default_rng(1).random((32, *shape), dtype=np.float32)
    variants = [("dense", 1.0, kl.strip(model))]
    for keep in keeps:
        small, _ = kl.compact(structured(build(name, args.size)[0], keep))
        variants.append((f"{keep:.0%} kept", keep, small))
    rows, files, saved = [], {}, {}
    for label, keep, m in variants:
        row = {"model": name, "variant": label, "params": int(m.count_params())}
        for batch in (None, 1):
            tag = "b1" if batch else "any"
            path = folder / f"{name}-{keep}-{tag}.tflite"
            report = kl.export(m, path, verify_data=x, batch_size=batch)
            assert report.max_abs_diff < 1e-3, (name, label, report.max_abs_diff)
            row[f"bytes_{tag}"] = report.bytes
            row[f"outside_{tag}"] = report.undelegated_ops
            files[(label, tag)] = path
        saved[label] = str(folder / f"{name}-{keep}.keras")
        m.save(saved[label])
        rows.append(row)
    latency = litert_latency(files, x, args.blocks, args.invokes)
    rates = jax_throughput(saved, shape, args.jax_batch, args.repeats)
    for row in rows:
        row["ms_any"] = latency[(row["variant"], "any")]
        row["ms_b1"] = latency[(row["variant"], "b1")]
        row["jax"] = rates[row["variant"]]
    for row in rows:
        row["speedup_b1"] = rows[0]["ms_b1"] / row["ms_b1"]
        row["speedup_any"] = rows[0]["ms_any"] / row["ms_any"]
        row["speedup_jax"] = row["jax"] / rows[0]["jax"]
    return rows


def table(rows) -> str:
    out = [
        "| model | variant | parameters | TFLite bytes | LiteRT ms, any batch | LiteRT ms, "
        "batch 1 | speed-up, any batch | speed-up, batch 1 | JAX examples/s | JAX speed-up | "
        "ops outside XNNPack, any batch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        outside = ", ".join(r["outside_any"] or []) or "none"
        out.append(
            f"| {r['model']} | {r['variant']} | {r['params']:,} | {r['bytes_b1']:,} | "
            f"{r['ms_any']:.4f} | {r['ms_b1']:.4f} | {r['speedup_any']:.2f}x | "
            f"**{r['speedup_b1']:.2f}x** | {r['jax']:,.0f} | {r['speedup_jax']:.2f}x | {outside} |"
        )
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--keep", default="0.5,0.25", help="shares of units kept")
    parser.add_argument("--size", type=int, default=96, help="image side of the larger nets")
    parser.add_argument("--blocks", type=int, default=6, help="LiteRT: alternating blocks")
    parser.add_argument("--invokes", type=int, default=200, help="LiteRT: invokes per block")
    parser.add_argument("--jax-batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="JAX: alternating repeats")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    import keras
    from ai_edge_litert import __version__ as litert_version

    import keras_lottery as kl

    keeps = [float(k) for k in args.keep.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        floor = invoke_floor(args, Path(folder))
        for name in args.models.split(","):
            rows += model_rows(name, keeps, args, Path(folder))
            print(table(rows), flush=True)
    header = (
        f"keras-lottery {kl.__version__}, Keras {keras.__version__}, ai-edge-litert "
        f"{litert_version}, {os.cpu_count()} CPUs; command: python benchmarks/structured_speed.py "
        + " ".join(sys.argv[1:])
    )
    text = (
        f"{header}\n\n{table(rows)}\n\nLiteRT invoke() of a 4-input, 1-unit Dense (the fixed "
        f"cost of a call from Python): {floor:.4f} ms\n"
    )
    if args.out:
        tmp = args.out.with_suffix(".tmp")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.replace(args.out)
    print(text)


if __name__ == "__main__":
    if "--jax-child" in sys.argv:
        _jax_child(json.loads(sys.argv[sys.argv.index("--jax-child") + 1]))
    else:
        main()

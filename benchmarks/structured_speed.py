"""Compacted vs dense, side by side: LiteRT batch-1 latency and JAX CPU throughput.

Models: LeNet-300-100 and LeNet-5 (28x28), a VGG-like chain, ``keras.applications``
ResNet50 and MobileNetV2 (``--size`` px, random weights, BatchNormalization statistics
away from 0/1) and a 6-block ViT-like transformer (12x12 patches, 6 heads of 32,
feed-forward 768).  Structured masks keep a share (``--keep``) of the units of every
coupling -- a conv's filters, a residual stage's channels, attention heads, feed-forward
units -- ranked by L1 norm as one pruning step of ``find_ticket(..., granularity="unit")``
(speed does not depend on trained values); what must stay (the outputs, the width a
LayerNormalization normalizes over) stays.  :func:`keras_lottery.compact` turns the masked
model into a smaller dense one.  Every model is exported to float32 TFLite with
``batch_size=1`` (the chains also with any batch, to see the per-call shape ops), all files
of one model timed in one process with LiteRT's default settings (XNNPack) in alternating
blocks of single-example ``invoke()`` calls; medians.  JAX throughput: the same models
saved as ``.keras`` and loaded in a JAX-backend child process, a jitted inference call on
batches of ``--jax-batch``, timed in alternating repeats; median examples per second.

    PYTHONPATH=. python benchmarks/structured_speed.py [--models lenet5,resnet50,...]
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


def transformer(size: int, seed: int = 0, blocks: int = 6, width: int = 192, heads: int = 6):
    """A 6-block pre-norm ViT: 12x12 patches, 6 heads of 32, feed-forward 4x the width."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(width, 12, strides=12, name="patches")(inputs)
    x = keras.layers.Reshape(((size // 12) ** 2, width), name="tokens")(x)
    for i in range(blocks):
        h = keras.layers.LayerNormalization(name=f"ln_a{i}")(x)
        h = keras.layers.MultiHeadAttention(heads, width // heads, name=f"mha{i}")(h, h)
        x = keras.layers.Add(name=f"res_a{i}")([x, h])
        h = keras.layers.LayerNormalization(name=f"ln_f{i}")(x)
        h = keras.layers.Dense(4 * width, activation="gelu", name=f"ffn_in{i}")(h)
        h = keras.layers.Dense(width, name=f"ffn_out{i}")(h)
        x = keras.layers.Add(name=f"res_f{i}")([x, h])
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(x), name="transformer")


def build(name: str, size: int):
    """``(model, example input shape)`` of a benchmark model (seeded initial weights)."""
    import keras

    import keras_lottery as kl

    keras.utils.set_random_seed(0)
    if name == "lenet_300_100":
        return kl.zoo.lenet_300_100(seed=0), (28, 28)
    if name == "lenet5":
        return kl.zoo.lenet5(seed=0), (28, 28, 1)
    if name == "vgg":
        return vgg(size), (size, size, 3)
    if name == "transformer":
        return transformer(size), (size, size, 3)
    if name in ("resnet50", "mobilenetv2"):
        app = keras.applications.ResNet50 if name == "resnet50" else keras.applications.MobileNetV2
        model = app(weights=None, input_shape=(size, size, 3), classes=10)
        _statistics(model)
        return model, (size, size, 3)
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


MODELS = ("lenet_300_100", "lenet5", "vgg", "resnet50", "mobilenetv2", "transformer")
#: Models timed with a dynamic-batch file too (the per-call shape work matters for small nets).
ANY_BATCH = ("lenet_300_100", "lenet5", "vgg")


def _statistics(model, seed: int = 0) -> None:
    """BatchNormalization statistics of a trained-looking net (not the fresh 0 and 1)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            for var in layer.weights:
                low = 0.5 if "variance" in var.path or "gamma" in var.path else -0.5
                var.assign(rng.uniform(low, low + 1.0, var.shape).astype("float32"))


def structured(model, keep: float):
    """``model`` mask-aware, every coupling of units (a conv's filters, a residual stage's
    channels, attention heads) keeping ``keep`` of them, by L1 norm, as one pruning step of
    ``find_ticket(..., granularity="unit")``; units that must stay (outputs, the widths a
    LayerNormalization normalizes over) stay."""
    import keras_lottery as kl
    from keras_lottery.compact import Graph
    from keras_lottery.search.masking import group_unit_masks

    masked = kl.make_prunable(model)
    weights = masked.prunable_weights()
    trained = {w.name: np.array(w.kernel) for w in weights}
    current = {w.name: np.array(w.mask) for w in weights}
    rates = {w.name: 1.0 - keep for w in weights}
    masked.set_masks(group_unit_masks(Graph(model), weights, trained, current, rates, 1, "l1"))
    return masked


# -- timing -----------------------------------------------------------------------


def litert_latency(
    files: dict[str, Path], x, blocks: int, invokes: int, block_seconds: float = 0.5
) -> dict[str, float]:
    """Median ms per single-example ``invoke()`` of each file, timed in alternating blocks.

    A block is ``invokes`` calls or ``block_seconds``, whichever ends first (at least 3 calls).
    """
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
            spent = 0.0
            for i in range(invokes):
                interp.set_tensor(index, samples[i % len(samples)])
                t0 = time.perf_counter()
                interp.invoke()
                times[label].append(time.perf_counter() - t0)
                spent += times[label][-1]
                if i >= 2 and spent > block_seconds:
                    break
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

    def once(infer, state, seconds=0.5) -> float:
        """Examples per second over at least 2 calls and ``seconds``."""
        calls, t0 = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - t0 < seconds:
            infer(*state, x).block_until_ready()
            calls += 1
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
    variants = [("dense", 1.0, model)]
    for keep in keeps:
        small, report = kl.compact(structured(build(name, args.size)[0], keep))
        variants.append((f"{keep:.0%} kept", keep, small))
        print(report.summary().splitlines()[0], flush=True)
    batches = (None, 1) if name in ANY_BATCH else (1,)
    rows, files, saved = [], {}, {}
    for label, keep, m in variants:
        row = {"model": name, "variant": label, "params": int(m.count_params())}
        for batch in batches:
            tag = "b1" if batch else "any"
            path = folder / f"{name}-{keep}-{tag}.tflite"
            report = kl.export(m, path, verify_data=x[:4], batch_size=batch)
            scale = max(1.0, float(np.abs(kl.strip(m)(x[:4])).max()))
            assert report.max_abs_diff < 1e-3 * scale, (name, label, report.max_abs_diff)
            row[f"bytes_{tag}"] = report.bytes
            row[f"outside_{tag}"] = report.undelegated_ops
            files[(label, tag)] = path
        saved[label] = str(folder / f"{name}-{keep}.keras")
        kl.strip(m).save(saved[label])
        rows.append(row)
    latency = litert_latency(files, x, args.blocks, args.invokes)
    rates = jax_throughput(saved, shape, args.jax_batch, args.repeats)
    for row in rows:
        row["ms_b1"] = latency[(row["variant"], "b1")]
        row["ms_any"] = latency.get((row["variant"], "any"))
        row["jax"] = rates[row["variant"]]
    for row in rows:
        row["speedup_b1"] = rows[0]["ms_b1"] / row["ms_b1"]
        row["speedup_any"] = row["ms_any"] and rows[0]["ms_any"] / row["ms_any"]
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
        if r["ms_any"] is None:
            any_ms = any_speedup = outside = "-"
        else:
            any_ms, any_speedup = f"{r['ms_any']:.4f}", f"{r['speedup_any']:.2f}x"
            outside = ", ".join(r["outside_any"] or []) or "none"
        out.append(
            f"| {r['model']} | {r['variant']} | {r['params']:,} | {r['bytes_b1']:,} | "
            f"{any_ms} | {r['ms_b1']:.4f} | {any_speedup} | **{r['speedup_b1']:.2f}x** | "
            f"{r['jax']:,.0f} | {r['speedup_jax']:.2f}x | {outside} |"
        )
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=", ".join(MODELS))
    parser.add_argument("--keep", default="0.5,0.25", help="shares of units kept")
    parser.add_argument("--size", type=int, default=96, help="image side of the larger nets")
    parser.add_argument("--blocks", type=int, default=6, help="LiteRT: alternating blocks")
    parser.add_argument("--invokes", type=int, default=200, help="LiteRT: invokes per block")
    parser.add_argument("--jax-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5, help="JAX: alternating repeats")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    import keras
    from ai_edge_litert import __version__ as litert_version

    import keras_lottery as kl

    keeps = [float(k) for k in args.keep.split(",")]
    header = (
        f"keras-lottery {kl.__version__}, Keras {keras.__version__}, ai-edge-litert "
        f"{litert_version}, {os.cpu_count()} CPUs; command: python benchmarks/structured_speed.py "
        + " ".join(sys.argv[1:])
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        floor = invoke_floor(args, Path(folder))
        for name in args.models.split(","):
            rows += model_rows(name, keeps, args, Path(folder))
            text = (
                f"{header}\n\n{table(rows)}\n\nLiteRT invoke() of a 4-input, 1-unit Dense "
                f"(the fixed cost of a call from Python): {floor:.4f} ms\n"
            )
            print(text, flush=True)
            if args.out:  # after every model: a long run keeps what it measured
                args.out.parent.mkdir(parents=True, exist_ok=True)
                tmp = args.out.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(args.out)


if __name__ == "__main__":
    if "--jax-child" in sys.argv:
        _jax_child(json.loads(sys.argv[sys.argv.index("--jax-child") + 1]))
    else:
        main()

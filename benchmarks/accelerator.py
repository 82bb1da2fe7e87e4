"""Masked vs plain training steps and a search's cost outside training, on JAX or PyTorch.

Runs on any accelerator Keras 3 sees (or on the CPU) without TensorFlow: the
backend is ``KERAS_BACKEND`` (``jax`` if unset and installed, else ``torch``).
Two models, each in every ``--dtypes`` policy (``keras.mixed_precision``):

* ``resnet50``: ``keras.applications.ResNet50(weights=None)``, 224 px, 1000
  classes, batch 64;
* ``transformer``: a causal language model of 6 blocks (``MultiHeadAttention``
  with 8 heads, a 4x ``Dense`` feed-forward, post-``LayerNormalization``),
  d_model 512, 256 tokens, vocabulary 8192, batch 32.

Steps: the plain model and a ``MaskedModel`` of the same model (same seed, same
weights) with ``--sparsity`` of every weight matrix pruned at random train
``--steps`` steps each, in turn, ``--repeats`` times, on one random batch held
on the device (so no host transfer is timed), after a warm-up ``fit`` each
(tracing and compiling). A ``fit`` ends with a read of a trained weight, so
asynchronous dispatch cannot hide the work. The ratio of medians is the mask's
cost.

Search (in the first of ``--dtypes``, or ``--search-dtypes``): ``find_ticket``
for ``--rounds`` prunings of ``--search-steps`` steps on random NumPy data; its
total time minus the time of its ``rounds + 1`` fits, per round, is the
search's own cost (wrapping, pruning, rewinding, records, and in a fresh
process the first compilation of its eager operations).
The *marginal* second per round is ``benchmarks/scale.py``'s measure: the gap
between one round's ``fit`` and the next plus how much longer a round's ``fit``
took than a warm plain ``fit`` of as many steps on the same NumPy batches.

    KERAS_BACKEND=jax python benchmarks/accelerator.py --out accelerator.json
    KERAS_BACKEND=torch python benchmarks/accelerator.py --models transformer --repeats 9
    KERAS_BACKEND=jax python benchmarks/accelerator.py --small   # 2-3 minutes on 2 CPU cores

The output's ``tensorflow_imported`` says whether anything loaded TensorFlow.
Where TensorFlow is installed, Keras itself imports it (serializing a compile
config or an optimizer); ``--no-tensorflow`` makes ``import tensorflow``
fail for the whole run, as on a machine without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import sys
import time

if "--no-tensorflow" in sys.argv:  # before anything can import it
    sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError
if "KERAS_BACKEND" not in os.environ:
    for _backend in ("jax", "torch"):
        if importlib.util.find_spec(_backend) is not None:
            os.environ["KERAS_BACKEND"] = _backend
            break

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import scale  # noqa: E402

import keras_lottery as kl  # noqa: E402
import keras_lottery.seeding  # noqa: E402, F401
from keras_lottery.data.datasets import numpy_batches  # noqa: E402

MODELS = ("resnet50", "transformer")
DTYPES = ("float32", "mixed_bfloat16")

#: Model and run sizes: the full ones, and ``--small``'s for a 2-core CPU.
FULL = {
    "image": 224,
    "classes": 1000,
    "layers": 6,
    "d_model": 512,
    "heads": 8,
    "seq": 256,
    "vocab": 8192,
    "batch": {"resnet50": 64, "transformer": 32},
    "steps": 50,
    "repeats": 5,
    "rounds": 3,
    "search_steps": 5,
}
SMALL = {
    "image": 32,
    "classes": 10,
    "layers": 2,
    "d_model": 64,
    "heads": 4,
    "seq": 32,
    "vocab": 256,
    "batch": {"resnet50": 4, "transformer": 4},
    "steps": 3,
    "repeats": 3,
    "rounds": 3,
    "search_steps": 2,
}


# -- models and data ------------------------------------------------------------


class Positions(keras.layers.Layer):
    """Adds a learned embedding of each position."""

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=tuple(input_shape[1:]), initializer="random_normal", name="embedding"
        )

    def call(self, x):
        return x + self.embedding


def build(name: str, size: dict, seed: int) -> keras.Model:
    """The model ``name`` under the current dtype policy, compiled (see :func:`compile_`)."""
    kl.seeding.set_random_seed(seed)  # Keras's own would import TensorFlow where installed
    if name == "resnet50":
        model = keras.applications.ResNet50(
            weights=None,
            input_shape=(size["image"], size["image"], 3),
            classes=size["classes"],
            classifier_activation=None,
        )
    elif name == "transformer":
        model = transformer(size)
    else:
        raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return compile_(model)


def compile_(model: keras.Model) -> keras.Model:
    """Adam 1e-4 and cross-entropy on logits, for the plain and the masked model alike."""
    model.compile(
        keras.optimizers.Adam(1e-4),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def transformer(size: dict) -> keras.Model:
    """A causal LM: token + learned position embeddings, post-LN blocks, float32 logits."""
    d, seq = size["d_model"], size["seq"]
    tokens = keras.Input((seq,), dtype="int32")
    x = Positions()(keras.layers.Embedding(size["vocab"], d)(tokens))
    for _ in range(size["layers"]):
        a = keras.layers.MultiHeadAttention(size["heads"], d // size["heads"])(
            x, x, use_causal_mask=True
        )
        x = keras.layers.LayerNormalization()(x + a)
        f = keras.layers.Dense(4 * d, activation="gelu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(d)(f))
    logits = keras.layers.Dense(size["vocab"], dtype="float32")(x)
    return keras.Model(tokens, logits, name="transformer")


def data(name: str, size: dict, n: int, seed: int):
    """``n`` random examples for ``name`` as NumPy ``(x, y)``."""
    rng = np.random.default_rng(seed)
    if name == "resnet50":
        x = rng.random((n, size["image"], size["image"], 3), dtype=np.float32)
        return x, rng.integers(0, size["classes"], n).astype("int32")
    shape = (n, size["seq"])
    return (
        rng.integers(0, size["vocab"], shape).astype("int32"),
        rng.integers(0, size["vocab"], shape).astype("int32"),
    )


def _repeat(batch):
    while True:
        yield batch


def _fit(model, stream, steps: int) -> None:
    """``steps`` training steps, then a read of a trained weight (the last step wrote them all).

    The read waits for the device, so asynchronous dispatch cannot hide work.
    """
    model.fit(stream, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    keras.ops.convert_to_numpy(model.trainable_variables[0].value)


# -- the two measurements --------------------------------------------------------


def step_times(name: str, size: dict, args) -> tuple[dict, keras.Model]:
    """Plain vs masked training steps on one device-resident batch, alternating.

    Returns the row and the plain model (compiled and warm, for :func:`search_time`).
    """
    batch = size["batch"][name]
    x, y = data(name, size, batch, args.seed)
    device_batch = (keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y))
    plain = build(name, size, args.seed)
    masked = kl.make_prunable(build(name, size, args.seed))  # the same weights, wrapped
    masked = compile_(_bench.prune_randomly(masked, args.sparsity, args.seed))
    models = {"plain": plain, "masked": masked}
    for model in models.values():  # warm-up: tracing and compiling
        _fit(model, _repeat(device_batch), min(2, size["steps"]))
    runs = {
        label: _bench.timed(lambda m=model: _fit(m, _repeat(device_batch), size["steps"]))
        for label, model in models.items()
    }
    times = _bench.alternate(runs, size["repeats"])
    med = {label: _bench.median(ts) for label, ts in times.items()}
    row = {
        "model": name,
        "dtype": keras.mixed_precision.global_policy().name,
        "batch": batch,
        "steps": size["steps"],
        "repeats": size["repeats"],
        "params": sum(math.prod(v.shape) for v in plain.weights),
        "sparsity": kl.sparsity(masked)["overall"],
        "plain_ms": 1000 * med["plain"] / size["steps"],
        "masked_ms": 1000 * med["masked"] / size["steps"],
        "ratio": med["masked"] / med["plain"],
        "ratio_of_min": min(times["masked"]) / min(times["plain"]),
        "seconds": times,
    }
    return row, plain


def search_time(name: str, size: dict, args, plain: keras.Model | None = None) -> dict:
    """A short ``find_ticket``: its time beyond the fits, per round (see the module doc).

    ``plain``: the same model, compiled, to time warm plain fits with (built if None).
    """
    batch, steps, rounds = size["batch"][name], size["search_steps"], size["rounds"]
    x, y = data(name, size, 2 * batch, args.seed + 1)
    # What a round's fit costs warm, on the search's NumPy batches (the first fit may
    # compile; scale.marginal takes the median of the others).
    if plain is None:
        plain = build(name, size, args.seed)
    plain_fits = [
        _bench.timed(lambda: _fit(plain, numpy_batches(x, y, batch, args.seed), steps))()
        for _ in range(rounds + 1)
    ]
    events: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            events.append(time.perf_counter())

        def on_train_end(self, logs=None):
            events.append(time.perf_counter())

    model = build(name, size, args.seed)
    t0 = time.perf_counter()
    ticket = kl.find_ticket(
        model,
        (x, y),
        rounds=rounds,
        steps=steps,
        batch_size=batch,
        seed=args.seed,
        callbacks=[Clock()],
        verbose=0,
    )
    total = time.perf_counter() - t0
    fits = [r.seconds for r in ticket.lottery.rounds]
    gaps = [events[i + 1] - events[i] for i in range(1, len(events) - 1, 2)]
    marginal = scale.marginal(
        {"fit_seconds": plain_fits}, {"between_rounds": gaps, "fit_seconds": fits}
    )
    return {
        "model": name,
        "dtype": keras.mixed_precision.global_policy().name,
        "batch": batch,
        "rounds": rounds,
        "steps": steps,
        "total_s": total,
        "fit_s": fits,
        "outside_fit_s_per_round": (total - sum(fits)) / rounds,
        "marginal_s_per_round": _bench.median(marginal),
        "between_rounds_s": gaps,
        "plain_fit_s": plain_fits,
        "sparsity": ticket.lottery.rounds[-1].sparsity,
    }


# -- the machine and the tables --------------------------------------------------------


def machine() -> dict:
    info = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    info["keras_lottery"] = kl.__version__
    if info["backend"] == "jax":
        import jax

        devices = jax.devices()
        info.update(
            jax=jax.__version__,
            platform=devices[0].platform,
            device=devices[0].device_kind,
            devices=len(devices),
        )
    elif info["backend"] == "torch":
        import torch

        cuda = torch.cuda.is_available()
        info.update(
            torch=torch.__version__,
            cuda=torch.version.cuda,
            platform="cuda" if cuda else "cpu",
            device=torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            devices=torch.cuda.device_count() if cuda else 1,
        )
    return info


def tables(result: dict) -> str:
    m = result["machine"]
    framework = f"JAX {m['jax']}" if "jax" in m else f"PyTorch {m.get('torch', '?')}"
    lines = [
        f"{m['device']} ({m['platform']}, {m['devices']} device(s)), {framework}, "
        f"Keras {m['keras']}, keras-lottery {m['keras_lottery']}, {m['cpus']} CPUs; "
        f"TensorFlow imported: {result['tensorflow_imported']}",
        "",
    ]
    if result["steps"]:
        lines += [
            "| model | dtype | batch | steps x repeats | plain ms/step | masked ms/step "
            "| masked / plain (medians) | (minimums) |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["steps"]:
            lines.append(
                f"| {r['model']} | {r['dtype']} | {r['batch']} | {r['steps']} x {r['repeats']} "
                f"| {r['plain_ms']:.2f} | {r['masked_ms']:.2f} | {r['ratio']:.3f} "
                f"| {r['ratio_of_min']:.3f} |"
            )
        lines.append("")
    if result["search"]:
        lines += [
            "| model | dtype | rounds x steps | search s | fits s | outside fits s/round "
            "| marginal s/round |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in result["search"]:
            lines.append(
                f"| {r['model']} | {r['dtype']} | {r['rounds']} x {r['steps']} "
                f"| {r['total_s']:.2f} | {sum(r['fit_s']):.2f} "
                f"| {r['outside_fit_s_per_round']:.3f} | {r['marginal_s_per_round']:.3f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dtypes", default=",".join(DTYPES), help="Keras dtype policies")
    parser.add_argument("--batch", type=int, help="batch size of every model (default: each's)")
    parser.add_argument("--steps", type=int, help="training steps per timed fit (default 50)")
    parser.add_argument("--repeats", type=int, help="timed fits per variant (default 5)")
    parser.add_argument("--sparsity", type=float, default=0.8, help="masked model's sparsity")
    parser.add_argument("--rounds", type=int, help="search: prunings (default 3)")
    parser.add_argument("--search-steps", type=int, help="search: steps per round (default 5)")
    parser.add_argument("--search-dtypes", help="dtypes to search in (default: the first)")
    parser.add_argument("--parts", default="steps,search", help="steps, search or both")
    parser.add_argument("--small", action="store_true", help="tiny sizes for a CPU smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "--no-tensorflow", action="store_true", help="make `import tensorflow` fail (see doc)"
    )
    args = parser.parse_args(argv)
    size = {**(SMALL if args.small else FULL)}
    size["batch"] = dict(size["batch"])
    for key in ("steps", "repeats", "rounds", "search_steps"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    if args.batch:
        size["batch"] = {name: args.batch for name in MODELS}
    parts = set(args.parts.split(","))
    dtypes = args.dtypes.split(",")
    search_dtypes = (args.search_dtypes or dtypes[0]).split(",")
    result = {"machine": machine(), "sizes": size, "sparsity": args.sparsity}
    result["steps"], result["search"] = [], []
    try:
        for name in args.models.split(","):
            for dtype in dtypes:
                keras.backend.clear_session()
                keras.mixed_precision.set_global_policy(dtype)
                plain = None
                if "steps" in parts:
                    row, plain = step_times(name, size, args)
                    result["steps"].append(row)
                    brief = {k: v for k, v in row.items() if k != "seconds"}
                    print(json.dumps(brief), file=sys.stderr, flush=True)
                if "search" in parts and dtype in search_dtypes:
                    result["search"].append(search_time(name, size, args, plain))
                    print(json.dumps(result["search"][-1]), file=sys.stderr, flush=True)
                del plain
    finally:
        keras.mixed_precision.set_global_policy("float32")
    result["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    result["tensorflow_blocked"] = args.no_tensorflow
    print()
    print(tables(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()

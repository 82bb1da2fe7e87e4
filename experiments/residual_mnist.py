"""A structured ticket of a residual CNN on real MNIST: accuracy, and its compacted TFLite speed.

A small ResNet adapted to 28x28 (a 3x3 stem of 16 channels, a residual block of 16,
stride-2 residual blocks of 32 and 64 with 1x1 projection shortcuts, each block two 3x3 convs
with BatchNormalization, global average pooling, a Dense classifier), trained with Adam on
the first ``--train-size`` training digits (55,000: the rest is the usual validation split)
for ``--epochs`` epochs a round, the learning rate on a cosine from 1e-3 to 0 in each round
(``--schedule``), and searched with ``find_ticket(..., granularity="unit")``: whole filters,
each residual stream's channels pruned together across the ``Add`` they meet at, rewinding
to iteration ``--rewind-to`` (late rewinding).  Round 0 is the dense net; the ticket is the
last round.  The ticket is compacted (:func:`keras_lottery.compact`) and exported to float32
TFLite with ``batch_size=1``; its LiteRT latency is timed side by side with the dense
architecture's file (speed does not depend on the weights' values).

    PYTHONPATH=. python experiments/residual_mnist.py --seeds 0 1

writes ``results/residual_mnist_<rewind_to>_<schedule>_s<seed>.json`` per seed and prints the
table of the README (``--table``: every stored result).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")  # exports convert in a TensorFlow subprocess
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_lottery as kl  # noqa: E402

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
MNIST_DIR = ROOT.parent.parent / "shared" / "data" / "mnist"
sys.path.insert(0, str(ROOT.parent / "benchmarks"))


def resnet(seed: int, decay_steps: int | None = None) -> keras.Model:
    """The residual CNN, compiled with Adam 1e-3 (BatchNormalization momentum 0.9: short runs).

    With ``decay_steps`` the learning rate follows a cosine from 1e-3 to 0 over that many
    steps: every round's training ends on a settled net, so one round's last epoch is not
    judged mid-swing (the optimizer's iteration count restarts at the rewind point each round).
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers

    def conv_bn(x, filters, stride=1, size=3, name=""):
        x = layers.Conv2D(filters, size, stride, padding="same", use_bias=False, name=name)(x)
        return layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)

    def block(x, filters, stride, name):
        h = layers.ReLU()(conv_bn(x, filters, stride, name=f"{name}_a"))
        h = conv_bn(h, filters, name=f"{name}_b")
        if stride != 1 or x.shape[-1] != filters:
            x = conv_bn(x, filters, stride, size=1, name=f"{name}_proj")
        return layers.ReLU()(layers.Add(name=f"{name}_add")([x, h]))

    inputs = keras.Input((28, 28, 1))
    x = layers.ReLU()(conv_bn(inputs, 16, name="stem"))
    x = block(x, 16, 1, "block1")
    x = block(x, 32, 2, "block2")
    x = block(x, 64, 2, "block3")
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(10, name="logits")(x), name="resnet_mnist")
    rate = 1e-3
    if decay_steps is not None:
        rate = keras.optimizers.schedules.CosineDecay(1e-3, decay_steps)
    model.compile(
        keras.optimizers.Adam(rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def run(seed: int, data: kl.Dataset, args) -> dict:
    from structured_speed import litert_latency

    steps = args.epochs * -(-len(data.x_train) // 64) if args.schedule == "cosine" else None
    ticket = kl.find_ticket(
        resnet(seed, steps),
        data,
        granularity="unit",
        unit_criterion=args.criterion,
        rounds=args.rounds,
        rate=args.rate,
        rewind_to=args.rewind_to,
        epochs=args.epochs,
        batch_size=64,
        seed=seed,
        verbose=0,
    )
    rounds = ticket.lottery.rounds
    small, report = kl.compact(ticket)
    print(report.summary(), flush=True)
    x = data.x_test
    with tempfile.TemporaryDirectory() as folder:
        dense_file = Path(folder) / "dense.tflite"
        dense = kl.export(resnet(seed), dense_file, verify_data=x[:64], batch_size=1)
        compacted = kl.export(
            small, Path(folder) / "ticket.tflite", verify_data=(x, data.y_test), batch_size=1
        )
        latency = litert_latency({"dense": dense.path, "ticket": compacted.path}, x, 10, 300)
    result = {
        "seed": seed,
        "command": "python experiments/residual_mnist.py " + " ".join(sys.argv[1:]),
        "settings": vars(args) | {"seeds": None},
        "dense_test_accuracy": rounds[0].test_accuracy,
        "ticket_test_accuracy": rounds[-1].test_accuracy,
        "tflite_test_accuracy": compacted.exported_accuracy,
        "tflite_max_abs_diff": compacted.max_abs_diff,
        "params_dense": report.params_before,
        "params_compacted": report.params_after,
        "units": {k: list(v) for k, v in report.units.items()},
        "dense_ms": latency["dense"],
        "ticket_ms": latency["ticket"],
        "speedup": latency["dense"] / latency["ticket"],
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"residual_mnist_{args.rewind_to}_{args.schedule}_s{seed}.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| training per round | rewind to | seed | dense test acc | ticket test acc | Δ (points) | "
        "compacted TFLite test acc | parameters (dense → compacted) | "
        "LiteRT ms, batch 1 (dense / compacted) | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in results:
        delta = 100 * (r["ticket_test_accuracy"] - r["dense_test_accuracy"])
        settings = r["settings"]
        rewind = settings.get("rewind_to", "init")  # results written before the option
        rewind = "θ0" if rewind == "init" else f"iteration {rewind}"
        training = (
            f"{settings['train_size'] // 1000}k digits × {settings['epochs']} epochs, "
            f"{settings.get('schedule', 'constant')} rate"  # constant: before the option
        )
        lines.append(
            f"| {training} | {rewind} | {r['seed']} | {r['dense_test_accuracy']:.2%} | "
            f"{r['ticket_test_accuracy']:.2%} | "
            f"{delta:+.2f} | {r['tflite_test_accuracy']:.2%} | {r['params_dense']:,} → "
            f"{r['params_compacted']:,} | {r['dense_ms']:.4f} / {r['ticket_ms']:.4f} | "
            f"**{r['speedup']:.2f}x** |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-size", type=int, default=55000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.5, help="units pruned per round")
    parser.add_argument("--criterion", default="l1")
    parser.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        default="cosine",
        help="learning rate of every round: 1e-3 throughout, or a cosine from 1e-3 to 0",
    )
    parser.add_argument(
        "--rewind-to",
        type=lambda v: v if v == "init" else int(v),
        default=250,
        help="'init' (θ0) or an iteration (late rewinding; 250 is half of round 0)",
    )
    parser.add_argument("--table", action="store_true", help="print the table of all results")
    args = parser.parse_args()
    if args.table:
        found = [json.loads(f.read_text()) for f in RESULTS.glob("residual_mnist_*_s*.json")]
        found.sort(  # the current protocol (cosine) first, then by rewind point and seed
            key=lambda r: (
                r["settings"].get("schedule") != "cosine",
                str(r["settings"].get("rewind_to", "init")),
                r["seed"],
            )
        )
        print(table(found))
        return
    full = kl.load_dataset(str(MNIST_DIR))
    data = kl.Dataset(
        "mnist",
        full.x_train[: args.train_size, ..., None],
        full.y_train[: args.train_size],
        full.x_test[..., None],
        full.y_test,
    )
    results = [run(seed, data, args) for seed in args.seeds]
    print(table(results))


if __name__ == "__main__":
    main()

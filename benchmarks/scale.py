"""What a search costs beyond plain training as the model grows: memory, disk, time per round.

For each model, three fresh processes (nothing shared) train it on random data,
batch 8, ``--steps`` iterations per round:

* ``plain``: ``model.fit`` ``rounds + 1`` times (what the search's trainings cost);
* ``search``: ``find_ticket(rounds=..., steps=...)`` without a run directory;
* ``run_dir``: the same search checkpointing every round.

Each reports its peak resident memory above the memory after building the
model (``VmHWM``, reset then; Linux only), the run directory's size, the
seconds spent in checkpoints per round, and the marginal seconds of a round
beyond its training: the time between one round's ``fit`` ending and the
next one's starting (pruning, reset, checkpoint), plus how much longer the
round's ``fit`` took than a warm plain ``fit`` of as many steps.

    PYTHONPATH=. python benchmarks/scale.py --models lenet,resnet50 --rounds 2 --steps 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench  # noqa: E402

BATCH = 8


def build(name: str):
    """``(model, x, y)``: the model compiled with Adam, and 64 random examples."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 8 * BATCH
    if name == "lenet":
        from keras_lottery.zoo import lenet_300_100

        model = lenet_300_100(seed=0)
        x = rng.random((n, 28, 28), dtype=np.float32)
    elif name == "resnet50":
        model = keras.applications.ResNet50(input_shape=(64, 64, 3), weights=None, classes=10)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        x = rng.random((n, 64, 64, 3), dtype=np.float32)
    elif name == "bert":
        import keras_hub

        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=30522,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            intermediate_dim=3072,
            max_sequence_length=128,
        )
        inputs = backbone.input
        outputs = keras.layers.Dense(10, activation="softmax")(backbone(inputs)["pooled_output"])
        model = keras.Model(inputs, outputs)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        seq = 32
        x = {
            "token_ids": rng.integers(0, 30522, (n, seq)).astype("int32"),
            "segment_ids": np.zeros((n, seq), "int32"),
            "padding_mask": np.ones((n, seq), "int32"),
        }
    else:
        raise SystemExit(f"unknown model {name!r}; choose lenet, resnet50 or bert")
    y = rng.integers(0, 10, n)
    return model, x, y


def child(name: str, mode: str, rounds: int, steps: int) -> dict:
    """Run one configuration in this process and describe it."""
    import keras

    import keras_lottery as kl
    from keras_lottery import checkpoint

    model, x, y = build(name)
    params = sum(math.prod(v.shape) for v in model.weights)
    model_mb = params * 4 / 2**20
    times: list[tuple[str, float]] = []

    class Clock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            times.append(("begin", time.perf_counter()))

        def on_train_end(self, logs=None):
            times.append(("end", time.perf_counter()))

    saves: list[float] = []
    save = checkpoint.RunCheckpoint.save

    def timed_save(self, *args, **kwargs):
        t0 = time.perf_counter()
        save(self, *args, **kwargs)
        saves.append(time.perf_counter() - t0)

    checkpoint.RunCheckpoint.save = timed_save
    _bench.reset_peak_rss()
    base = _bench.rss_mb()
    t0 = time.perf_counter()
    run_dir = tempfile.mkdtemp(prefix="scale-") if mode == "run_dir" else None
    fit_seconds = []
    if mode == "plain":
        from keras_lottery.data import shuffled_batches

        data = shuffled_batches(x, y, BATCH, 0)
        for _ in range(rounds + 1):
            t = time.perf_counter()
            model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
            fit_seconds.append(time.perf_counter() - t)
    else:
        ticket = kl.find_ticket(
            model,
            (x, y),
            rounds=rounds,
            steps=steps,
            batch_size=BATCH,
            seed=0,
            run_dir=run_dir,
            callbacks=[Clock()],
            verbose=0,
        )
        fit_seconds = [r.seconds for r in ticket.lottery.rounds]
    total = time.perf_counter() - t0
    gaps = [times[i + 1][1] - times[i][1] for i in range(1, len(times) - 1, 2)]
    size = 0
    if run_dir is not None:
        for root, _, files in os.walk(run_dir):
            size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return {
        "model": name,
        "mode": mode,
        "params": params,
        "model_mb": model_mb,
        "peak_extra_mb": _bench.peak_rss_mb() - base,
        "seconds": total,
        "fit_seconds": fit_seconds,
        "between_rounds": gaps,
        "checkpoint_seconds": saves,
        "run_dir_mb": size / 2**20,
    }


def measure(name: str, mode: str, rounds: int, steps: int) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [sys.executable, __file__, "--child", name, mode, str(rounds), str(steps)]
    out = subprocess.run(args, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{name}/{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    rows = [
        "| model | parameters | model MB | plain-fit peak MB | search extra peak MB "
        "(no run_dir / run_dir) | run dir MB | checkpoint s/round | marginal s/round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(r["model"], r["mode"]): r for r in results}
    for name in dict.fromkeys(r["model"] for r in results):
        plain, search, ckpt = by[name, "plain"], by[name, "search"], by[name, "run_dir"]
        warm = _bench.median(plain["fit_seconds"][1:])  # a warm fit of one round's steps
        marginal = [
            gap + max(0.0, fit - warm)
            for gap, fit in zip(ckpt["between_rounds"], ckpt["fit_seconds"][1:])
        ]
        rows.append(
            f"| {name} | {plain['params'] / 1e6:.2f} M | {plain['model_mb']:.0f} "
            f"| {plain['peak_extra_mb']:.0f} "
            f"| {search['peak_extra_mb'] - plain['peak_extra_mb']:+.0f} / "
            f"{ckpt['peak_extra_mb'] - plain['peak_extra_mb']:+.0f} "
            f"| {ckpt['run_dir_mb']:.1f} | {_bench.median(ckpt['checkpoint_seconds']):.2f} "
            f"| {_bench.median(marginal):.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        name, mode, rounds, steps = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        _bench.set_threads(2)
        print(json.dumps(child(name, mode, rounds, steps)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet,resnet50")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    results = []
    for name in args.models.split(","):
        for mode in ("plain", "search", "run_dir"):
            results.append(measure(name, mode, args.rounds, args.steps))
            print(json.dumps(results[-1]), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(_bench.versions())
    print(table(results))


if __name__ == "__main__":
    main()

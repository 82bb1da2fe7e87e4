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

    PYTHONPATH=. python benchmarks/scale.py --models lenet,resnet50,bert --rounds 2,4 --steps 2 \
        --plot benchmarks/scale.png

``--rounds 2,4`` runs the two searches at each round count (plain ``fit`` once,
at the largest), to show what grows with rounds: nothing should.
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
    from keras_lottery.records import checkpoint

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
        from keras_lottery.data.datasets import shuffled_batches

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


def marginal(plain: dict, ckpt: dict) -> list[float]:
    """Seconds per round beyond training: the gap between fits plus a slower fit's excess."""
    warm = _bench.median(plain["fit_seconds"][1:])  # a warm fit of one round's steps
    return [
        gap + max(0.0, fit - warm)
        for gap, fit in zip(ckpt["between_rounds"], ckpt["fit_seconds"][1:])
    ]


def rows(results: list[dict]) -> list[dict]:
    """One row per (model, rounds): the search's cost over plain ``fit``."""
    plains = {r["model"]: r for r in results if r["mode"] == "plain"}
    by = {(r["model"], r["rounds"], r["mode"]): r for r in results}
    out = []
    for (name, rounds, mode), ckpt in by.items():
        if mode != "run_dir":
            continue
        plain, search = plains[name], by[name, rounds, "search"]
        out.append(
            {
                "model": name,
                "rounds": rounds,
                "params": plain["params"],
                "model_mb": plain["model_mb"],
                "plain_peak_mb": plain["peak_extra_mb"],
                "search_extra_mb": search["peak_extra_mb"] - plain["peak_extra_mb"],
                "run_dir_extra_mb": ckpt["peak_extra_mb"] - plain["peak_extra_mb"],
                "run_dir_mb": ckpt["run_dir_mb"],
                "checkpoint_s": _bench.median(ckpt["checkpoint_seconds"]),
                "marginal_s": _bench.median(marginal(plain, ckpt)),
            }
        )
    return out


def table(results: list[dict]) -> str:
    lines = [
        "| model | rounds | parameters | model MB | plain-fit peak MB | search extra peak MB "
        "(no run_dir / run_dir) | run dir MB (x model) | checkpoint s/round "
        "| marginal s/round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows(results):
        lines.append(
            f"| {r['model']} | {r['rounds']} | {r['params'] / 1e6:.2f} M | {r['model_mb']:.0f} "
            f"| {r['plain_peak_mb']:.0f} "
            f"| {r['search_extra_mb']:+.0f} / {r['run_dir_extra_mb']:+.0f} "
            f"| {r['run_dir_mb']:.1f} ({r['run_dir_mb'] / r['model_mb']:.2f}x) "
            f"| {r['checkpoint_s']:.2f} | {r['marginal_s']:.2f} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: str) -> None:
    """Extra memory and run-directory size against the model's size, per round count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = rows(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for rounds in sorted({r["rounds"] for r in data}):
        sel = sorted((r for r in data if r["rounds"] == rounds), key=lambda r: r["model_mb"])
        mb = [r["model_mb"] for r in sel]
        left.plot(mb, [r["run_dir_mb"] for r in sel], "o-", label=f"run dir, {rounds} rounds")
        left.plot(
            mb,
            [max(r["run_dir_extra_mb"], 0.5) for r in sel],
            "s--",
            label=f"search extra peak, {rounds} rounds",
        )
        right.plot(mb, [r["marginal_s"] for r in sel], "o-", label=f"{rounds} rounds")
    mb = sorted({r["model_mb"] for r in data})
    for factor, style in ((1.5, ":"), (3, "-.")):
        left.plot(mb, [factor * m for m in mb], "k" + style, lw=0.8, label=f"{factor:g}x model")
    left.set(xscale="log", yscale="log", xlabel="model MB (float32)", ylabel="MB")
    left.set_title("memory and disk beyond plain fit")
    right.axhline(1.0, color="k", ls=":", lw=0.8, label="1 s target")
    right.set(xscale="log", xlabel="model MB (float32)", ylabel="seconds per round")
    right.set_title("marginal cost of a round beyond its steps")
    for ax in (left, right):
        for r in data:
            if r["rounds"] == min(x["rounds"] for x in data):
                ax.annotate(r["model"], (r["model_mb"], ax.get_ylim()[0]), fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        name, mode, rounds, steps = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        _bench.set_threads(2)
        print(json.dumps(child(name, mode, rounds, steps)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet,resnet50")
    parser.add_argument("--rounds", default="2", help="round counts, e.g. 2,4")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--plot", help="write the plot (PNG) here")
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.rounds.split(","))
    results = []
    for name in args.models.split(","):
        runs = [("plain", counts[-1])] + [(m, n) for n in counts for m in ("search", "run_dir")]
        for mode, rounds in runs:
            results.append({**measure(name, mode, rounds, args.steps), "rounds": rounds})
            print(json.dumps(results[-1]), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)
    print(_bench.versions())
    print(table(results))


if __name__ == "__main__":
    main()

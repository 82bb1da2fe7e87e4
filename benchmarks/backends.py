"""Masks on the TensorFlow and JAX backends: step time and a whole search, side by side.

Step time: in one worker process per backend, LeNet-300-100 on real MNIST and a
transformer block (MHA with raw-op residuals, ``tests/matrix.py``) on random
tokens, batch 60: the plain model, its ``MaskedModel`` with all masks 1 and one
with 90% of every weight matrix pruned train one epoch each in turn (after a
warm-up epoch each); the ratio of medians is the mask overhead on that backend.
LeNet-300-100 also runs with ``--steps-per-execution`` steps per compiled call.

Search: one worker per backend runs the same ``find_ticket`` on LeNet-300-100
(``--rounds`` prunings of ``--steps`` iterations), with one step and with
``--steps-per-execution`` steps per compiled call, alternating backends, so
machine noise hits both alike.

    PYTHONPATH=. python benchmarks/backends.py --repeats 5
    PYTHONPATH=. python benchmarks/backends.py --part search --rounds 3 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bench  # noqa: E402

BACKENDS = ("tensorflow", "jax")


# -- the worker side (runs under one backend) ---------------------------------


def _transformer_block():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    import numpy as np
    from matrix import transformer_block

    model, _, _ = transformer_block(np.random.default_rng(0))
    return model


def _with_steps_per_execution(model, spe: int):
    model.compile_from_config({**model.get_compile_config(), "steps_per_execution": spe})
    return model


def _models(name: str, spe: int):
    import keras

    import keras_lottery as kl

    def build():
        if name == "lenet_300_100":
            return _bench.lenet(keras)
        return _transformer_block()

    def masked(sparsity):
        source = build()
        model = _bench.prune_randomly(kl.make_prunable(source), sparsity)
        model.compile_from_config(source.get_compile_config())
        return model

    models = {"plain": build(), "masked 0%": masked(0.0), "masked 90%": masked(0.9)}
    if name == "lenet_300_100" and spe > 1:
        models[f"plain, {spe} steps/call"] = _with_steps_per_execution(build(), spe)
        models[f"masked 0%, {spe} steps/call"] = _with_steps_per_execution(masked(0.0), spe)
    return models


def _data(name: str, args):
    import numpy as np

    if name == "lenet_300_100":
        return _bench.mnist(args.data, args.train_size)
    rng = np.random.default_rng(0)
    n = args.train_size or 6000
    return rng.normal(size=(n, 8, 16)).astype("float32"), rng.integers(0, 3, n)


def worker(args) -> None:
    import keras

    if args.part == "steps":
        models, data = {}, {}
        for name in ("lenet_300_100", "transformer_block"):
            x, y = _data(name, args)
            data[name] = (_bench.batches(x, y), -(-len(x) // 60))
            for label, model in _models(name, args.steps_per_execution).items():
                model.fit(data[name][0], epochs=1, verbose=0)  # warm-up: tracing
                models[(name, label)] = model

        def step():
            out = {}
            for (name, label), model in models.items():
                out[f"{name}|{label}"] = _bench.timed(
                    lambda m=model, n=name: m.fit(data[n][0], epochs=1, verbose=0)
                )()
            return out

        ready = {"steps": {name: s for name, (_, s) in data.items()}}
    else:
        import keras_lottery as kl

        x, y = _bench.mnist(args.data, args.train_size)

        def search(spe):
            model = _with_steps_per_execution(_bench.lenet(keras), spe)
            return _bench.timed(
                lambda: kl.find_ticket(
                    model, (x, y), rounds=args.rounds, steps=args.steps, seed=0, verbose=0
                )
            )()

        def step():
            out = {"search": search(1)}
            if args.steps_per_execution > 1:
                out[f"search, {args.steps_per_execution} steps/call"] = search(
                    args.steps_per_execution
                )
            return out

        step()  # warm-up
        ready = {}
    _bench.serve(step, {"backend": keras.backend.backend(), **ready})


# -- the driver ---------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["steps", "search"], default="steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default=str(_bench.MNIST))
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--steps-per-execution", type=int, default=50)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    argv = [os.path.abspath(__file__), "--worker", *sys.argv[1:]]
    workers = {}
    for backend in BACKENDS:
        os.environ["KERAS_BACKEND"] = backend
        workers[backend] = _bench.Worker(argv)
    times: dict[str, dict[str, list[float]]] = {b: {} for b in BACKENDS}
    try:
        for _ in range(args.repeats):
            for backend, w in workers.items():
                for key, seconds in w.send().items():
                    times[backend].setdefault(key, []).append(seconds)
    finally:
        for w in workers.values():
            w.close()
    print(f"{_bench.versions()}, {args.repeats} alternating repeats\n")
    if args.part == "steps":
        steps = workers["tensorflow"].ready["steps"]
        print("| backend | model | variant | median epoch (s) | range (s) | ms / step | ratio |")
        print("|---|---|---|---:|---:|---:|---:|")
        for backend in BACKENDS:
            for key, ts in times[backend].items():
                name, label = key.split("|")
                base = _bench.median(times[backend][f"{name}|plain"])
                cells = _bench.epoch_cells(ts, steps[name])
                print(
                    f"| {backend} | {name} | {label} | {cells} | {_bench.median(ts) / base:.3f} |"
                )
    else:
        tf_med = _bench.median(times["tensorflow"]["search"])
        print(
            f"LeNet-300-100 search, {args.rounds} rounds x {args.steps} iterations "
            f"({args.rounds + 1} trainings), batch 60, real MNIST\n"
        )
        print("| backend | variant | median (s) | range (s) | speed-up vs TF, 1 step/call |")
        print("|---|---|---:|---:|---:|")
        for backend in BACKENDS:
            for key, ts in times[backend].items():
                variant = key.partition(", ")[2] or "1 step/call"
                print(
                    f"| {backend} | {variant} | {_bench.median(ts):.1f} | {_bench.spread(ts)} | "
                    f"{tf_med / _bench.median(ts):.2f}x |"
                )
    print(json.dumps(times), file=sys.stderr)


if __name__ == "__main__":
    main()

"""Print a SHA-256 of what a set of small searches produce, to compare two versions.

Not a test: it pins nothing.  Run it on two checkouts (e.g. before and after a
refactoring that must not change behaviour) and compare the output::

    PYTHONPATH=<checkout> python tests/search_digest.py > before.txt
    KERAS_BACKEND=jax PYTHONPATH=<checkout> python tests/search_digest.py > before-jax.txt

Each line is ``<case> <what> <sha256>``: the record's configuration, every
round's masks and metrics (not its wall times), the rewind weights, the final
weights (masks included), run ids and a run directory's fingerprint.  The cases
cover the strategies, granularities, scopes, one-shot, late rewinding,
early-bird and resuming an interrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lottery as kl  # noqa: E402
from keras_lottery.runs import directory as runs  # noqa: E402

DATA = kl.load_dataset("mnist-5k").subset(300, 100)
BASE = dict(steps=20, rounds=2, seed=1, batch_size=30, verbose=0)


def dense(seed: int = 0, optimizer=None) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu", name="h1"),
            keras.layers.Dense(16, activation="relu", name="h2"),
            keras.layers.Dense(10, name="out"),
        ],
        name="dense_net",
    )
    model.compile(
        optimizer or keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def conv(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(8, 3, activation="relu", name="c2"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="out"),
        ],
        name="conv_net",
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


CASES = {
    "rewind": (dense, {}),
    "reinit": (dense, {"strategy": "reinit"}),
    "rearrange": (dense, {"strategy": "rearrange"}),
    "random_prune": (dense, {"strategy": "random_prune"}),
    "continue": (dense, {"strategy": "continue"}),
    "finetune": (dense, {"strategy": "finetune", "finetune_lr_scale": 0.5}),
    "lr_rewind": (dense, {"strategy": "lr_rewind", "rewind_to": 5}),
    "late_rewind": (dense, {"rewind_to": 5}),
    "global": (dense, {"scope": "global", "rate": 0.4}),
    "one_shot": (dense, {"one_shot": True, "rate": 0.5}),
    "layer_rates": (dense, {"output_rate": 0.1, "layer_rates": {"h2": 0.6}}),
    "target": (dense, {"target_sparsity": 0.7}),
    "unit": (dense, {"granularity": "unit", "rate": 0.3}),
    "unit_rearrange": (dense, {"granularity": "unit", "strategy": "rearrange"}),
    "unit_random": (dense, {"granularity": "unit", "strategy": "random_prune"}),
    "unit_product": (dense, {"granularity": "unit", "unit_criterion": "product"}),
    "n_m": (dense, {"granularity": "2:4"}),
    "n_m_random": (dense, {"granularity": "2:4", "strategy": "random_prune"}),
    "early_bird": (dense, {"early_bird": True, "validation_split": 0.2, "eval_every": 10}),
    "filter": (conv, {"granularity": "unit", "rate": 0.3}),
    "filter_output": (conv, {"granularity": "unit", "unit_criterion": "output"}),
    "filter_reinit": (conv, {"granularity": "unit", "strategy": "reinit"}),
    "conv_n_m": (conv, {"granularity": "2:4"}),
    "conv_global": (conv, {"scope": "global", "include": "*/c?/kernel"}),
}
#: Interrupted at the named round's start, then resumed in the same run directory.
RESUMED = {
    "resume_rewind": (dense, {}, 1),
    "resume_reinit": (dense, {"strategy": "reinit"}, 2),
    "resume_lr_rewind": (dense, {"strategy": "lr_rewind", "rewind_to": 5}, 1),
    "resume_continue": (dense, {"strategy": "continue", "rounds": 3}, 2),
    "resume_late_rewind": (conv, {"rewind_to": 5, "granularity": "unit"}, 2),
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def json_sha(obj) -> str:
    return sha(json.dumps(obj, sort_keys=True, default=str).encode())


def arrays_sha(arrays) -> str:
    h = hashlib.sha256()
    for name, value in arrays:
        value = np.ascontiguousarray(np.asarray(value))
        h.update(f"{name}:{value.dtype}:{value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()[:16]


#: A round's wall times (its fit, and outside training by place): not behaviour.
TIMINGS = ("seconds", "outside")


def describe(name: str, ticket) -> list[str]:
    record = ticket.lottery
    lines = [f"{name} config {json_sha(record.config)}"]
    for r in record.rounds:
        metrics = {k: v for k, v in r.to_dict().items() if k not in TIMINGS}
        lines.append(f"{name} round{r.round}.metrics {json_sha(metrics)}")
        lines.append(f"{name} round{r.round}.masks {arrays_sha(sorted(r.masks.items()))}")
    lines.append(f"{name} rewind {arrays_sha(sorted(record.rewind_weights.items()))}")
    lines.append(f"{name} weights {arrays_sha((v.path, v) for v in ticket.weights)}")
    return lines


class Interrupt(keras.callbacks.Callback):
    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def on_train_begin(self, logs=None):
        if self.calls == self.at:
            raise KeyboardInterrupt
        self.calls += 1


def main() -> None:
    only = set(sys.argv[1:])
    print(f"backend {keras.backend.backend()}", flush=True)
    for name, (build, options) in CASES.items():
        if only and name not in only:
            continue
        ticket = kl.find_ticket(build(), DATA, **{**BASE, **options})
        print("\n".join(describe(name, ticket)), flush=True)
    for name, (build, options, at) in RESUMED.items():
        if only and name not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            opts = {**BASE, **options, "run_dir": run_dir}
            try:
                kl.find_ticket(build(), DATA, callbacks=[Interrupt(at)], **opts)
                raise AssertionError("not interrupted")
            except KeyboardInterrupt:
                pass
            resumed = kl.find_ticket(build(), DATA, **opts)
            manifest = json.loads((run_dir / "checkpoint.json").read_text())
            fingerprint = json.dumps(manifest.get("fingerprint"), sort_keys=True)
            fingerprint = fingerprint.replace(str(run_dir), "<run_dir>")
            # the run directory's path is in the configuration: digest it without
            resumed.lottery.config["run_dir"] = "<run_dir>"
            lines = describe(name, resumed)
            lines.append(f"{name} fingerprint {sha(fingerprint.encode())}")
            print("\n".join(lines), flush=True)
    for config in ({}, {"rounds": 3, "strategy": "reinit"}, {"granularity": "2:4", "seed": 3}):
        run_id = runs.config_hash(runs.normalize_config(config))
        print(f"run_id {json.dumps(config, sort_keys=True)} {run_id}", flush=True)


if __name__ == "__main__":
    main()

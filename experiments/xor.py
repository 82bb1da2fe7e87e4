"""XOR with one hidden layer (2018 version of the paper, first experiment).

    PYTHONPATH=. nice -n 10 python experiments/xor.py --trials 100

Per trial (seed) it trains, each with one ``fit`` of ``--steps`` full-batch steps:
2- and 4-unit nets from scratch, and 10-unit nets pruned to 4 and 2 hidden units
(``granularity='unit'``) and reset to θ0, iteratively (20% of units per round:
10 -> 8 -> 6 -> 5 -> 4 -> 3 -> 3 -> 2) and one-shot, for each unit criterion.
Round 0 of the iterative search is the 10-unit net from scratch.  A trial
succeeds if all four points are classified correctly and the loss is < 0.1.
Results go to ``experiments/results/xor_trials.jsonl`` (one line per seed,
resumable) and the summary to ``experiments/results/xor_summary.json``.
"""

from __future__ import annotations

import argparse
import json

from common import RESULTS, Timer, keras, kl, np, pin_threads, save_json, tf

from keras_lottery.criteria.magnitude import UNIT_CRITERIA
from keras_lottery.zoo import xor

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], "float32")
Y = np.array([0, 1, 1, 0], "float32")
LOSS_OK = 0.1
#: iterative rounds at rate 0.2 after which 4 and 2 hidden units are left
ROUND_FOR_UNITS = {4: 4, 2: 7}


def success(loss: float, acc: float) -> bool:
    return bool(acc == 1.0 and loss < LOSS_OK)


#: optimizer steps run inside one compiled call: Keras's per-step Python overhead
#: dominates a 4-example problem (``steps`` must be a multiple of it)
STEPS_PER_EXECUTION = 50


def model(units: int, seed: int) -> keras.Model:
    """The zoo's XOR net (Glorot-normal, Adam 1e-2), compiled for fast fitting."""
    net = xor(seed=seed, units=units)
    net.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return net


def evaluate(net) -> tuple[float, float]:
    p = np.asarray(net(X, training=False))[:, 0]
    loss = float(keras.ops.mean(keras.losses.binary_crossentropy(Y[:, None], p[:, None])))
    return loss, float(np.mean((p > 0.5) == (Y > 0.5)))


def scratch(units: int, seed: int, steps: int) -> dict:
    """A net with ``units`` hidden units trained from its random init."""
    net = model(units, seed)
    keras.utils.set_random_seed(seed)
    ds = tf.data.Dataset.from_tensor_slices((X, Y)).batch(4).repeat()
    net.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    loss, acc = evaluate(net)
    return {"loss": loss, "acc": acc, "ok": success(loss, acc)}


def _hidden_units(record_round) -> int:
    hidden = next(iter(record_round.masks.values()))
    return int((hidden.sum(axis=0) > 0).sum())


class Outcomes(keras.callbacks.Callback):
    """Loss and accuracy on the four points at the end of every round's fit.

    (Cheaper than ``test_data``, whose evaluator compiles a predict function
    per model.)
    """

    def __init__(self):
        super().__init__()
        self.results: list[tuple[float, float]] = []

    def on_train_end(self, logs=None):
        self.results.append(evaluate(self.model))


def _outcome(rnd, result) -> dict:
    loss, acc = result
    return {"loss": loss, "acc": acc, "ok": success(loss, acc), "units": _hidden_units(rnd)}


def pruned(seed: int, steps: int, criterion: str, one_shot: bool, units: int | None = None):
    """10-unit net pruned by units and reset to θ0; returns {units: outcome}."""
    rounds = ROUND_FOR_UNITS[units] if one_shot else max(ROUND_FOR_UNITS.values())
    spy = Outcomes()
    ticket = kl.find_ticket(
        model(10, seed),
        (X, Y),
        callbacks=[spy],
        rounds=rounds,
        rate=0.2,
        one_shot=one_shot,
        granularity="unit",
        unit_criterion=criterion,
        steps=steps,
        batch_size=4,
        seed=seed,
        verbose=0,
    )
    rs, res = ticket.lottery.rounds, spy.results
    if one_shot:
        return {"dense10": _outcome(rs[0], res[0]), units: _outcome(rs[-1], res[-1])}
    by_units = {u: _outcome(rs[r], res[r]) for u, r in ROUND_FOR_UNITS.items()}
    return {"dense10": _outcome(rs[0], res[0]), **by_units}


def trial(seed: int, steps: int) -> dict:
    out = {"seed": seed, "steps": steps}
    out["scratch2"] = scratch(2, seed, steps)
    out["scratch4"] = scratch(4, seed, steps)
    for c in UNIT_CRITERIA:
        it = pruned(seed, steps, c, one_shot=False)
        out["scratch10"] = it["dense10"]
        for u in ROUND_FOR_UNITS:
            assert it[u]["units"] == u, it[u]
            out[f"iter_{c}_{u}"] = it[u]
            one = pruned(seed, steps, c, one_shot=True, units=u)
            assert one[u]["units"] == u, one[u]
            out[f"oneshot_{c}_{u}"] = one[u]
    return out


def summarize(trials: list[dict]) -> dict:
    keys = [k for k in trials[0] if isinstance(trials[0][k], dict)]
    summary = {}
    for k in keys:
        oks = [t[k]["ok"] for t in trials]
        p = float(np.mean(oks))
        summary[k] = {
            "success_rate": p,
            "successes": int(np.sum(oks)),
            "trials": len(oks),
            "stderr": float(np.sqrt(p * (1 - p) / len(oks))),
        }
    return summary


def main(argv=None):
    pin_threads()
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--out", default="xor_trials.jsonl")
    args = ap.parse_args(argv)
    path = RESULTS / args.out
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = [t for t in done if t["steps"] == args.steps]
    seen = {t["seed"] for t in done}
    for seed in range(args.trials):
        if seed in seen:
            continue
        with Timer() as t:
            result = trial(seed, args.steps)
        result["seconds"] = t.seconds
        done.append(result)
        with open(path, "a") as f:
            f.write(json.dumps(result) + "\n")
        print(f"seed {seed}: {t.seconds:.1f}s", flush=True)
    summary = summarize(sorted(done, key=lambda t: t["seed"]))
    save_json("xor_summary.json", {"steps": args.steps, "loss_ok": LOSS_OK, "summary": summary})
    for k, v in summary.items():
        print(f"{k:>20} {v['successes']:>4}/{v['trials']:<4} {v['success_rate']:.2f}")


if __name__ == "__main__":
    main()

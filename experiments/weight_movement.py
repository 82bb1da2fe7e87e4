"""Weight movement and connectivity of the LeNet-300-100 winning ticket.

    PYTHONPATH=. python experiments/weight_movement.py [--run lenet_rewind_s0_r15]

Reads a finished ``--strategy rewind`` run: θ0 (``record.rewind_weights``), the
masks of every round (``record.rounds[i].masks``) and the dense trained
weights of round 0 (``dense_round0.npz``, saved by ``lenet_mnist.py``'s
callback).  Writes ``experiments/results/weight_movement.json``.

* movement: ``|θ_trained - θ0|`` during the dense round-0 training, for the
  weights that survive into a given round's mask vs the weights pruned by then;
  also their initial magnitudes ``|θ0|``;
* connectivity of the survivors: incoming connections per unit of each layer,
  units with no incoming or no outgoing connection, input pixels left unused.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import RUNS, kl, save_json

from keras_lottery.records.record import LotteryRecord


def movement(theta0, trained, mask) -> dict:
    """:func:`keras_lottery.weight_movement` of one layer, in this results file's keys."""
    row = kl.weight_movement({"w": theta0}, {"w": trained}, {"w": mask})["w"]
    for side in ("kept", "pruned"):
        row[f"mean_abs_theta0_{side}"] = row.pop(f"mean_abs_initial_{side}")
    return row


def connectivity(masks: list[np.ndarray]) -> list[dict]:
    """:func:`keras_lottery.connectivity` per Dense layer, plus units cut on both sides."""
    rows = kl.connectivity({str(i): m for i, m in enumerate(masks)})
    for i, row in enumerate(rows):
        row["layer"] = int(row.pop("weight"))
        if "units_dead" in row:
            fan_in, fan_out = masks[i].sum(axis=0), masks[i + 1].sum(axis=1)
            row["units_fully_disconnected"] = int(((fan_in == 0) & (fan_out == 0)).sum())
            row["units_dead_either_side"] = row.pop("units_dead")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", default="lenet_rewind_s0_r15")
    ap.add_argument("--rounds", default="1,3,7,11,15", help="masks to analyse")
    args = ap.parse_args(argv)
    run = RUNS / args.run
    record = LotteryRecord.load(run)
    with np.load(run / "dense_round0.npz") as f:
        trained = {k: f[k] for k in f.files}
    names = list(trained)
    theta0 = {n: record.rewind_weights[n] for n in names}
    result = {"run": args.run, "layers": names, "movement": {}, "connectivity": {}}
    for r in (int(x) for x in args.rounds.split(",")):
        if r >= len(record.rounds):
            continue
        rnd = record.rounds[r]
        key = f"round{r} ({rnd.percent_remaining:.1f}% remaining)"
        masks = [rnd.masks[n] for n in names]
        result["movement"][key] = {
            n: movement(theta0[n], trained[n], m) for n, m in zip(names, masks)
        }
        result["connectivity"][key] = connectivity(masks)
    path = save_json("weight_movement.json", result)
    for key, layers in result["movement"].items():
        print(key)
        for n, d in layers.items():
            print(
                f"  {n:>16} kept {d['kept_fraction']:.3f}  move kept {d['mean_move_kept']:.4f}"
                f" pruned {d['mean_move_pruned']:.4f}  |θ0| kept {d['mean_abs_theta0_kept']:.4f}"
                f" pruned {d['mean_abs_theta0_pruned']:.4f}"
            )
        for row in result["connectivity"][key]:
            print("  ", row)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

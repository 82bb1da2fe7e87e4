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
from common import RUNS, save_json

from keras_lottery.record import LotteryRecord


def movement(theta0, trained, mask) -> dict:
    delta = np.abs(trained - theta0)
    keep, pruned = mask > 0, mask == 0
    out = {
        "kept_fraction": float(keep.mean()),
        "mean_move_kept": float(delta[keep].mean()),
        "mean_move_pruned": float(delta[pruned].mean()) if pruned.any() else None,
        "mean_abs_theta0_kept": float(np.abs(theta0[keep]).mean()),
        "mean_abs_theta0_pruned": float(np.abs(theta0[pruned]).mean()) if pruned.any() else None,
    }
    if out["mean_move_pruned"]:
        out["move_ratio_kept_over_pruned"] = out["mean_move_kept"] / out["mean_move_pruned"]
    return out


def connectivity(masks: list[np.ndarray]) -> list[dict]:
    """Per Dense layer: incoming connections per unit and disconnected units."""
    rows = []
    for i, m in enumerate(masks):
        fan_in = m.sum(axis=0)  # per output unit of this layer
        row = {
            "layer": i,
            "shape": list(m.shape),
            "remaining": float(m.mean()),
            "in_per_unit_mean": float(fan_in.mean()),
            "in_per_unit_min": int(fan_in.min()),
            "in_per_unit_max": int(fan_in.max()),
            "units_no_input": int((fan_in == 0).sum()),
        }
        if i + 1 < len(masks):
            fan_out = masks[i + 1].sum(axis=1)
            row["units_no_output"] = int((fan_out == 0).sum())
            row["units_fully_disconnected"] = int(((fan_in == 0) & (fan_out == 0)).sum())
            row["units_dead_either_side"] = int(((fan_in == 0) | (fan_out == 0)).sum())
        if i == 0:
            row["inputs_unused"] = int((m.sum(axis=1) == 0).sum())
        rows.append(row)
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

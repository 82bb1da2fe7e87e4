"""The record of a ticket search: what each round kept and how it trained."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keras_lottery.records.cost import Cost
from keras_lottery.records.files import atomic_write, json_safe


@dataclass
class RoundRecord:
    """One round: the mask it trained with and how training went.

    ``early_stop_iteration`` is the training iteration of minimum validation
    loss (Frankle & Carbin's convergence measure); the ``early_stop_*``
    accuracies are measured at that iteration.  ``curve`` holds every
    evaluation point as ``{"iteration", "val_loss", "val_accuracy"[, "test_*"]}``.
    With ``early_bird``, ``early_bird_iteration`` is where a pruning round
    stopped (``None``: it trained its full length), ``early_bird_reason`` why it
    ended ("mask settled", "ran full length: mask kept moving", "ran full
    length: fewer checks than the window"; ``None`` in records written before
    the field existed, and for unwatched rounds) and ``mask_distances`` the
    checks as ``{"iteration", "distance"}``.  ``seconds`` is the wall time of
    the round's ``fit``; ``outside`` the round's wall time outside training by
    place (:data:`~keras_lottery.records.cost.PLACES`; empty in records written
    before it existed).
    """

    round: int
    sparsity: float
    layer_sparsity: dict[str, float]
    iterations: int = 0
    seconds: float = 0.0
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    early_stop_iteration: int | None = None
    early_stop_val_loss: float | None = None
    early_stop_val_accuracy: float | None = None
    early_stop_test_accuracy: float | None = None
    #: sparsity counting the weights that cannot influence the output (None: not a chain)
    effective_sparsity: float | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    early_bird_iteration: int | None = None
    early_bird_reason: str | None = None
    mask_distances: list[dict[str, float]] = field(default_factory=list)
    outside: dict[str, float] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def percent_remaining(self) -> float:
        """Percent of prunable weights still present (the paper's Pm)."""
        return 100.0 * (1.0 - self.sparsity)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metrics (masks left out: see :meth:`LotteryRecord.save`)."""
        d = asdict(self)
        d.pop("masks")
        d["percent_remaining"] = self.percent_remaining
        return d


@dataclass
class LotteryRecord:
    """Everything a search did, reachable as ``model.lottery`` on its result.

    ``rewind_weights`` are the values survivors were reset to each round
    (θ0, or θk for late rewinding), keyed by variable path.  ``cost`` is what
    the ticket cost from a random network (:class:`~keras_lottery.records.cost.Cost`;
    ``None`` in records written before it existed).
    """

    config: dict[str, Any]
    rounds: list[RoundRecord] = field(default_factory=list)
    rewind_weights: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    cost: Cost | None = None

    @property
    def final(self) -> RoundRecord:
        """The last round: the trained ticket."""
        return self.rounds[-1]

    def to_dict(self) -> dict[str, Any]:
        d = {"config": self.config, "rounds": [r.to_dict() for r in self.rounds]}
        if self.cost is not None:
            d["cost"] = self.cost.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], masks=lambda round_: {}) -> LotteryRecord:
        """Read back :meth:`to_dict`; ``masks(round)`` gives each round's masks."""
        cost = data.get("cost")
        record = cls(config=data["config"], cost=None if cost is None else Cost.from_dict(cost))
        names = {f.name for f in dataclasses.fields(RoundRecord)} - {"masks"}
        for rd in data["rounds"]:
            values = {k: v for k, v in rd.items() if k in names}
            record.rounds.append(RoundRecord(**values, masks=masks(rd["round"])))
        return record

    def to_json(self) -> str:
        return json.dumps(json_safe(self.to_dict()), indent=2)

    def summary(self) -> str:
        """A plain-text table: one line per round, then the cost."""
        cols = ("round", "remain%", "val_acc", "test_acc", "es_iter", "iters")
        lines = [" ".join(f"{c:>8}" for c in cols)]
        for r in self.rounds:
            lines.append(
                f"{r.round:>8} {r.percent_remaining:>8.2f} {_fmt(r.val_accuracy):>8} "
                f"{_fmt(r.test_accuracy):>8} {str(r.early_stop_iteration):>8} {r.iterations:>8}"
            )
        if self.cost is not None:
            lines += self.cost.lines()
        return "\n".join(lines)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``record.json`` and ``masks.npz`` (atomically) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"round{r.round}/{name}": m for r in self.rounds for name, m in r.masks.items()}
        arrays.update({f"rewind/{k}": v for k, v in self.rewind_weights.items()})
        atomic_write(directory / "masks.npz", lambda f: np.savez_compressed(f, **arrays))
        atomic_write(directory / "record.json", lambda f: f.write(self.to_json().encode()))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> LotteryRecord:
        """Read back what :meth:`save` wrote."""
        directory = Path(directory)
        data = json.loads((directory / "record.json").read_text())
        with np.load(directory / "masks.npz") as arrays:

            def masks(round_):
                prefix = f"round{round_}/"
                return {k[len(prefix) :]: arrays[k] for k in arrays.files if k.startswith(prefix)}

            record = cls.from_dict(data, masks)
            record.rewind_weights = {
                k[len("rewind/") :]: arrays[k] for k in arrays.files if k.startswith("rewind/")
            }
        return record


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"

"""Progress of a search: a line per round on the console and JSON lines for batch systems."""

from __future__ import annotations

import datetime
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from keras_lottery import sparsity
from keras_lottery.records.files import json_safe
from keras_lottery.records.record import LotteryRecord


def _clock(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=round(seconds)))


def write_jsonl(path: str | os.PathLike, obj: Mapping[str, Any]) -> None:
    """Append one JSON object as one line (a single write, safe to share between processes)."""
    line = json.dumps(json_safe(dict(obj)), default=str) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


class RoundProgress(keras.callbacks.Callback):
    """Announce each round, and report it once its checkpoint is written.

    ``find_ticket`` calls ``fit`` once per round and checkpoints the round's
    record into ``run_dir`` before the next round starts, so a finished round is
    reported (from ``record.json``, with test accuracy and early-stop iteration)
    when the next one begins; :meth:`finish` reports the last one.

    Args:
        run_dir: the run directory given to ``find_ticket``.
        last_round: index of the final round (``rounds``, or 1 for one-shot).
        first_round: the round this call starts with (after a resume).
        echo: prints a line; ``None`` prints nothing.
        jsonl: file to append one JSON object per round to.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        last_round: int,
        first_round: int = 0,
        echo: Callable[[str], None] | None = print,
        jsonl: str | os.PathLike | None = None,
    ):
        super().__init__()
        self.run_dir, self.last_round = Path(run_dir), last_round
        self.first_round, self.echo, self.jsonl = first_round, echo, jsonl
        self.round = first_round - 1
        self.reported = first_round - 1
        self.t0 = time.perf_counter()

    def on_train_begin(self, logs=None):
        if self.round >= self.first_round:
            self._report(self._checkpointed())
        self.round += 1
        if self.echo is not None:
            remaining = 100.0 * (1.0 - sparsity(self.model)["overall"])
            self.echo(
                f"Round {self.round}/{self.last_round}: training with {remaining:.1f}% of weights"
            )

    def finish(self, record: LotteryRecord) -> None:
        """Report the rounds not reported yet (call with the search's record)."""
        self._report([r.to_dict() for r in record.rounds])

    def _checkpointed(self) -> list[dict[str, Any]]:
        try:
            return json.loads((self.run_dir / "record.json").read_text())["rounds"]
        except (OSError, ValueError, KeyError):
            return []

    def _report(self, rounds: Sequence[Mapping[str, Any]]) -> None:
        for rd in rounds:
            if rd["round"] <= self.reported:
                continue
            self.reported = rd["round"]
            elapsed = time.perf_counter() - self.t0
            done = self.reported - self.first_round + 1
            left = (self.last_round - self.reported) * elapsed / done
            pct = rd.get("percent_remaining", 100.0 * (1.0 - rd["sparsity"]))
            if self.echo is not None:
                es = rd.get("early_stop_iteration")
                self.echo(
                    f"Round {rd['round']}/{self.last_round} done: {pct:.1f}% of weights, "
                    f"test acc {_fmt(rd.get('test_accuracy'))}, val acc "
                    f"{_fmt(rd.get('val_accuracy'))}, early stop "
                    f"{'-' if es is None else es}/{rd['iterations']} it; "
                    f"elapsed {_clock(elapsed)}, ~{_clock(left)} left"
                )
            if self.jsonl is not None:
                write_jsonl(
                    self.jsonl,
                    {
                        "event": "round",
                        "run_dir": str(self.run_dir),
                        "run_id": self.run_dir.name,
                        "round": rd["round"],
                        "last_round": self.last_round,
                        "percent_remaining": pct,
                        **{
                            k: rd.get(k)
                            for k in (
                                "sparsity",
                                "iterations",
                                "seconds",
                                "train_loss",
                                "train_accuracy",
                                "val_loss",
                                "val_accuracy",
                                "test_loss",
                                "test_accuracy",
                                "early_stop_iteration",
                                "early_stop_test_accuracy",
                            )
                        },
                        "elapsed": elapsed,
                        "eta": left,
                        "time": datetime.datetime.now(datetime.UTC).isoformat(),
                    },
                )


class RoundTensorBoard(keras.callbacks.TensorBoard):
    """``keras.callbacks.TensorBoard`` writing each round to ``<log_dir>/round_<r>``."""

    def __init__(self, log_dir: str | os.PathLike, first_round: int = 0, **kwargs):
        super().__init__(log_dir=str(log_dir), **kwargs)
        self.base_dir, self.next_round = str(log_dir), first_round

    def on_train_begin(self, logs=None):
        self.log_dir = os.path.join(self.base_dir, f"round_{self.next_round}")
        self.next_round += 1
        self.set_model(self.model)  # re-point the writers at this round's folder
        super().on_train_begin(logs)

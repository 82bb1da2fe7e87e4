"""Tables and paper-style plots over finished (or running) run directories.

Runs are grouped by the settings that differ between them, except ``seed``
(a sweep over ``seed x strategy`` gives one group per strategy); within a
group, each round is summarized over the seeds by mean, min and max::

    runs = load_runs(["runs/"])
    rows = summarize(runs)
    print(format_table(rows))
    print(format_cost_table(cost_rows(runs)))   # iterations, x IMP, wall
    plots = plot(rows, "figures/")   # accuracy.png, early_stop.png

The plots follow Frankle & Carbin (2019): test accuracy (at the early-stopping
iteration when validation was used) and early-stopping iteration against the
percent of weights remaining, log-scaled and reversed, one line per group,
error bars from min to max over seeds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_lottery.records.cost import Cost
from keras_lottery.records.files import atomic_write
from keras_lottery.records.record import LotteryRecord, RoundRecord
from keras_lottery.runs.directory import (
    RunError,
    damage_message,
    list_runs,
    load_config,
    non_default,
    readable_runs,
    ticket_problem,
)

#: Varying settings that never split runs into groups (they are averaged over).
AVERAGED_KEYS = ("seed",)


@dataclass
class RunData:
    """One run: its directory, configuration, the rounds it has finished and its cost.

    ``cost`` is ``None`` for a run written before the cost ledger existed.
    """

    path: Path
    config: dict[str, Any]
    rounds: list[RoundRecord]
    #: a finished run whose ticket is damaged: what is wrong and what to do (its
    #: rounds' metrics are the checkpoint's, intact)
    damaged: str | None = None
    cost: Cost | None = None


@dataclass
class Stat:
    """Mean, min and max of one metric over the runs of a group (``n`` values)."""

    mean: float | None
    min: float | None
    max: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        values = [float(v) for v in values if v is not None]
        if not values:
            return cls(None, None, None, 0)
        return cls(sum(values) / len(values), min(values), max(values), len(values))


@dataclass
class Row:
    """One round of one group, summarized over its runs (seeds)."""

    group: str
    round: int
    runs: int
    percent_remaining: Stat
    sparsity: Stat
    test_accuracy: Stat
    early_stop_test_accuracy: Stat
    early_stop_iteration: Stat
    accuracy: Stat = field(repr=False)  # early-stop test accuracy if known, else final

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _read_run(run_dir: Path) -> RunData:
    problem = ticket_problem(run_dir)
    damaged = None if problem is None else damage_message(run_dir, problem)
    path = run_dir / "record.json"
    config = load_config(run_dir)
    if not path.exists():
        return RunData(run_dir, config, [], damaged)
    try:
        record = LotteryRecord.from_dict({**json.loads(path.read_text()), "config": config})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path} is unreadable or corrupt ({type(e).__name__}: {e}).") from e
    return RunData(run_dir, config, record.rounds, damaged, record.cost)


def load_runs(
    paths: str | os.PathLike | Sequence[str | os.PathLike], on_error=None
) -> list[RunData]:
    """Every run directory among ``paths`` (run directories or folders of them).

    A corrupt one is skipped with a warning (or ``on_error(run_dir, error)``).
    """
    if not list_runs(paths):
        raise RunError(f"No run directories (with config.json) in {', '.join(map(str, paths))}.")
    return readable_runs(paths, _read_run, on_error)


def group_keys(runs: Sequence[RunData]) -> list[str]:
    """The settings that differ between ``runs``, except :data:`AVERAGED_KEYS`."""
    identities = [non_default(r.config) for r in runs]
    keys = sorted({k for ident in identities for k in ident})
    return [
        k
        for k in keys
        if k not in AVERAGED_KEYS
        and len({json.dumps(i.get(k), sort_keys=True) for i in identities}) > 1
    ]


def _label(config: dict[str, Any], keys: Sequence[str]) -> str:
    if not keys:
        return str(config["strategy"])
    if len(keys) == 1:
        return str(non_default(config).get(keys[0], config.get(keys[0])))
    return ", ".join(f"{k}={non_default(config).get(k, config.get(k))}" for k in keys)


def summarize(runs: Sequence[RunData], group_by: Sequence[str] | None = None) -> list[Row]:
    """One :class:`Row` per group (sorted by label) and round.

    ``group_by`` names the configuration keys that define groups; default
    :func:`group_keys`.
    """
    keys = list(group_keys(runs) if group_by is None else group_by)
    unknown = [k for r in runs[:1] for k in keys if k not in r.config]
    if unknown:
        raise ValueError(f"Cannot group by unknown setting(s) {unknown}.")
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        groups.setdefault(_label(run.config, keys), []).append(run)
    rows = []
    for label, members in sorted(groups.items()):
        n_rounds = max((len(r.rounds) for r in members), default=0)
        for i in range(n_rounds):
            recs = [r.rounds[i] for r in members if len(r.rounds) > i]
            rows.append(
                Row(
                    group=label,
                    round=i,
                    runs=len(recs),
                    percent_remaining=Stat.of([r.percent_remaining for r in recs]),
                    sparsity=Stat.of([r.sparsity for r in recs]),
                    test_accuracy=Stat.of([r.test_accuracy for r in recs]),
                    early_stop_test_accuracy=Stat.of([r.early_stop_test_accuracy for r in recs]),
                    early_stop_iteration=Stat.of([r.early_stop_iteration for r in recs]),
                    accuracy=Stat.of(
                        [
                            r.early_stop_test_accuracy
                            if r.early_stop_test_accuracy is not None
                            else r.test_accuracy
                            for r in recs
                        ]
                    ),
                )
            )
    return rows


@dataclass
class CostRow:
    """The cost of the runs of one group: its figures over the runs that recorded one.

    ``x_imp`` is computed, not measured: the runs' iterations over IMP's to the
    same sparsity at the same rate, each training as long as the final one
    (:class:`~keras_lottery.records.cost.ImpBaseline`).
    """

    group: str
    method: str
    runs: int
    iterations: Stat
    x_imp: Stat
    seconds: Stat
    training_seconds: Stat
    outside: dict[str, Stat]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cost_rows(runs: Sequence[RunData], group_by: Sequence[str] | None = None) -> list[CostRow]:
    """One :class:`CostRow` per group (as :func:`summarize` groups) whose runs have a cost."""
    keys = list(group_keys(runs) if group_by is None else group_by)
    groups: dict[str, list[Cost]] = {}
    for run in runs:
        if run.cost is not None:
            groups.setdefault(_label(run.config, keys), []).append(run.cost)
    rows = []
    for label, costs in sorted(groups.items()):
        places = sorted({p for c in costs for p in c.outside})
        rows.append(
            CostRow(
                group=label,
                method=", ".join(sorted({c.method for c in costs})),
                runs=len(costs),
                iterations=Stat.of([c.iterations for c in costs]),
                x_imp=Stat.of([c.x_imp for c in costs]),
                seconds=Stat.of([c.seconds for c in costs]),
                training_seconds=Stat.of([c.training_seconds for c in costs]),
                outside={p: Stat.of([c.outside.get(p, 0.0) for c in costs]) for p in places},
            )
        )
    return rows


def format_cost_table(rows: Sequence[CostRow]) -> str:
    """A plain-text table of what the tickets cost: mean [min, max] over seeds."""
    head = ("group", "method", "runs", "iters", "x IMP", "wall s", "train s", "outside s (largest)")
    cells = [head]
    for r in rows:
        largest = sorted(r.outside.items(), key=lambda kv: -(kv[1].mean or 0.0))[:3]
        cells.append(
            (
                r.group,
                r.method,
                str(r.runs),
                _fmt(r.iterations, ".0f"),
                _fmt(r.x_imp, ".3f"),
                _fmt(r.seconds, ".1f"),
                _fmt(r.training_seconds, ".1f"),
                ", ".join(f"{p} {s.mean:.1f}" for p, s in largest if s.mean) or "-",
            )
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i in (0, 1, 7) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths))
        )
        for row in cells
    )


def _fmt(stat: Stat, spec: str) -> str:
    if stat.mean is None:
        return "-"
    if stat.n == 1 or stat.min == stat.max:
        return format(stat.mean, spec)
    return f"{stat.mean:{spec}} [{stat.min:{spec}}, {stat.max:{spec}}]"


_COLUMNS = ("group", "round", "runs", "remain%", "test_acc", "es_test_acc", "es_iter")


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table: mean [min, max] over seeds of each metric, per round."""
    cells = [_COLUMNS] + [
        (
            r.group,
            str(r.round),
            str(r.runs),
            _fmt(r.percent_remaining, ".2f"),
            _fmt(r.test_accuracy, ".4f"),
            _fmt(r.early_stop_test_accuracy, ".4f"),
            _fmt(r.early_stop_iteration, ".0f"),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in cells
    )


_METRICS = (
    "percent_remaining",
    "sparsity",
    "test_accuracy",
    "early_stop_test_accuracy",
    "early_stop_iteration",
)


def to_csv(rows: Sequence[Row]) -> str:
    """CSV text: ``group, round, runs`` and ``<metric>_mean/_min/_max`` columns."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        ["group", "round", "runs"] + [f"{m}_{s}" for m in _METRICS for s in ("mean", "min", "max")]
    )
    for r in rows:
        stats = [getattr(r, m) for m in _METRICS]
        writer.writerow(
            [r.group, r.round, r.runs]
            + ["" if v is None else v for s in stats for v in (s.mean, s.min, s.max)]
        )
    return buf.getvalue()


def to_json(rows: Sequence[Row]) -> str:
    """JSON text: a list of rows with ``{mean, min, max, n}`` per metric."""
    return json.dumps([r.to_dict() for r in rows], indent=2)


@dataclass
class Series:
    """One plotted line: x (percent remaining), y (mean) and the min/max error bars."""

    x: list[float]
    y: list[float]
    low: list[float]
    high: list[float]


@dataclass
class Figure:
    """A written plot and the lines it shows, by group label."""

    path: Path
    series: dict[str, Series]


def series(rows: Sequence[Row], metric: str) -> dict[str, Series]:
    """The line of each group for ``metric`` (rounds without a value are skipped)."""
    out: dict[str, Series] = {}
    for r in rows:
        stat = getattr(r, metric)
        if stat.mean is None or r.percent_remaining.mean is None:
            continue
        s = out.setdefault(r.group, Series([], [], [], []))
        s.x.append(r.percent_remaining.mean)
        s.y.append(stat.mean)
        s.low.append(stat.min)
        s.high.append(stat.max)
    return out


_PLOTS = {
    "accuracy": ("accuracy", "Test accuracy (at early stop)"),
    "early_stop": ("early_stop_iteration", "Early-stop iteration (val. loss min.)"),
}


def plot(rows: Sequence[Row], out_dir: str | os.PathLike, dpi: int = 120) -> dict[str, Figure]:
    """Write ``accuracy.png`` and ``early_stop.png`` into ``out_dir``.

    Returns the figures written (a plot without data, e.g. early stopping without
    validation, is skipped), with the series each shows.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for name, (metric, ylabel) in _PLOTS.items():
        lines = series(rows, metric)
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        try:
            for label, s in lines.items():
                err = [
                    [y - lo for y, lo in zip(s.y, s.low)],
                    [hi - y for y, hi in zip(s.y, s.high)],
                ]
                ax.errorbar(s.x, s.y, yerr=err, marker="o", ms=3, capsize=3, label=label)
            ax.set_xscale("log")
            xs = sorted({round(x, 1) for s in lines.values() for x in s.x}, reverse=True)
            ax.set_xlim(max(xs) * 1.15, min(xs) / 1.15)  # reversed: pruning goes right
            ax.xaxis.set_major_locator(FixedLocator(xs))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([f"{x:g}" for x in xs], rotation=45 if len(xs) > 8 else 0)
            ax.set_xlabel("Percent of weights remaining")
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            ax.legend()
            fig.tight_layout()
            path = out_dir / f"{name}.png"
            atomic_write(path, lambda f, fig=fig: fig.savefig(f, format="png", dpi=dpi))
        finally:
            plt.close(fig)
        figures[name] = Figure(path, lines)
    return figures

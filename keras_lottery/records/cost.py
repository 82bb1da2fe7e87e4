"""What a ticket cost: the same figures for every way to a ticket.

A :class:`Cost` counts everything from a random network to the trained ticket,
the final training included:

* ``iterations``: optimizer steps of every training (pruning rounds, the final one);
* ``examples``: the examples those steps read, plus those a criterion scored
  (``None`` where a data pipeline's batch size is unknown);
* ``seconds``: wall time of the whole way (over every run of a resumed search);
* ``training_seconds``: wall time inside training steps;
* ``outside``: wall time outside training, by where it went (:data:`PLACES`).

``seconds = training_seconds + sum(outside.values())``: what no place claims is
``"other"``.  A method fills it through a :class:`Ledger`::

    ledger = Ledger(Cost(method="imp", imp=ImpBaseline(sparsity=0.9, rate=0.2)))
    with ledger.outside("masks"):
        masks = prune(...)
    ledger.trained(iterations, examples, seconds)   # after each training
    cost = ledger.close()

"x IMP" is computed, not measured: IMP to the same sparsity at ``rate`` per
round, each of its ``prunings + 1`` trainings as long as this ticket's final
training (see :class:`ImpBaseline`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Where wall time outside training goes.
PLACES = (
    "setup",  # data checks, wrapping the model with masks, the θ0 snapshot
    "compile",  # tracing and compiling the training step (first step beyond a steady one)
    "evaluation",  # validation and test evaluations
    "masks",  # scoring and pruning: the next masks, early-bird's checks
    "reset",  # rewinding the weights, restoring the optimizer, applying masks
    "records",  # describing a round: sparsity, packed masks, effective sparsity
    "checkpoint",  # writing the run directory
    "other",  # the rest
)


def imp_prunings(sparsity: float, rate: float) -> int:
    """Prunings of ``rate`` each that IMP needs to reach ``sparsity`` (at least 1)."""
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be in (0, 1), got {rate!r}.")
    if sparsity <= 0.0:
        return 1
    n = math.log1p(-sparsity) / math.log1p(-rate)
    return max(1, math.ceil(n - 1e-9))


@dataclass
class ImpBaseline:
    """IMP to ``sparsity`` at ``rate`` per round: ``prunings + 1`` trainings of one length.

    ``sparsity`` is the asked sparsity of the pruned weights (for IMP itself
    ``1 - (1 - rate) ** rounds``, so its own baseline is exactly its rounds).
    """

    sparsity: float
    rate: float = 0.2

    @property
    def prunings(self) -> int:
        return imp_prunings(self.sparsity, self.rate)

    def iterations(self, per_training: int) -> int:
        """IMP's iterations when every training is ``per_training`` long."""
        return (self.prunings + 1) * per_training


@dataclass
class Cost:
    """The cost of a ticket, from a random network to the trained ticket (module doc)."""

    method: str = "imp"
    iterations: int = 0
    examples: int | None = 0
    seconds: float = 0.0
    training_seconds: float = 0.0
    outside: dict[str, float] = field(default_factory=dict)
    #: trainings done (pruning rounds and the final one)
    trainings: int = 0
    #: iterations of the final training: the length of each of IMP's trainings
    final_iterations: int | None = None
    imp: ImpBaseline | None = None

    @property
    def outside_seconds(self) -> float:
        return sum(self.outside.values())

    @property
    def imp_iterations(self) -> int | None:
        """IMP's iterations to the same sparsity with trainings as long as the final one."""
        if self.imp is None or not self.final_iterations:
            return None
        return self.imp.iterations(self.final_iterations)

    @property
    def x_imp(self) -> float | None:
        """``iterations / imp_iterations`` (computed: see :class:`ImpBaseline`)."""
        imp = self.imp_iterations
        return None if not imp else self.iterations / imp

    @property
    def training_equivalents(self) -> float | None:
        """``iterations`` in trainings as long as the final one."""
        if not self.final_iterations:
            return None
        return self.iterations / self.final_iterations

    def add_outside(self, place: str, seconds: float) -> None:
        if place not in PLACES:
            raise ValueError(f"place must be one of {', '.join(PLACES)}, got {place!r}.")
        self.outside[place] = self.outside.get(place, 0.0) + seconds

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["imp_iterations"], d["x_imp"] = self.imp_iterations, self.x_imp
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        """Read back :meth:`to_dict` (computed entries and unknown keys are ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("imp") is not None:
            values["imp"] = ImpBaseline(**values["imp"])
        values["outside"] = dict(values.get("outside") or {})
        return cls(**values)

    def lines(self) -> list[str]:
        """A short plain-text description."""
        examples = "-" if self.examples is None else f"{self.examples:,}"
        x = self.x_imp
        imp = "-" if x is None else f"{x:.3f}x IMP ({self.imp_iterations:,} iterations)"
        places = ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.outside.items()) if v >= 0.005)
        return [
            f"cost ({self.method}): {self.iterations:,} iterations, {examples} examples, "
            f"{self.trainings} trainings; {imp}",
            f"wall {self.seconds:.2f} s: training {self.training_seconds:.2f} s, outside "
            f"{self.outside_seconds:.2f} s ({places or 'none'})",
        ]


class Ledger:
    """Fills a :class:`Cost` as a method runs: trainings, and wall time by place.

    The clock runs from construction (or from ``started``, a
    ``time.perf_counter()`` reading); :meth:`close` (or :meth:`sync`) sets
    ``cost.seconds`` to what ``cost`` held before plus the time since, and
    books the wall time no place claimed as ``"other"``.
    """

    def __init__(self, cost: Cost | None = None, started: float | None = None):
        self.cost = cost if cost is not None else Cost()
        self._start = time.perf_counter() if started is None else started
        self._base_seconds = self.cost.seconds
        self._base_other = self.cost.outside.get("other", 0.0)

    @contextlib.contextmanager
    def outside(self, place: str) -> Iterator[None]:
        """Book the wall time of the block under ``place``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.cost.add_outside(place, time.perf_counter() - t0)

    def add(self, place: str, seconds: float) -> None:
        """Book ``seconds`` of wall time under ``place``."""
        self.cost.add_outside(place, seconds)

    def timed(self, place: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, booking the wall time of each call under ``place``."""

        def timed_fn(*args, **kwargs):
            with self.outside(place):
                return fn(*args, **kwargs)

        return timed_fn

    def trained(
        self, iterations: int, examples: int | None, seconds: float, final: bool = False
    ) -> None:
        """Book one training: its steps, the examples they read and its wall time."""
        c = self.cost
        c.iterations += int(iterations)
        c.examples = None if examples is None or c.examples is None else c.examples + examples
        c.training_seconds += seconds
        c.trainings += 1
        if final:
            c.final_iterations = int(iterations)

    def scored(self, examples: int) -> None:
        """Book examples read outside training (a criterion scoring weights on data)."""
        if self.cost.examples is not None:
            self.cost.examples += int(examples)

    def compiled(self, seconds: float) -> None:
        """Move ``seconds`` of booked training time to ``"compile"``."""
        seconds = min(max(seconds, 0.0), self.cost.training_seconds)
        self.cost.training_seconds -= seconds
        self.cost.add_outside("compile", seconds)

    def sync(self) -> Cost:
        """Bring ``seconds`` and ``"other"`` up to now; returns the cost."""
        c = self.cost
        c.seconds = self._base_seconds + time.perf_counter() - self._start
        c.outside["other"] = self._base_other
        claimed = c.training_seconds + c.outside_seconds
        c.outside["other"] = self._base_other + max(0.0, c.seconds - claimed)
        return c

    close = sync

"""Early-bird rounds (You et al., ICLR 2020): stop training once the mask has settled.

During a pruning round, the mask that pruning *would* produce is computed
every ``check_every`` iterations from the current weights (the same magnitude
rule as the pruning step).  When the last ``window`` of these masks are all
within ``tolerance`` of the newest one (normalised Hamming distance), the
round stops and the search prunes -- but not before ``min_fraction`` of the
round's iterations.  Only pruning rounds stop early; the final ticket trains
for the full length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from keras_lottery.callbacks import IterationCallback

Masks = Mapping[str, np.ndarray]

#: Why a watched round ended (``RoundRecord.early_bird_reason``).
SETTLED = "mask settled"
MOVING = "ran full length: mask kept moving"
TOO_SHORT = "ran full length: fewer checks than the window"


@dataclass(frozen=True)
class EarlyBird:
    """When a pruning round may stop: its mask settled after ``min_fraction`` of its length.

    The mask "settled" when the last ``window`` checked masks are all within
    ``tolerance`` of the newest one.  A short round moves its weights little
    between checks, so its mask looks settled as soon as the first window
    fills, long before it has trained, and its ticket loses accuracy.  So a
    round may stop only once it has trained ``min_fraction`` of its length
    (checked there too).  What each setting costs and saves, on short rounds
    and at the paper's length: benchmarks/README.md, "Early-bird rounds vs
    full IMP" (the figures live there, with the commands that produce them).

    Args:
        window: number of consecutive checks compared (You et al.: 5).
        tolerance: largest normalised Hamming distance between the newest
            mask and each other mask in the window (You et al.: 0.1).
        check_every: iterations between checks; ``None`` checks 20 times per
            round (or once per epoch when the round's length is unknown).
        min_fraction: the share of the round's iterations (of its epochs when
            its length is unknown) trained before it may stop; ``0`` stops as
            soon as the mask settles (the rule as You et al. state it).
    """

    window: int = 5
    tolerance: float = 0.1
    check_every: int | None = None
    min_fraction: float = 0.5

    def __post_init__(self):
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 2:
            raise ValueError(f"EarlyBird window must be an integer >= 2, got {self.window!r}.")
        if not isinstance(self.tolerance, int | float) or not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"EarlyBird tolerance must be in [0, 1), got {self.tolerance!r}.")
        every = self.check_every
        if every is not None and (
            not isinstance(every, int) or isinstance(every, bool) or every < 1
        ):
            raise ValueError(
                f"EarlyBird check_every must be a positive integer or None, got {every!r}."
            )
        share = self.min_fraction
        if not isinstance(share, int | float) or isinstance(share, bool) or not 0 <= share <= 1:
            raise ValueError(f"EarlyBird min_fraction must be in [0, 1], got {share!r}.")

    @classmethod
    def of(cls, option: bool | EarlyBird | Mapping | None) -> EarlyBird | None:
        """Read ``find_ticket(early_bird=...)``: ``True``, an ``EarlyBird``, a dict, or off."""
        if option is None or option is False:
            return None
        if option is True:
            return cls()
        if isinstance(option, cls):
            return option
        if isinstance(option, Mapping):
            return cls(**option)
        raise TypeError(
            f"early_bird must be True, False, an EarlyBird(...) or a dict of its fields; "
            f"got {type(option).__name__}."
        )

    def to_config(self) -> dict:
        return asdict(self)


def mask_distance(a: Masks, b: Masks, alive: Masks | None = None) -> float:
    """Normalised Hamming distance between two sets of masks (same keys and shapes).

    The count of positions where the masks differ, divided by the number of
    positions that could differ: those alive in ``alive`` (the masks the round
    trains with; already pruned weights agree in every candidate), or all.
    """
    if set(a) != set(b):
        raise ValueError(f"mask sets differ in their weights: {sorted(set(a) ^ set(b))}.")
    differ = sum(int(np.count_nonzero(np.asarray(a[k], bool) != np.asarray(b[k], bool))) for k in a)
    if alive is None:
        total = sum(np.asarray(a[k]).size for k in a)
    else:
        total = sum(int(np.count_nonzero(alive[k])) for k in a)
    return differ / total if total else 0.0


class EarlyBirdStop(IterationCallback):
    """Stop a round's ``fit`` once the predicted pruning mask has settled.

    ``predict`` returns the masks pruning would make from the current weights;
    ``alive`` are the masks the round trains with (the distance's denominator);
    ``total`` the round's iterations (``None``: unknown, ``min_fraction`` then
    counts epochs).  After training, ``stopped_at`` is the round's iteration at
    which it stopped (``None``: it ran its full length), ``reason`` why it
    ended (:data:`SETTLED`, :data:`MOVING` or :data:`TOO_SHORT`) and
    ``distances`` every check as ``{"iteration", "distance"}`` (the largest
    distance in the window so far).
    """

    def __init__(
        self,
        settings: EarlyBird,
        predict: Callable[[], dict[str, np.ndarray]],
        alive: Masks,
        check_every: int | None,
        total: int | None = None,
    ):
        super().__init__()
        self.settings, self.predict, self.alive = settings, predict, alive
        self.check_every, self.total = check_every, total
        self.history: list[dict[str, np.ndarray]] = []
        self.distances: list[dict[str, float]] = []
        self.stopped_at: int | None = None
        self.reason: str | None = None
        self._epochs_done, self._checked_at_min = 0, False

    def may_stop(self, iteration: int) -> bool:
        """Whether the round has trained its ``min_fraction`` by ``iteration``."""
        share = self.settings.min_fraction
        if self.total:
            return iteration >= math.ceil(share * self.total)
        epochs = (self.params or {}).get("epochs")
        return not epochs or self._epochs_done >= math.ceil(share * epochs)

    def _check(self) -> None:
        model = self.model  # on JAX, reading self.model syncs the trained values into variables
        iteration = self.iterations
        if self.distances and self.distances[-1]["iteration"] == iteration:
            return
        masks = self.predict()
        self.history = [*self.history, masks][-self.settings.window :]
        distance = max(
            (mask_distance(masks, old, self.alive) for old in self.history[:-1]), default=1.0
        )
        self.distances.append({"iteration": iteration, "distance": distance})
        full = len(self.history) == self.settings.window
        settled = full and distance <= self.settings.tolerance
        if settled and self.stopped_at is None and self.may_stop(iteration):
            self.stopped_at = iteration
            model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        due = self.check_every and self.iterations % self.check_every == 0
        first = self.total and self.settings.min_fraction and not self._checked_at_min
        if first and self.may_stop(self.iterations):  # also check where the round may first stop
            self._checked_at_min = due = True
        if due:
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_done = epoch + 1
        if not self.check_every:
            self._check()

    def on_train_end(self, logs=None):
        if self.stopped_at is not None:
            self.reason = SETTLED
        elif len(self.distances) < self.settings.window:
            self.reason = TOO_SHORT
        else:
            self.reason = MOVING

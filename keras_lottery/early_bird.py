"""Early-bird rounds (You et al., ICLR 2020): stop training once the mask has settled.

During a pruning round, the mask that pruning *would* produce is computed
every ``check_every`` iterations from the current weights (the same magnitude
rule as the pruning step).  When the last ``window`` of these masks are all
within ``tolerance`` of the newest one (normalised Hamming distance), the
round stops and the search prunes.  Only pruning rounds stop early; the final
ticket trains for the full length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from keras_lottery.callbacks import IterationCallback

Masks = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class EarlyBird:
    """When a pruning round may stop: the mask moved at most ``tolerance`` over ``window`` checks.

    Args:
        window: number of consecutive checks compared (You et al.: 5).
        tolerance: largest normalised Hamming distance between the newest
            mask and each other mask in the window (You et al.: 0.1).
        check_every: iterations between checks; ``None`` checks 20 times per
            round (or once per epoch when the round's length is unknown).
    """

    window: int = 5
    tolerance: float = 0.1
    check_every: int | None = None

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
    ``alive`` are the masks the round trains with (the distance's denominator).
    After training, ``stopped_at`` is the round's iteration at which it stopped
    (``None``: it ran its full length) and ``distances`` every check as
    ``{"iteration", "distance"}`` (the largest distance in the window so far).
    """

    def __init__(
        self,
        settings: EarlyBird,
        predict: Callable[[], dict[str, np.ndarray]],
        alive: Masks,
        check_every: int | None,
    ):
        super().__init__()
        self.settings, self.predict, self.alive = settings, predict, alive
        self.check_every = check_every
        self.history: list[dict[str, np.ndarray]] = []
        self.distances: list[dict[str, float]] = []
        self.stopped_at: int | None = None

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
        if full and distance <= self.settings.tolerance and self.stopped_at is None:
            self.stopped_at = iteration
            model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.check_every and self.iterations % self.check_every == 0:
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        if not self.check_every:
            self._check()

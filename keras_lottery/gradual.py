"""Gradual magnitude pruning of a mask-aware model while it trains.

:class:`GradualPruning` is a Keras 3 callback that prunes a model made
mask-aware by :func:`keras_lottery.make_prunable`, by magnitude, whenever a
schedule says so: any TFMOT ``PruningSchedule``, the round schedules of
:mod:`keras_lottery.schedules`, or a plain callable.  ``find_ticket(...,
gradual=schedule)`` uses it in its first round.

Steps follow TFMOT: the batch about to run is step ``iterations + 1`` (the first
batch is step 1), and a pruning at step ``s`` takes effect for that batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_lottery import pruning
from keras_lottery.convert import NotPrunableError, prunable_weights

Schedule = Callable[[Any], tuple[Any, Any]]


class GradualPruning(keras.callbacks.Callback):
    """Prune a mask-aware model by magnitude whenever ``schedule`` says so.

    Before each batch, every ``frequency`` steps, the callback asks
    ``schedule(step)`` for ``(should_prune, sparsity)`` -- any
    ``tfmot.sparsity.keras.PruningSchedule`` (``ConstantSparsity``,
    ``PolynomialDecay``, a subclass, ours) or a plain callable.  When it should
    prune, each prunable kernel keeps its ``round(n * (1 - sparsity))`` largest
    surviving weights (``scope="global"``: one threshold over all of them).
    Masks only shrink: a pruned weight never comes back, so a schedule whose
    sparsity decreases leaves the masks as they are.

    Args:
        schedule: the pruning schedule.
        frequency: consult the schedule every this many steps.
        scope: ``"layerwise"`` or ``"global"``.
        layers: names of the layers to prune (default: all prunable ones).

    ``self.events`` lists ``(step, sparsity)`` of every pruning done.
    """

    def __init__(
        self,
        schedule: Schedule,
        frequency: int = 1,
        scope: str = "layerwise",
        layers: Sequence[str] | None = None,
    ):
        super().__init__()
        if not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}.")
        if scope not in ("layerwise", "global"):
            raise ValueError(f"scope must be 'layerwise' or 'global', got {scope!r}.")
        self.schedule, self.frequency, self.scope = schedule, frequency, scope
        self.layers = None if layers is None else set(layers)
        self.events: list[tuple[int, float]] = []

    def on_train_begin(self, logs=None):
        weights = prunable_weights(self.model)
        if self.layers is not None:
            unknown = self.layers - {w.layer.name for w in weights}
            if unknown:
                raise ValueError(f"GradualPruning: no prunable layers named {sorted(unknown)}.")
            weights = [w for w in weights if w.layer.name in self.layers]
        if not weights:
            raise NotPrunableError(
                "GradualPruning needs a mask-aware model: call keras_lottery.make_prunable first."
            )
        self._weights = weights

    def on_train_batch_begin(self, batch, logs=None):
        step = int(np.asarray(self.model.optimizer.iterations)) + 1  # mirrored-safe
        if step % self.frequency:
            return
        should, sparsity = self.schedule(step)
        if bool(should):
            self.prune(float(sparsity))
            self.events.append((step, float(sparsity)))

    def prune(self, sparsity: float) -> None:
        """Prune now to ``sparsity`` (of each kernel's original size)."""
        pruning.check_sparsity(sparsity, "sparsity")
        masks = {w.name: np.array(w.mask) for w in self._weights}
        kernels = {w.name: np.array(w.kernel) for w in self._weights}
        if self.scope == "global":
            total = sum(m.size for m in masks.values())
            new = pruning.magnitude_global(kernels, masks, _keep(total, sparsity))
        else:
            keep = {n: _keep(m.size, sparsity) for n, m in masks.items()}
            new = pruning.magnitude_layerwise(kernels, masks, keep)
        self.model.set_masks(new)  # zeros the pruned weights and their optimizer state


def _keep(size: int, sparsity: float) -> int:
    """Weights kept at ``sparsity``: TFMOT's rule ``max(round(n * (1 - s)), 1)``."""
    return max(int(round(size * (1.0 - sparsity))), 1)

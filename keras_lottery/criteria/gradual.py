"""Gradual magnitude pruning of a mask-aware model while it trains.

:class:`GradualPruning` is a Keras 3 callback that prunes a model made
mask-aware by :func:`keras_lottery.make_prunable`, by magnitude, whenever a
schedule says so: any TFMOT ``PruningSchedule``, the round schedules of
:mod:`keras_lottery.tfmot.schedules`, or a plain callable.  ``find_ticket(...,
gradual=schedule)`` uses it in its first round.

Steps follow TFMOT: the batch about to run is step ``iterations + 1`` (the first
batch is step 1), and a pruning at step ``s`` takes effect for that batch, on
every backend (see :class:`GradualPruning` for how JAX's ``fit`` takes it up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from keras_lottery.criteria import magnitude
from keras_lottery.masks.convert import NotPrunableError, prunable_weights

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

    Backends.  On TensorFlow, JAX and PyTorch a pruning at step ``s`` takes
    effect mid-epoch: step ``s`` and every later step train with the new masks,
    the newly pruned weights and their optimizer state at 0.  JAX's ``fit``
    keeps the training state in arrays outside the variables during an epoch;
    before it prunes, the callback writes that state back
    (``model.jax_state_sync()``, as Keras does for any callback that reads
    ``self.model``), and ``fit`` reads the variables, new masks included, again
    before its next step.  Steps that do not prune leave the state alone: the
    step is the optimizer's iteration count at the start of the epoch plus the
    batch index.

    With ``steps_per_execution=k`` (compile), Keras calls back once per ``k``
    steps: the schedule is consulted only at the first step of each call, so
    prune at steps ``s`` with ``(s - 1) % k == 0``.
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
        self._epoch_start = int(np.asarray(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        # Between epochs every backend's variables hold the state (JAX: synchronised).
        self._epoch_start = int(np.asarray(self.model.optimizer.iterations))  # mirrored-safe

    def on_train_batch_begin(self, batch, logs=None):
        # The batch index, not the optimizer's counter: on JAX, reading the counter
        # mid-epoch would write the whole training state back at every step.
        step = self._epoch_start + batch + 1
        if step % self.frequency:
            return
        should, sparsity = self.schedule(step)
        if bool(should):
            self.prune(float(sparsity))
            self.events.append((step, float(sparsity)))

    def prune(self, sparsity: float) -> None:
        """Prune now to ``sparsity`` (of each kernel's original size)."""
        magnitude.check_sparsity(sparsity, "sparsity")
        model = self._synchronised_model()
        masks = {w.name: np.array(w.mask) for w in self._weights}
        kernels = {w.name: np.array(w.kernel) for w in self._weights}
        if self.scope == "global":
            total = sum(m.size for m in masks.values())
            new = magnitude.magnitude_global(kernels, masks, _keep(total, sparsity))
        else:
            keep = {n: _keep(m.size, sparsity) for n, m in masks.items()}
            new = magnitude.magnitude_layerwise(kernels, masks, keep)
        model.set_masks(new)  # zeros the pruned weights and their optimizer state

    def _synchronised_model(self):
        """The model, its variables holding the training state that the next step starts from.

        JAX's ``fit`` holds the state outside the variables during an epoch:
        ``jax_state_sync`` writes it back and marks it written, and ``fit``
        reads the variables again before its next step, so what is assigned to
        them now (masks, zeros) trains from the next step on.  Other backends
        train the variables themselves.
        """
        model = self.model  # on JAX, Callback.model synchronises already
        sync = getattr(model, "jax_state_sync", None)
        if sync is not None:
            sync()
        return model


def _keep(size: int, sparsity: float) -> int:
    """Weights kept at ``sparsity``: TFMOT's rule ``max(round(n * (1 - s)), 1)``."""
    return max(int(round(size * (1.0 - sparsity))), 1)

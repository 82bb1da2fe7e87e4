"""Keras callbacks used by the search: evaluation curve, θk snapshot, step limit."""

from __future__ import annotations

import time

import keras
import numpy as np


def current_iteration(model: keras.Model) -> int:
    """The optimizer's iteration counter (also when it is a tf.distribute variable)."""
    return int(np.asarray(model.optimizer.iterations))


def resolve_loss(model: keras.Model):
    """The compiled loss of a single-output model, as a callable ``(y, y_pred)``."""
    loss = model.loss
    if isinstance(loss, dict | list | tuple):
        raise ValueError(
            "keras-lottery's evaluation needs a single-output model with one loss; "
            f"got loss={loss!r}."
        )
    return keras.losses.get(loss) if isinstance(loss, str) else loss


def labels_like(y_true, y_pred) -> np.ndarray:
    """``y_true`` as an array, ``(n,)`` labels as ``(n, 1)`` for ``(n, 1)`` outputs (as ``fit``)."""
    y_true = np.asarray(y_true)
    if y_pred.shape[-1] == 1 and y_true.ndim == len(y_pred.shape) - 1:
        return y_true[..., None]
    return y_true


def loss_value(loss, y_true, y_pred) -> float:
    """Mean loss, with labels matched to the outputs as Keras's fit does."""
    return float(keras.ops.mean(loss(labels_like(y_true, y_pred), y_pred)))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray, loss=None) -> float:
    """Classification accuracy for sparse, one-hot or binary labels."""
    y_true = np.asarray(y_true)
    if y_pred.shape[-1] == 1:  # binary
        from_logits = getattr(loss, "from_logits", False) or getattr(
            getattr(loss, "fn", None), "from_logits", False
        )
        pred = (y_pred[..., 0] > (0.0 if from_logits else 0.5)).astype(int)
        return float(np.mean(pred == y_true.reshape(pred.shape).astype(int)))
    pred = y_pred.argmax(-1)
    if y_true.shape == y_pred.shape:  # one-hot
        y_true = y_true.argmax(-1)
    return float(np.mean(pred == y_true.reshape(pred.shape)))


class Evaluator:
    """Loss and accuracy of a model on fixed data, computed in batches.

    A single-output model with one loss is scored from its predictions (the
    loss without regularisation terms, and the classification accuracy).  A
    model with several outputs or losses is scored by ``model.evaluate``: the
    total compiled loss and the mean of its accuracy metrics (``nan`` if it
    was compiled without one).
    """

    def __init__(self, model: keras.Model, x, y, batch_size: int = 1000):
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size
        single = not isinstance(model.loss, dict | list | tuple) and not isinstance(
            y, dict | list | tuple
        )
        self.loss = resolve_loss(model) if single else None

    def __call__(self) -> tuple[float, float]:
        if self.loss is None:
            logs = self.model.evaluate(
                self.x, self.y, batch_size=self.batch_size, verbose=0, return_dict=True
            )
            accs = [v for k, v in logs.items() if "acc" in k]
            return float(logs["loss"]), float(np.mean(accs)) if accs else float("nan")
        y_pred = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        return loss_value(self.loss, self.y, y_pred), accuracy(self.y, y_pred, self.loss)


class IterationCallback(keras.callbacks.Callback):
    """A callback that knows how many iterations this ``fit`` has trained.

    The count comes from the batch indices Keras passes to the callbacks, not
    from the model: on JAX, reading ``self.model`` copies the whole training
    state back into the variables, which would cost a sync every step.
    Subclasses call ``super()`` in ``on_train_begin``/``on_train_batch_end``.
    """

    def on_train_begin(self, logs=None):
        self.iterations, self._epoch_start = 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.iterations

    def on_train_batch_end(self, batch, logs=None):
        self.iterations = self._epoch_start + batch + 1  # ``batch``: last step run

    def stop(self) -> None:
        """Ask ``fit`` to stop after this step (without syncing the model)."""
        self._model.stop_training = True


class EvaluationCurve(IterationCallback):
    """Evaluate every ``every`` iterations (and at each epoch end).

    Validation loss and accuracy go into the epoch logs as ``val_loss`` and
    ``val_accuracy`` (so the progress bar and History show them); the full
    curve, with test metrics if a test evaluator is given, is kept in
    ``self.curve`` for the early-stopping iteration.
    """

    def __init__(
        self, validation: Evaluator, test: Evaluator | None = None, every: int | None = None
    ):
        super().__init__()
        self.validation, self.test, self.every = validation, test, every
        self.curve: list[dict[str, float]] = []

    def _evaluate(self) -> dict[str, float]:
        it = self.iterations
        if self.curve and self.curve[-1]["iteration"] == it:
            return self.curve[-1]
        _ = self.model  # on JAX: sync the trained values into the variables first
        point = {"iteration": it}
        point["val_loss"], point["val_accuracy"] = self.validation()
        if self.test is not None:
            point["test_loss"], point["test_accuracy"] = self.test()
        self.curve.append(point)
        return point

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.every and self.iterations % self.every == 0:
            self._evaluate()

    def on_epoch_end(self, epoch, logs=None):
        point = self._evaluate()
        if logs is not None:
            logs["val_loss"] = point["val_loss"]
            logs["val_accuracy"] = point["val_accuracy"]

    def early_stop(self) -> dict[str, float] | None:
        """The evaluation point of minimum validation loss (first on ties)."""
        if not self.curve:
            return None
        return min(self.curve, key=lambda p: p["val_loss"])


class WeightSnapshot(IterationCallback):
    """Copy all weights when training reaches iteration ``step`` (θk)."""

    def __init__(self, variables: list, step: int):
        super().__init__()
        self.variables, self.step = variables, step
        self.values: list[np.ndarray] | None = None

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.values is None and self.iterations >= self.step:
            _ = self.model  # on JAX: sync the trained values into the variables first
            self.values = [np.array(v) for v in self.variables]


class StopAtIteration(IterationCallback):
    """Stop training after exactly ``steps`` optimizer iterations."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.iterations >= self.steps:
            self.stop()


class CallClock(keras.callbacks.Callback):
    """The wall time of each training call of a ``fit`` (one call: ``steps_per_execution`` steps).

    Only ``on_train_batch_begin`` is hooked, so Keras still dispatches the
    steps asynchronously (no host sync per step); on an asynchronous backend a
    call's time is its dispatch, and the first call's includes compiling it.
    """

    def __init__(self):
        super().__init__()
        self.calls: list[float] = []
        self._last: float | None = None

    def on_train_batch_begin(self, batch, logs=None):
        now = time.perf_counter()
        if self._last is not None:
            self.calls.append(now - self._last)
        self._last = now

    def on_epoch_end(self, epoch, logs=None):
        self._last = None  # an epoch's end (evaluation, logs) is not a call

    def on_train_end(self, logs=None):
        self._last = None


class DivergenceError(RuntimeError):
    """Training diverged: a NaN/inf loss, or a ticket at chance accuracy."""


class DivergenceGuard(keras.callbacks.Callback):
    """Stop a round whose training loss becomes NaN or infinite (checked each epoch)."""

    def __init__(self, round_: int):
        super().__init__()
        self.round = round_

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.model.stop_training = True
            raise DivergenceError(
                f"training diverged in round {self.round}: the loss became {float(loss)} "
                f"after {current_iteration(self.model)} iterations; lower the learning rate "
                "or check the data for NaN/inf."
            )


def chance_accuracy(model: keras.Model) -> float:
    """Accuracy of guessing: 1/classes (1/2 for one sigmoid output)."""
    n = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else 0
    return 0.5 if n <= 2 else 1.0 / n


def check_divergence(rounds: list, chance: float) -> None:
    """Raise :class:`DivergenceError` if the last round ended at chance while round 0 learned.

    ``rounds`` are :class:`~keras_lottery.records.record.RoundRecord` s; the training
    accuracy decides ("at chance": below 1.5x chance; "learned": above 2x
    chance, or above chance + 0.25 for binary tasks).
    """
    if len(rounds) < 2:
        return
    dense, last = rounds[0].train_accuracy, rounds[-1].train_accuracy
    if dense is None or last is None:
        return
    learned = dense > max(2 * chance, chance + 0.25) if chance >= 0.5 else dense > 2 * chance
    at_chance = last <= (chance + 0.05 if chance >= 0.5 else 1.5 * chance)
    if learned and at_chance:
        raise DivergenceError(
            f"training diverged in round {rounds[-1].round}: training accuracy "
            f"{last:.3f} is at chance ({chance:.3f}) while the dense network reached "
            f"{dense:.3f}; lower the learning rate or the pruning rate."
        )

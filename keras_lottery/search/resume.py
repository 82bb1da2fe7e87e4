"""Resuming a search from its run directory, and what a round stores there for that.

:class:`~keras_lottery.records.checkpoint.RunCheckpoint` writes and reads the files;
this module says what of a search's state they hold (θ0, the rewind point θk,
an optimizer start a fresh optimizer would not re-create) and puts a loaded
round back into the search.
"""

from __future__ import annotations

from typing import Any

from keras_lottery.masks.bitmasks import PackedMasks
from keras_lottery.records.checkpoint import RunCheckpoint


def resume_run(checkpoint: RunCheckpoint, rng, ticket, state, optimizer0):
    """Load the last finished round of ``checkpoint`` into the search; ``None`` if there is none.

    Returns the round to start with, the record so far, the masks of that round
    and the stored rewind point θk (``None``: θ0).
    """
    resumed = checkpoint.load(rng)
    if resumed is None:
        return None
    # Stored in model order: this model's layer names may differ (Keras numbers them).
    names = [w.name for w in ticket.prunable_weights()]
    rewind = list(resumed.state["rewind"].values()) if resumed.state["rewind"] else None
    optimizer0.stored.update(resumed.state["optimizer0"])
    if resumed.weights is not None:  # kept-trained weights, or the finished ticket
        for var, value in zip(state, resumed.weights.values()):
            var.assign(value)
    last = resumed.next_masks or resumed.record.final.masks
    next_masks = PackedMasks(dict(zip(names, last.packed.values())))
    if resumed.next_masks is None:  # a finished search: the ticket's masks
        ticket.set_masks(next_masks)
    return resumed.round + 1, resumed.record, next_masks, rewind


def stored_state(paths, theta0, rewind, optimizer0) -> dict[str, dict[str, Any]]:
    """What ``state.npz`` holds: θ0, θk if it differs, an optimizer start not re-creatable."""
    state: dict[str, dict[str, Any]] = {"optimizer0": optimizer0.stored}
    if theta0 is not None:
        state["theta0"] = dict(zip(paths, theta0))
    if rewind is not theta0:
        state["rewind"] = dict(zip(paths, rewind))
    return state

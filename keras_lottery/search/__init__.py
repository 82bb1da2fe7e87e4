"""Ways to a ticket: the paper's search and its steps, and pruning at initialization.

:mod:`~keras_lottery.search.loop` is the paper's algorithm (``find_ticket``) over its
steps, one module each: :mod:`~keras_lottery.search.checks` (before round 0),
:mod:`~keras_lottery.search.training` (step 2), :mod:`~keras_lottery.search.masking`
(step 3), :mod:`~keras_lottery.search.reset` (step 4) and
:mod:`~keras_lottery.search.resume`; :mod:`~keras_lottery.search.options` checks the
options together. :mod:`~keras_lottery.search.at_init` gets a ticket without training.
"""

from keras_lottery.search.at_init import prune_at_init
from keras_lottery.search.loop import find_ticket

__all__ = ["find_ticket", "prune_at_init"]

"""The options of a search: :class:`Pruning`, :class:`Reset` and :class:`Training`.

Each field is declared once, with its default, type, range and help text, and
checked once, when the object is made.  The declarations live in the
standard-library-only package ``keras_lottery_options``, so that the command
line can show them in ``--help`` without importing TensorFlow; this module is
their place in the library.

>>> keras_lottery.find_ticket(model, data, pruning=Pruning(rate=0.2, one_shot=True),
...                           reset=Reset(strategy="reinit"), training=Training(steps=1000))
"""

from keras_lottery_options import (
    AT_INIT_METHODS,
    AT_INIT_SPECS,
    GRANULARITIES,
    GROUPS,
    METHODS,
    SCOPES,
    STRATEGIES,
    SUBSET_RULES,
    UNIT_CRITERIA,
    UNSET,
    Pruning,
    Reset,
    Spec,
    Training,
    run_defaults,
    run_specs,
)

__all__ = [
    "AT_INIT_METHODS",
    "AT_INIT_SPECS",
    "GRANULARITIES",
    "GROUPS",
    "METHODS",
    "Pruning",
    "Reset",
    "SCOPES",
    "STRATEGIES",
    "SUBSET_RULES",
    "Spec",
    "Training",
    "UNIT_CRITERIA",
    "UNSET",
    "run_defaults",
    "run_specs",
]

"""What to keep: the magnitude, unit and N:M rules (:mod:`~keras_lottery.criteria.magnitude`,
pure NumPy), gradients for scores at initialization
(:mod:`~keras_lottery.criteria.gradients`), early-bird stopping
(:mod:`~keras_lottery.criteria.early_bird`) and gradual pruning during training
(:mod:`~keras_lottery.criteria.gradual`). A new rule is one module here."""

from keras_lottery.criteria.early_bird import EarlyBird
from keras_lottery.criteria.gradual import GradualPruning

__all__ = ["EarlyBird", "GradualPruning"]

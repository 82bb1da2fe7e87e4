"""``keras-lottery``: the command line over :mod:`keras_lottery` (``keras_lottery_cli``)."""

"""Runs of the command line: a run directory per configuration
(:mod:`~keras_lottery.runs.directory`), sweeps (:mod:`~keras_lottery.runs.sweep`), running
their jobs here or on a cluster (:mod:`~keras_lottery.runs.executors`) and their tables
and plots (:mod:`~keras_lottery.runs.report`)."""

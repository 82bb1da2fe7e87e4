"""The ``keras-lottery`` command: find, resume, sweep, report, export, list."""

from __future__ import annotations

import click

from keras_lottery import __version__

from .export import export
from .find import find, resume
from .listing import list_runs
from .report import report
from .sweep import sweep


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keras-lottery")
def cli() -> None:
    """Find winning lottery tickets (Frankle & Carbin) in Keras 3 models.

    Every search runs in a run directory named by the hash of its configuration:
    the same command twice reuses it (resuming or skipping a finished run).
    Set KERAS_LOTTERY_DEBUG=1 for tracebacks instead of one-line errors.
    """


for command in (find, resume, sweep, report, export, list_runs):
    cli.add_command(command)


if __name__ == "__main__":
    cli(prog_name="keras-lottery")

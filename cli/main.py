"""The ``keras-lottery`` command: find, resume, sweep, report, export, list.

Commands are imported when used, and TensorFlow only when a command runs, so
``--help`` is instant.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import sys

import click

#: Command name -> (module in this package, attribute, one-line help for the group's --help).
COMMANDS = {
    "find": ("find", "find", "Find a winning ticket; the run lives in RUNS_ROOT/<config hash>."),
    "resume": ("find", "resume", "Continue RUN_DIR after its last finished round."),
    "sweep": ("sweep", "sweep", "Run every job of the sweep SPEC (YAML or JSON)."),
    "report": ("report", "report", "Summarize run directories: tables and plots."),
    "export": ("export", "export", "Export the ticket of a finished run."),
    "list": ("listing", "list_runs", "List runs and how far each got."),
    "stability": ("stability", "stability", "Instability of two copies from iteration k; a plot."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command is used."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f".{module}", __package__), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


#: Keras backends a search runs on (torch: see the README's backend table).
BACKENDS = ("tensorflow", "jax", "torch")


def _use_backend(name: str) -> None:
    """Select the Keras backend; it must happen before Keras is imported."""
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != name:
        raise click.UsageError(
            f"--backend {name}: Keras is already loaded with the "
            f"{loaded.backend.backend()} backend in this process."
        )
    os.environ["KERAS_BACKEND"] = name


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras-lottery")
    except PackageNotFoundError:
        return "unknown"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="keras-lottery")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's own log messages.")
@click.option("--debug", is_flag=True, help="Full tracebacks instead of one-line errors.")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    envvar="KERAS_BACKEND",
    help="Keras backend for every command and job it starts (default: KERAS_BACKEND, "
    "else tensorflow). jax trains small models about 2x faster on CPU.",
)
def cli(verbose: bool, debug: bool, backend: str | None) -> None:
    """Find winning lottery tickets (Frankle & Carbin) in Keras 3 models.

    Every search runs in a run directory named by the hash of its configuration:
    the same command twice reuses it (resuming or skipping a finished run).
    Errors are one line (exit code 2: a usage error, 1: a failure); --debug
    (or KERAS_LOTTERY_DEBUG=1) shows the traceback.
    """
    if backend:
        _use_backend(backend)
    if debug:
        os.environ["KERAS_LOTTERY_DEBUG"] = "1"
    if verbose or debug:
        os.environ["KERAS_LOTTERY_VERBOSE"] = "1"


def main() -> None:
    """The console entry point: run ``cli``, then exit without TensorFlow's teardown.

    Once TensorFlow is loaded, interpreter shutdown can idle for many seconds
    (its runtime threads are joined and its objects finalized one by one), after
    every file is already written and closed.  So the process ends with
    ``os._exit`` once the exit handlers have run (they remove the temporary
    files TensorFlow's autograph writes, flush logs) and output is flushed.
    """
    try:
        cli(prog_name="keras-lottery")
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    atexit._run_exitfuncs()  # what os._exit would skip: clean-ups registered with atexit
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

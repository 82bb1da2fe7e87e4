"""Errors become one-line ``Error: ...`` messages: exit code 2 for usage, 1 for failures.

``--debug`` (or ``KERAS_LOTTERY_DEBUG=1``) shows the full traceback instead.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import click


def one_line(error: BaseException) -> str:
    """The first line of an exception's message (the type name if it has none)."""
    text = str(error.args[0] if isinstance(error, KeyError) and error.args else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or a bad run directory, not a bug."""
    from keras_lottery.callbacks import DivergenceError
    from keras_lottery.checkpoint import CorruptCheckpointError, RunDirInUseError
    from keras_lottery.convert import NotPrunableError
    from keras_lottery.runs import RunError

    return (
        ValueError,
        KeyError,
        OSError,
        CorruptCheckpointError,
        RunDirInUseError,
        DivergenceError,
        NotPrunableError,
        RunError,
    )


def debug_enabled() -> bool:
    return bool(os.environ.get("KERAS_LOTTERY_DEBUG"))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors about bad input into :class:`click.ClickException` (exit 1).

    Also imports TensorFlow quietly (see :func:`import_tensorflow`) first.
    """
    import_tensorflow()
    if debug_enabled():
        yield
        return
    try:
        yield
    except click.ClickException:
        raise
    except Exception as e:
        if isinstance(e, _user_errors()) or type(e).__name__ == "ExportError":
            raise click.ClickException(one_line(e)) from None
        raise


def check_jsonl_target(path: str | None) -> None:
    """Fail before any work if ``--log-jsonl`` cannot be appended to."""
    if path is None:
        return
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise click.UsageError(f"--log-jsonl: folder {parent} does not exist; create it first.")
    if not os.access(parent, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        raise click.UsageError(f"--log-jsonl: {path} is not writable.")


def import_tensorflow() -> None:
    """Import TensorFlow once, its C++ start-up logs silenced unless ``--verbose``/``--debug``.

    ``TF_CPP_MIN_LOG_LEVEL`` is set before the import; the lines TensorFlow's
    libraries print before their logging is configured (oneDNN, CUDA stubs)
    ignore it, so stderr is sent to the null device during the import only.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    if os.environ.get("KERAS_LOTTERY_VERBOSE"):
        import tensorflow  # noqa: F401

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)

"""Library errors become one-line ``Error: ...`` messages and exit code 1."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import click

from keras_lottery.checkpoint import CorruptCheckpointError
from keras_lottery.convert import NotPrunableError
from keras_lottery.runs import RunError

#: Exceptions that mean bad input or a bad run directory, not a bug.
USER_ERRORS = (
    ValueError,
    KeyError,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    NotADirectoryError,
    CorruptCheckpointError,
    NotPrunableError,
    RunError,
)


def one_line(error: BaseException) -> str:
    """The first line of an exception's message (the type name if it has none)."""
    text = str(error.args[0] if isinstance(error, KeyError) and error.args else error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn :data:`USER_ERRORS` (and export failures) into :class:`click.ClickException`.

    Set ``KERAS_LOTTERY_DEBUG=1`` to get the full traceback instead.
    """
    if os.environ.get("KERAS_LOTTERY_DEBUG"):
        yield
        return
    try:
        yield
    except click.ClickException:
        raise
    except USER_ERRORS as e:
        raise click.ClickException(one_line(e)) from None
    except RuntimeError as e:
        if type(e).__name__ == "ExportError":
            raise click.ClickException(one_line(e)) from None
        raise

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
    from keras_lottery.extras import MissingExtraError
    from keras_lottery.masks.convert import NotPrunableError
    from keras_lottery.records.checkpoint import CorruptCheckpointError, RunDirInUseError
    from keras_lottery.runs.directory import RunError

    return (
        ValueError,
        KeyError,
        OSError,
        CorruptCheckpointError,
        RunDirInUseError,
        DivergenceError,
        NotPrunableError,
        RunError,
        MissingExtraError,
    )


def debug_enabled() -> bool:
    return bool(os.environ.get("KERAS_LOTTERY_DEBUG"))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors about bad input into :class:`click.ClickException` (exit 1).

    Also imports TensorFlow quietly on its backend (see :func:`import_tensorflow`) first.
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


def configured_backend() -> str:
    """The Keras backend this process will use, read as Keras reads it, without importing Keras.

    ``KERAS_BACKEND``, else the ``backend`` of ``$KERAS_HOME/keras.json`` (default
    ``~/.keras``), else Keras's default, ``tensorflow``.
    """
    import json

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return str(json.load(f).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def import_tensorflow() -> None:
    """On the TensorFlow backend, import TensorFlow once, its start-up logs silenced.

    Other backends import nothing here.  Without TensorFlow installed, the
    TensorFlow backend is a one-line error naming the two ways out.  The C++
    logs are silenced unless ``--verbose``/``--debug``: ``TF_CPP_MIN_LOG_LEVEL`` is
    set before the import; the lines TensorFlow's libraries print before their
    logging is configured (oneDNN, CUDA stubs) ignore it, so stderr is sent to
    the null device during the import only.
    """
    import importlib.util
    import sys

    if "tensorflow" in sys.modules or configured_backend() != "tensorflow":
        return
    if importlib.util.find_spec("tensorflow") is None:
        raise click.ClickException(
            "The Keras backend is tensorflow (Keras's default; KERAS_BACKEND or "
            "~/.keras/keras.json set it) but TensorFlow is not installed: run with "
            "--backend jax or --backend torch (or set KERAS_BACKEND), or "
            "pip install 'keras-lottery[tensorflow]'."
        )
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

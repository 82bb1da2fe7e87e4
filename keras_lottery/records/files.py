"""Safe file writing: atomic replace, checksums, standard JSON.

Every rename that makes a file visible goes through :func:`commit_point` first.
Setting ``KERAS_LOTTERY_CRASH_AT=N`` makes the N-th such point of a process
end it at once with ``os._exit(CRASH_EXIT_CODE)`` (the temp file still on
disk): the crash tests replay a crash at every boundary this way.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Exit code of a crash injected by ``KERAS_LOTTERY_CRASH_AT``.
CRASH_EXIT_CODE = 86
#: Called with the target path at every commit point (tests set it).
commit_hook: Callable[[Path], None] | None = None
_commits = 0


def commit_point(path: str | os.PathLike) -> None:
    """Mark a commit boundary just before ``path`` changes (see the module doc)."""
    global _commits
    _commits += 1
    if commit_hook is not None:
        commit_hook(Path(path))
    crash_at = os.environ.get("KERAS_LOTTERY_CRASH_AT")
    if crash_at and _commits == int(crash_at):
        os._exit(CRASH_EXIT_CODE)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(binary_file)`` on a temp file beside ``path``, then rename.

    A crash leaves either the old file or none, never a half-written one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        commit_point(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(path: str | os.PathLike, save: Callable[[Path], Any]) -> None:
    """Call ``save(temp_path)`` (a writer that needs a file name), then rename.

    The temp name keeps ``path``'s suffixes (``.weights.h5``, ``.keras``), as
    Keras's savers require; it is removed if ``save`` fails.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".weights.h5") else path.suffix
    tmp = path.with_name(f".{path.name[: len(path.name) - len(suffix)]}.{os.getpid()}.tmp{suffix}")
    try:
        save(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        commit_point(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def is_temp_file(name: str) -> bool:
    """True for the temp names :func:`atomic_write` and :func:`atomic_save` use."""
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp." in name)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf (at any depth) by None so the JSON is standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj

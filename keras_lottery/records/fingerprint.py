"""Fingerprints: what defines a search, so a run directory is never reused for another.

A fingerprint has three parts, each a short string:

* ``theta0``: SHA-256 of the initial weights (θ0), in variable order;
* ``data``: SHA-256 of the training/validation/test arrays; for a folder given
  by name, of its file list, sizes and modification times; for a ``tf.data``
  pipeline, the name/version the caller gives (``data_version``), else ``None``
  (it cannot be fingerprinted; :func:`data_fingerprint` warns);
* ``options``: SHA-256 of the search's options (canonical JSON), leaving out
  those that do not change the result (:data:`IGNORED_OPTIONS`), so a run
  directory can be moved and resumed with another verbosity.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

#: Options that locate or display a search without changing its result.
IGNORED_OPTIONS = ("verbose", "run_dir", "data_dir")


def _update(h, array: Any) -> None:
    a = np.ascontiguousarray(np.asarray(array))
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.data if a.dtype != object else repr(a.tolist()).encode())


def arrays_digest(arrays: Iterable[Any]) -> str:
    """SHA-256 (hex, 16 digits) over dtype, shape and bytes of each array in order."""
    h = hashlib.sha256()
    for a in arrays:
        _update(h, a)
    return h.hexdigest()[:16]


def folder_digest(folder: str | os.PathLike) -> str:
    """SHA-256 of a folder's file list with sizes and modification times (no content read)."""
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return "files:" + h.hexdigest()[:16]


def data_fingerprint(data: Any, splits: Iterable[Any], version: str | None = None) -> str | None:
    """Fingerprint of a search's data.

    Args:
        data: what the caller passed (a name/path, arrays, a ``tf.data.Dataset``...).
        splits: the resolved training, validation and test data (``None`` entries
            skipped); each ``(x, y)`` arrays or a ``tf.data.Dataset``.
        version: the caller's name/version of a ``tf.data`` pipeline.
    """
    if version is not None:
        return f"version:{version}"
    if isinstance(data, str | os.PathLike) and Path(data).is_dir():
        return folder_digest(data)
    arrays: list[Any] = []
    for split in splits:
        if split is None:
            continue
        if not isinstance(split, tuple | list):  # a tf.data pipeline: cannot be hashed
            warnings.warn(
                "find_ticket cannot fingerprint a tf.data.Dataset: a run_dir will not notice "
                "if the data changes. Pass data_version='name-v1' to name it.",
                stacklevel=3,
            )
            return None
        arrays.extend(split)
    return "arrays:" + arrays_digest(arrays)


def options_digest(options: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``options`` (:data:`IGNORED_OPTIONS` left out)."""
    kept = {k: v for k, v in options.items() if k not in IGNORED_OPTIONS}
    text = json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(theta0: Iterable[Any], data: str | None, options: Mapping[str, Any]) -> dict:
    """The three-part fingerprint (a JSON-ready dict) of a search."""
    return {
        "theta0": arrays_digest(theta0),
        "data": data,
        "options": options_digest(options),
    }


#: What to say when a part differs.
_WHAT = {
    "theta0": "the initial weights θ0 (another model or seed)",
    "data": "the data",
    "options": "the options",
}


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Descriptions of the parts where ``current`` differs from ``stored``."""
    return [what for key, what in _WHAT.items() if stored.get(key) != current.get(key)]

"""Where an export goes, and writing it atomically.

An export is written to a temporary file or folder beside its target and
renamed into place only once it was verified; on any error the temporary
file and every folder the export created are removed.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path

#: Default output folder, relative to the current working directory.
DEFAULT_DIR = "saved_models"


def safe_name(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    if not stem:
        raise ValueError(f"Cannot make a file name from name={name!r}; pass name='...'.")
    return stem


def target_path(path, stem: str, suffix: str, is_dir: bool) -> Path:
    if path is None:
        return Path(DEFAULT_DIR) / stem / f"{stem}{suffix}"
    target = Path(path)
    if not is_dir and target.is_dir():
        target = target / f"{stem}{suffix}"
    return target


def check_writable(folder: Path) -> None:
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise NotADirectoryError(
            f"Cannot write into {folder}: {existing} is a file, not a folder. Choose another path."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot write into {folder}: {existing} is not writable. Choose another path."
        )


def make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; return what was created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for d in missing:
        try:
            d.mkdir()
        except OSError as e:
            for made in reversed(missing[: missing.index(d)]):
                with contextlib.suppress(OSError):
                    made.rmdir()
            raise PermissionError(f"Cannot create folder {d}: {e}") from e
    return missing


def temp_path(target: Path, directory: bool) -> Path:
    prefix, suffix = f".{target.name}.", f".tmp{target.suffix}"
    try:
        if directory:
            return Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=suffix))
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    except OSError as e:
        raise PermissionError(f"Cannot write into {target.parent}: {e}") from e
    os.close(fd)
    return Path(tmp)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def commit(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``target`` in one rename."""
    if not os.path.lexists(target):
        if tmp.is_dir():
            os.rename(tmp, target)
            return
        try:
            os.link(tmp, target)  # fails if someone created target meanwhile
        except FileExistsError:
            raise FileExistsError(
                f"{target} appeared while exporting. Pass overwrite=True to replace it."
            ) from None
        except OSError:
            os.replace(tmp, target)  # no hard links on this file system
        else:
            tmp.unlink()
        return
    if not overwrite:
        raise FileExistsError(f"{target} already exists. Pass overwrite=True to replace it.")
    if not (tmp.is_dir() or target.is_dir()):
        os.replace(tmp, target)
        return
    aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(aside, target)
        raise
    remove(aside)


def sizes(path: Path) -> tuple[int, int]:
    """``(bytes, gzipped bytes)`` of a file, or of a folder (as a reproducible tar)."""
    if path.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                info = tar.gettarinfo(str(f), arcname=str(f.relative_to(path)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(f, "rb") as fh:
                    tar.addfile(info, fh)
        total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return total, len(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))
    data = path.read_bytes()
    return len(data), gzipped_size(data)


def gzipped_size(data: bytes) -> int:
    """Size of ``data`` after gzip -9."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))

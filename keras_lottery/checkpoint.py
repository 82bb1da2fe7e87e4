"""Resumable searches: one crash-consistent checkpoint at the end of every round.

A run directory holds::

    checkpoint.json      the manifest: last committed round, RNG state, fingerprint,
                         options, and the SHA-256 of every file below
    state.npz            θ0, the rewind point and the optimizer's initial state
    round_<r>/           the files of round r: model.weights.h5 (the model, masks
                         included), record.json and masks.npz (the LotteryRecord)
    record.json          a copy of the committed round's record, for readers
    .lock                held while a process works in the directory

A round's files are written under new names (``round_<r>/``), each by temp
file + rename; then one atomic rename of ``checkpoint.json`` commits them all
at once, and only after that are the previous round's files removed.  A crash
at any point leaves the last committed round intact: resuming removes leftover
temp files and uncommitted round folders and continues from there, bitwise as
an uninterrupted run.  A file whose checksum does not match the manifest is
reported, never used.  A run directory holding the fingerprint of another
search (see :mod:`keras_lottery.fingerprint`) is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from keras_lottery.files import atomic_save, atomic_write, file_sha256, is_temp_file
from keras_lottery.fingerprint import differences
from keras_lottery.record import LotteryRecord

MANIFEST = "checkpoint.json"
STATE_FILE = "state.npz"
RECORD_COPY = "record.json"
LOCK_FILE = ".lock"
#: The files of one round, in ``round_<r>/``.
ROUND_FILES = ("model.weights.h5", "record.json", "masks.npz")
#: Options that do not change the result, ignored when matching a run's config.
_COSMETIC = ("verbose", "run_dir", "data_dir")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is missing or does not match its recorded checksum."""


class RunDirInUseError(RuntimeError):
    """Another process holds the run directory's lock."""


class FingerprintMismatchError(ValueError):
    """The run directory holds a search of another model, data or options."""


class _Lock:
    """An exclusive ``flock`` on ``<dir>/.lock``; released when the object is dropped."""

    _held: weakref.WeakValueDictionary[str, _Lock] = weakref.WeakValueDictionary()

    def __init__(self, path: Path):
        self.file = open(path, "a")  # noqa: SIM115 (held for the object's life)

    def __del__(self):
        file = getattr(self, "file", None)
        if file is not None:
            file.close()  # closing the last descriptor releases the flock

    @classmethod
    def acquire(cls, directory: Path) -> _Lock | None:
        """The lock of ``directory``, shared within this process; ``None`` without fcntl."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks
            return None
        key = os.path.realpath(directory)
        lock = cls._held.get(key)
        if lock is not None:
            return lock
        lock = cls(directory / LOCK_FILE)
        try:
            fcntl.flock(lock.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.file.close()
            lock.file = None
            raise RunDirInUseError(
                f"{directory} is in use by another process; wait for it to finish "
                "or use another run directory."
            ) from None
        cls._held[key] = lock
        return lock


def lock_run_dir(directory: str | os.PathLike) -> Any:
    """Lock ``directory`` against other processes until the returned handle is dropped.

    Re-entrant within a process (the same handle is shared).

    Raises:
        RunDirInUseError: another process holds it.
    """
    return _Lock.acquire(Path(directory))


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in _COSMETIC}))


def _round_dir(round_: int) -> str:
    return f"round_{round_}"


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of ``run_dir``, or ``None`` if no round is committed yet.

    Raises:
        CorruptCheckpointError: the manifest is not valid JSON of the expected form.
    """
    path = Path(run_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        int(manifest["completed_round"])
        dict(manifest["files"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise CorruptCheckpointError(
            f"{path} is unreadable or corrupt ({type(e).__name__}: {e}); "
            f"delete {Path(run_dir)} to start the run again."
        ) from e
    return manifest


def committed_record(run_dir: str | os.PathLike) -> LotteryRecord | None:
    """The :class:`LotteryRecord` (with masks) of the last committed round, or ``None``."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        return None
    return LotteryRecord.load(Path(run_dir) / _round_dir(manifest["completed_round"]))


def remove_leftovers(run_dir: str | os.PathLike, keep: set[str]) -> None:
    """Remove temp files of crashed writes and round folders not in ``keep``."""
    run_dir = Path(run_dir)
    for p in run_dir.iterdir():
        if p.is_dir() and p.name.startswith("round_") and p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() and (is_temp_file(p.name) or p.name.endswith(".weights.h5")):
            p.unlink(missing_ok=True)  # *.weights.h5: the flat layout of 0.1
    for sub in keep:
        if (run_dir / sub).is_dir():
            for p in (run_dir / sub).iterdir():
                if is_temp_file(p.name):
                    p.unlink(missing_ok=True)


class RunCheckpoint:
    """Save and restore a search in ``run_dir`` (locked while the object lives).

    Args:
        run_dir: the folder (created if missing).
        config: the search's options (compared on resume, cosmetic ones aside).
        fingerprint: from :func:`keras_lottery.fingerprint.fingerprint`; a
            ``run_dir`` holding another one is refused.
        writable: ``False`` (a non-chief worker of a multi-worker search) reads
            and resumes but never locks, writes or cleans ``run_dir``.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        config: dict[str, Any],
        fingerprint: dict[str, Any] | None = None,
        writable: bool = True,
    ):
        self.dir = Path(run_dir)
        self.config = config
        self.fingerprint = fingerprint
        self.writable = writable
        self._lock = None
        if writable:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = lock_run_dir(self.dir)

    def close(self) -> None:
        """Release this object's hold on the lock."""
        self._lock = None

    def save(self, round_: int, model, record: LotteryRecord, state: dict[str, list], rng) -> None:
        """Commit round ``round_``: its files, then the manifest, then remove the old ones."""
        if not self.writable:  # saving runs collective ops: stay in step, keep nothing
            with tempfile.TemporaryDirectory() as scratch:
                model.save_weights(Path(scratch) / "model.weights.h5")
            return
        sub = _round_dir(round_)
        folder = self.dir / sub
        if folder.exists():  # an uncommitted leftover of a crash
            shutil.rmtree(folder)
        folder.mkdir()
        if round_ == 0 or not (self.dir / STATE_FILE).exists():
            arrays = {f"{k}/{i}": v for k, vs in state.items() for i, v in enumerate(vs)}
            atomic_write(self.dir / STATE_FILE, lambda f: np.savez(f, **arrays))
        atomic_save(folder / "model.weights.h5", model.save_weights)
        record.save(folder)
        files = [STATE_FILE] + [f"{sub}/{n}" for n in ROUND_FILES]
        manifest = {
            "completed_round": round_,
            "config": _comparable(self.config),
            "fingerprint": self.fingerprint,
            "rng": rng.bit_generator.state,
            "files": {name: file_sha256(self.dir / name) for name in files},
        }
        text = json.dumps(manifest, indent=2, default=str).encode()
        atomic_write(self.dir / MANIFEST, lambda f: f.write(text))  # the commit
        remove_leftovers(self.dir, keep={sub})
        copy = (folder / "record.json").read_bytes()
        atomic_write(self.dir / RECORD_COPY, lambda f: f.write(copy))

    def _check_identity(self, manifest: dict[str, Any]) -> None:
        stored, current = manifest.get("config"), _comparable(self.config)
        if stored != current:
            diff = sorted(
                k
                for k in set(stored or {}) | set(current)
                if (stored or {}).get(k) != current.get(k)
            )
            raise FingerprintMismatchError(
                f"{self.dir} holds a run with a different configuration (differs in {diff}); "
                "use another run_dir for a new run, or the same options to resume."
            )
        old = manifest.get("fingerprint")
        if old is not None and self.fingerprint is not None:
            diff = differences(old, self.fingerprint)
            if diff:
                raise FingerprintMismatchError(
                    f"{self.dir} holds a run of a different search ({', '.join(diff)} "
                    "differ); use another run_dir for a new run, or delete this one."
                )

    def load(self, model, rng) -> tuple[int, LotteryRecord, dict[str, list]] | None:
        """Restore the last committed round into ``model`` and ``rng``.

        Returns ``(round, record, state)``, or ``None`` if ``run_dir`` holds no
        committed round yet (leftovers of a crashed first round are removed).

        Raises:
            FingerprintMismatchError: the directory holds another search.
            CorruptCheckpointError: a committed file is missing or altered.
        """
        manifest = read_manifest(self.dir)
        if manifest is None:
            if self.writable:
                remove_leftovers(self.dir, keep=set())
            return None
        self._check_identity(manifest)
        for name, digest in manifest["files"].items():
            file = self.dir / name
            if not file.exists() or file_sha256(file) != digest:
                raise CorruptCheckpointError(
                    f"Checkpoint file {file} is missing or corrupt (checksum mismatch); "
                    f"delete {self.dir} to start the run again."
                )
        r = int(manifest["completed_round"])
        sub = _round_dir(r)
        if self.writable:
            remove_leftovers(self.dir, keep={sub})
        model.load_weights(self.dir / sub / "model.weights.h5")
        rng.bit_generator.state = manifest["rng"]
        with np.load(self.dir / STATE_FILE) as f:
            state: dict[str, list] = {}
            for key in sorted(f.files, key=lambda k: (k.split("/")[0], int(k.split("/")[1]))):
                state.setdefault(key.split("/")[0], []).append(f[key])
        record = LotteryRecord.load(self.dir / sub)
        if self.writable and (
            not (self.dir / RECORD_COPY).exists()
            or (self.dir / RECORD_COPY).read_bytes()
            != (self.dir / sub / "record.json").read_bytes()
        ):  # a crash between the commit and the copy
            copy = (self.dir / sub / "record.json").read_bytes()
            atomic_write(self.dir / RECORD_COPY, lambda f: f.write(copy))
        return r, record, state

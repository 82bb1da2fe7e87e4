"""Resumable searches: one crash-consistent checkpoint at the end of every round.

A run directory (checkpoint format 2) holds::

    checkpoint.json      the manifest: format, last committed round, RNG state,
                         fingerprint, options, and the SHA-256 of every file below
    state.npz            written once, with round 0: θ0, the rewind point θk
                         (``rewind_to=k``) and an optimizer state that a fresh
                         optimizer would not re-create (rare: zero moments are not stored)
    round_<r>/           the last committed round r: record.json (its metrics),
                         masks.npz (every round's mask and the next round's, one
                         bit per weight) and, where the next round needs them,
                         weights.npz (the current weights, one copy)
    record.json          a copy of the committed round's record, for readers
    .lock                held while a process works in the directory

A round is committed *after* its pruning: the next round starts from the
rewind point and the new masks, so a ``rewind``, ``reinit``, ``rearrange`` or
``random_prune`` round adds only the masks (1/32 of a float32 model per
round) and its record.  ``continue``, ``finetune`` and ``lr_rewind`` keep the
trained weights, so their round also stores those (one copy, replacing the
previous round's); the final round stores the trained ticket.  A finished
search's directory thus holds θ0, the ticket and the masks.

A round's files are written under new names (``round_<r>/``), each by temp
file + rename; then one atomic rename of ``checkpoint.json`` commits them all
at once, and only after that are the previous round's files removed.  A crash
at any point leaves the last committed round intact: resuming removes leftover
temp files and uncommitted round folders and continues from there, bitwise as
an uninterrupted run.  A file whose checksum does not match the manifest is
reported, never used.  A run directory holding the fingerprint of another
search (see :mod:`keras_lottery.records.fingerprint`) is refused, and so is one of
keras-lottery 0.2.0 (format 1: a model file per round), with what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import weakref
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keras_lottery.masks.bitmasks import PackedMasks
from keras_lottery.records.files import atomic_write, file_sha256, is_temp_file
from keras_lottery.records.fingerprint import differences
from keras_lottery.records.record import LotteryRecord

MANIFEST = "checkpoint.json"
STATE_FILE = "state.npz"
RECORD_COPY = "record.json"
LOCK_FILE = ".lock"
#: The layout written here; 0.2.0's manifests have no ``format`` (layout 1).
FORMAT = 2
#: How a search over arrays orders its batches (:func:`keras_lottery.data.datasets.pass_order`):
#: a run resumes only with the order it started with.  Runs of layout 2 before
#: keras-lottery 0.3.0 have no such entry: TensorFlow's stateless shuffle ordered them.
BATCH_ORDER = "numpy-pcg64"
#: The files of one round, in ``round_<r>/`` (``weights.npz`` only where needed).
ROUND_FILES = ("record.json", "masks.npz")
WEIGHTS_FILE = "weights.npz"
#: Options that do not change the result, ignored when matching a run's config.
_COSMETIC = ("verbose", "run_dir", "data_dir")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is missing or does not match its recorded checksum."""


class RunDirInUseError(RuntimeError):
    """Another process holds the run directory's lock."""


class FingerprintMismatchError(ValueError):
    """The run directory holds a search of another model, data or options."""


class CheckpointFormatError(CorruptCheckpointError):
    """The run directory was written in another checkpoint layout (keras-lottery 0.2.0)."""


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


def check_files(run_dir: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Check that every file the manifest commits exists and matches its SHA-256.

    Raises:
        CorruptCheckpointError: naming the first file that is missing or altered.
    """
    for name, digest in manifest["files"].items():
        file = Path(run_dir) / name
        if not file.is_file() or file_sha256(file) != digest:
            raise CorruptCheckpointError(
                f"Checkpoint file {file} is missing or corrupt (checksum mismatch)"
            )


def verified_manifest(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of ``run_dir`` once its format and every committed file check out.

    ``None`` if no round is committed.

    Raises:
        CorruptCheckpointError: an unreadable manifest, another layout, or a
            committed file missing or altered (the message names it).
    """
    manifest = read_manifest(run_dir)
    if manifest is not None:
        _check_format(Path(run_dir), manifest)
        check_files(run_dir, manifest)
    return manifest


def stores_weights(manifest: Mapping[str, Any]) -> bool:
    """True if the committed round stored its weights (kept-trained strategies, the ticket)."""
    return f"{_round_dir(manifest['completed_round'])}/{WEIGHTS_FILE}" in manifest["files"]


def committed_record(run_dir: str | os.PathLike) -> LotteryRecord | None:
    """The :class:`LotteryRecord` (with masks) of the last committed round, or ``None``."""
    manifest = read_manifest(run_dir)
    if manifest is None:
        return None
    _check_format(Path(run_dir), manifest)
    folder = Path(run_dir) / _round_dir(manifest["completed_round"])
    record, _ = _read_round(folder)
    with np.load(Path(run_dir) / STATE_FILE) as f:
        key = "rewind" if any(k.startswith("rewind/") for k in f.files) else "theta0"
        record.rewind_weights = _group(f, key)
    return record


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


def write_npz(path: Path, arrays: Iterable[tuple[str, Any]]) -> None:
    """Write ``(name, array)`` pairs to an uncompressed ``.npz``, atomically.

    The pairs are consumed one at a time, so a generator that reads one
    variable per pair never holds more than one weight's copy.
    """

    def write(f):
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in arrays:
                with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                    np.lib.format.write_array(out, np.asarray(value), allow_pickle=False)

    atomic_write(path, write)


def _group(npz, prefix: str) -> dict[str, np.ndarray]:
    """``{rest: array}`` of the entries ``<prefix>/<rest>`` of an open ``.npz``."""
    head = prefix + "/"
    return {k[len(head) :]: npz[k] for k in npz.files if k.startswith(head)}


def _packed_entries(prefix: str, masks: PackedMasks):
    for name, (bits, shape) in masks.packed.items():
        yield f"{prefix}/{name}", bits
        yield f"shape/{prefix}/{name}", np.asarray(shape, dtype=np.int64)


def _unpacked_group(npz, prefix: str) -> PackedMasks:
    shapes = _group(npz, f"shape/{prefix}")
    return PackedMasks(
        {n: (bits, tuple(int(d) for d in shapes[n])) for n, bits in _group(npz, prefix).items()}
    )


def _write_round(folder: Path, record: LotteryRecord, next_masks: PackedMasks | None) -> None:
    """``masks.npz`` (every round's mask, packed, and the next round's) and ``record.json``."""
    entries = []
    for r in record.rounds:
        entries += _packed_entries(f"round{r.round}", PackedMasks.pack(r.masks))
    if next_masks is not None:
        entries += _packed_entries("next", next_masks)
    write_npz(folder / "masks.npz", entries)
    atomic_write(folder / "record.json", lambda f: f.write(record.to_json().encode()))


def _read_round(folder: Path) -> tuple[LotteryRecord, PackedMasks | None]:
    """The record (masks packed) and the next round's masks that ``_write_round`` wrote."""
    data = json.loads((folder / "record.json").read_text())
    with np.load(folder / "masks.npz") as f:
        record = LotteryRecord.from_dict(data, lambda r: _unpacked_group(f, f"round{r}"))
        has_next = any(k.startswith("next/") for k in f.files)
        next_masks = _unpacked_group(f, "next") if has_next else None
    return record, next_masks


def _check_format(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    found = manifest.get("format", 1)
    if found != FORMAT:
        raise CheckpointFormatError(
            f"{run_dir} holds a checkpoint of layout {found} (a model file per round, "
            f"keras-lottery 0.2.0); this version reads layout {FORMAT} only. Finish that "
            "run with keras-lottery 0.2.0, or delete the directory (or use another "
            "run_dir) to start the search again; its finished rounds' metrics are in "
            f"{run_dir / RECORD_COPY}."
        )


def _check_batch_order(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse to go on training a run over arrays that started with another batch order."""
    order = manifest.get("batch_order", "tensorflow-stateless-shuffle")
    finished = manifest["completed_round"] >= manifest.get("config", {}).get("rounds", 0)
    over_arrays = str(manifest.get("fingerprint", {}).get("data", "")).startswith("arrays:")
    if order != BATCH_ORDER and over_arrays and not finished:
        raise CheckpointFormatError(
            f"{run_dir} was trained on batches in the order {order!r} (keras-lottery before "
            f"0.3.0); this version orders batches as {BATCH_ORDER!r} on every backend, so "
            "its later rounds would see other batches. Finish that run with the version "
            "that started it, or delete the directory (or use another run_dir) to start "
            f"the search again; its finished rounds' metrics are in {run_dir / RECORD_COPY}."
        )


@dataclass
class Resumed:
    """What :meth:`RunCheckpoint.load` restores: the search as its last round committed it."""

    round: int
    record: LotteryRecord
    #: ``"rewind"`` (θk, absent for θ0) and ``"optimizer0"`` arrays, by name
    state: dict[str, dict[str, np.ndarray]]
    #: the masks the next round trains with (``None`` after the final round)
    next_masks: PackedMasks | None
    #: the weights to continue from (keep-trained strategies, the final ticket), by path
    weights: dict[str, np.ndarray] | None


class RunCheckpoint:
    """Save and restore a search in ``run_dir`` (locked while the object lives).

    Args:
        run_dir: the folder (created if missing).
        config: the search's options (compared on resume, cosmetic ones aside).
        fingerprint: from :func:`keras_lottery.records.fingerprint.fingerprint`; a
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
        self._state_digest: str | None = None
        if writable:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock = lock_run_dir(self.dir)

    def close(self) -> None:
        """Release this object's hold on the lock."""
        self._lock = None

    def save(
        self,
        round_: int,
        record: LotteryRecord,
        rng: np.random.Generator,
        *,
        state: Mapping[str, Mapping[str, Any]],
        next_masks: PackedMasks | None = None,
        weights: Iterable[tuple[str, Any]] | None = None,
    ) -> None:
        """Commit round ``round_``: its files, then the manifest, then remove the old ones.

        Args:
            record: the search's record up to this round.
            rng: the search's generator, as the next round will use it.
            state: ``{"theta0": {path: array}, "rewind": ..., "optimizer0": ...}``,
                written to ``state.npz`` once (with round 0, or if missing).
            next_masks: the masks of the next round (``None`` after the last).
            weights: ``(path, variable or array)`` pairs to continue from, read
                one at a time; ``None`` where the next round needs no weights.
        """
        if not self.writable:
            return
        sub = _round_dir(round_)
        folder = self.dir / sub
        if folder.exists():  # an uncommitted leftover of a crash
            shutil.rmtree(folder)
        folder.mkdir()
        state_file = self.dir / STATE_FILE
        if round_ == 0 or not state_file.exists():  # θ0 and the rewind point: once per run
            write_npz(
                state_file, ((f"{k}/{n}", v) for k, vs in state.items() for n, v in vs.items())
            )
            self._state_digest = file_sha256(state_file)
        elif self._state_digest is None:
            self._state_digest = file_sha256(state_file)
        names = [f"{sub}/{n}" for n in ROUND_FILES]
        if weights is not None:
            write_npz(folder / WEIGHTS_FILE, weights)
            names.append(f"{sub}/{WEIGHTS_FILE}")
        _write_round(folder, record, next_masks)
        files = {STATE_FILE: self._state_digest}
        files.update({name: file_sha256(self.dir / name) for name in names})
        manifest = {
            "format": FORMAT,
            "batch_order": BATCH_ORDER,
            "completed_round": round_,
            "config": _comparable(self.config),
            "fingerprint": self.fingerprint,
            "rng": rng.bit_generator.state,
            "files": files,
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

    def load(self, rng: np.random.Generator) -> Resumed | None:
        """Restore ``rng`` and read the last committed round.

        θ0 itself is not read back: the fingerprint has shown that the
        caller's θ0 is the stored one.  Returns ``None`` if ``run_dir`` holds
        no committed round yet (leftovers of a crashed first round are removed).

        Raises:
            FingerprintMismatchError: the directory holds another search.
            CheckpointFormatError: it was written by keras-lottery 0.2.0.
            CorruptCheckpointError: a committed file is missing or altered.
        """
        manifest = read_manifest(self.dir)
        if manifest is None:
            if self.writable:
                remove_leftovers(self.dir, keep=set())
            return None
        _check_format(self.dir, manifest)
        self._check_identity(manifest)
        _check_batch_order(self.dir, manifest)
        try:
            check_files(self.dir, manifest)
        except CorruptCheckpointError as e:
            hint = f"delete {self.dir} to start the run again"
            raise CorruptCheckpointError(f"{e}; {hint}.") from None
        self._state_digest = manifest["files"][STATE_FILE]
        r = int(manifest["completed_round"])
        sub = _round_dir(r)
        if self.writable:
            remove_leftovers(self.dir, keep={sub})
        rng.bit_generator.state = manifest["rng"]
        with np.load(self.dir / STATE_FILE) as f:
            state = {k: _group(f, k) for k in ("rewind", "optimizer0")}
        record, next_masks = _read_round(self.dir / sub)
        weights = None
        if (self.dir / sub / WEIGHTS_FILE).exists():
            with np.load(self.dir / sub / WEIGHTS_FILE) as f:
                weights = {k: f[k] for k in f.files}
        if self.writable and (
            not (self.dir / RECORD_COPY).exists()
            or (self.dir / RECORD_COPY).read_bytes()
            != (self.dir / sub / "record.json").read_bytes()
        ):  # a crash between the commit and the copy
            copy = (self.dir / sub / "record.json").read_bytes()
            atomic_write(self.dir / RECORD_COPY, lambda f: f.write(copy))
        return Resumed(r, record, state, next_masks, weights)

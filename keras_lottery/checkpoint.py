"""Resumable searches: one checkpoint at the end of every round.

A run directory holds::

    state.npz            θ0, the rewind point and the optimizer's initial state
    round_<r>.weights.h5 the model (masks included) after training round r
    record.json, masks.npz  the LotteryRecord so far
    checkpoint.json      manifest: config, last finished round, SHA-256 of each file

Every file is written to a temporary name and renamed; the manifest is written
last, so a run killed at any moment resumes from the last finished round.  A
file whose checksum does not match the manifest is reported, never used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from keras_lottery.files import atomic_write, file_sha256
from keras_lottery.record import LotteryRecord

MANIFEST = "checkpoint.json"
#: Options that do not change the result, ignored when matching a run's config.
_COSMETIC = ("verbose", "run_dir", "data_dir")


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is missing or does not match its recorded checksum."""


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in _COSMETIC}))


class RunCheckpoint:
    """Save and restore a search in ``run_dir``."""

    def __init__(self, run_dir: str | os.PathLike, config: dict[str, Any]):
        self.dir = Path(run_dir)
        self.config = config

    def save(self, round_: int, model, record: LotteryRecord, state: dict[str, list], rng) -> None:
        """Checkpoint after training round ``round_``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        files = []
        if round_ == 0 or not (self.dir / "state.npz").exists():
            arrays = {f"{k}/{i}": v for k, vs in state.items() for i, v in enumerate(vs)}
            atomic_write(self.dir / "state.npz", lambda f: np.savez(f, **arrays))
        files.append("state.npz")
        weights = f"round_{round_}.weights.h5"
        tmp = self.dir / f".tmp-{os.getpid()}-{weights}"
        try:
            model.save_weights(tmp)
            os.replace(tmp, self.dir / weights)
        finally:
            if tmp.exists():
                tmp.unlink()
        files.append(weights)
        record.save(self.dir)
        files += ["record.json", "masks.npz"]
        manifest = {
            "config": _comparable(self.config),
            "completed_round": round_,
            "rng": rng.bit_generator.state,
            "files": {name: file_sha256(self.dir / name) for name in files},
        }
        text = json.dumps(manifest, indent=2, default=str).encode()
        atomic_write(self.dir / MANIFEST, lambda f: f.write(text))
        for old in self.dir.glob("round_*.weights.h5"):  # keep only the newest
            if old.name != weights:
                old.unlink()

    def load(self, model, rng) -> tuple[int, LotteryRecord, dict[str, list]] | None:
        """Restore the last finished round into ``model`` and ``rng``.

        Returns ``(round, record, state)``, or ``None`` if ``run_dir`` holds no
        checkpoint yet.
        """
        path = self.dir / MANIFEST
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptCheckpointError(f"{path} is not valid JSON ({e}).") from e
        if manifest["config"] != _comparable(self.config):
            diff = sorted(
                k
                for k in set(manifest["config"]) | set(_comparable(self.config))
                if manifest["config"].get(k) != _comparable(self.config).get(k)
            )
            raise ValueError(
                f"{self.dir} holds a run with a different configuration (differs in "
                f"{diff}); use another run_dir or the same options."
            )
        for name, digest in manifest["files"].items():
            file = self.dir / name
            if not file.exists() or file_sha256(file) != digest:
                raise CorruptCheckpointError(
                    f"Checkpoint file {file} is missing or corrupt (checksum mismatch); "
                    f"delete {self.dir} to start the run again."
                )
        r = manifest["completed_round"]
        model.load_weights(self.dir / f"round_{r}.weights.h5")
        rng.bit_generator.state = manifest["rng"]
        with np.load(self.dir / "state.npz") as f:
            state: dict[str, list] = {}
            for key in sorted(f.files, key=lambda k: (k.split("/")[0], int(k.split("/")[1]))):
                state.setdefault(key.split("/")[0], []).append(f[key])
        return r, LotteryRecord.load(self.dir), state

"""Run directories: one resumable ticket search per configuration.

A *run configuration* is a flat dict of JSON values (:data:`DEFAULTS` lists
every key and its default): the model (a :mod:`~keras_lottery.zoo` name or a
``.keras`` file), the dataset (see :func:`~keras_lottery.data.datasets.load_dataset`)
and the options of :func:`~keras_lottery.find_ticket`.  Each configuration
lives in ``<runs_root>/<run_id>``, where the id is a short SHA-256 of the
canonical JSON of its *non-default* settings, so the same configuration always
maps to the same directory::

    config.json          the configuration (and its id)
    checkpoint.json ...  find_ticket's per-round checkpoints (resumable)
    ticket.keras         the trained ticket, written atomically at the end
    DONE                 JSON summary with the ticket's SHA-256, written last
    FAILED               why the search stopped (divergence); absent once it succeeds

A failure before the first round is committed removes what the run wrote, so
no half-made run directory is left behind.  Whatever hands a finished run back
checks ``ticket.keras`` against ``DONE`` (:func:`ticket_problem`); a missing or
altered ticket (or an unreadable ``DONE``) is rebuilt from the checkpoint of
the final round, which holds the ticket's weights and masks
(:func:`rebuild_ticket`), and only where that checkpoint is damaged too is the
run lost (:class:`TicketDamagedError` says what to do).

>>> config = normalize_config({"rounds": 2, "strategy": "reinit"})
>>> run_dir = prepare_run(config, "runs")
>>> ticket = run(config, run_dir)
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import difflib
import functools
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_lottery import options
from keras_lottery.callbacks import DivergenceError
from keras_lottery.data.datasets import DEFAULT_DATASET, Dataset, load_dataset
from keras_lottery.records.checkpoint import (
    MANIFEST,
    CorruptCheckpointError,
    lock_run_dir,
    read_manifest,
    remove_leftovers,
    stores_weights,
    verified_manifest,
)
from keras_lottery.records.files import atomic_save, atomic_write, file_sha256
from keras_lottery.search.loop import find_ticket
from keras_lottery.zoo import MODELS, get_model

CONFIG_FILE = "config.json"
TICKET_FILE = "ticket.keras"
DONE_FILE = "DONE"
FAILED_FILE = "FAILED"
LOCK_FILE = ".lock"
#: What :func:`rebuild_ticket` does, for messages ("ticket.keras is missing: rebuilding ...").
REBUILDING = "rebuilding it from the checkpoint of the final round (no training)"

#: Every key of a run configuration and its default.  The defaults make the
#: plain ``keras-lottery find`` a run of about a minute on two CPU cores.  The
#: search options (rounds ... seed) are those of :mod:`keras_lottery.options`,
#: with their run defaults; the others are checked by :func:`normalize_config`.
DEFAULTS: dict[str, Any] = {
    "model": "lenet_300_100",
    "dataset": DEFAULT_DATASET,
    "data_dir": None,
    "train_size": None,
    "test_size": None,
    "optimizer": None,
    "lr": None,
    **options.run_defaults(),
    "validation_split": 0.1,
    "early_bird": False,
    "steps_per_execution": 1,
    **{key: None for key in options.AT_INIT_SPECS},
}

#: Keys that locate things or set speed without changing results: kept out of the run id.
LOCATION_KEYS = ("data_dir", "steps_per_execution")


class RunError(RuntimeError):
    """A run directory is missing, unreadable, or in use by another process."""


class TicketDamagedError(RunError):
    """A finished run's ``ticket.keras`` (or ``DONE``) is damaged and not rebuilt here."""


# -- configuration ----------------------------------------------------------


def suggest_name(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key_message(key: str, where: str = "configuration") -> str:
    """``"unknown option 'x' in configuration (did you mean ...?)"``."""
    return f"unknown option {key!r} in {where}{suggest_name(key, list(DEFAULTS))}"


def _number(key: str, value: Any, kind: type, low=None, high=None, open_low=False):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} must be a number, got {value!r}.")
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{key} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{key} must be a finite number, got {value!r}.")
    if kind is int and float(value) != number:
        raise ValueError(f"{key} must be an integer, got {value!r}.")
    if (low is not None and (number < low or (open_low and number == low))) or (
        high is not None and number >= high
    ):
        bounds = f"{'(' if open_low else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{key} must be in {bounds}, got {value!r}.")
    return number


def _is_model_file(model: str) -> bool:
    return model.endswith(".keras") or os.sep in model or "/" in model


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill in defaults, check names, types and ranges; return a new dict.

    Local model and dataset paths become absolute; a ``.keras`` model file also
    gets its ``model_sha256`` (part of the run id, so an edited file is a new run).

    Raises:
        ValueError: an unknown key (with a suggestion) or a bad value, naming the key.
        FileNotFoundError: a ``.keras`` model file that does not exist.
    """
    for key in config:
        if key not in DEFAULTS and key != "model_sha256":
            raise ValueError(unknown_key_message(key))
    c = {**copy.deepcopy(DEFAULTS), **{k: v for k, v in config.items() if k != "model_sha256"}}
    for key in ("model", "dataset"):
        if not isinstance(c[key], str) or not c[key]:
            raise ValueError(f"{key} must be a non-empty string, got {c[key]!r}.")
    if _is_model_file(c["model"]):
        path = Path(c["model"]).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"No such model file: {c['model']}")
        c["model"] = str(path)
        c["model_sha256"] = file_sha256(path)
    else:
        key = c["model"].lower().replace("-", "_")
        if key not in MODELS:
            raise ValueError(
                f"Unknown model {c['model']!r}; choose one of {', '.join(MODELS)} "
                "or give a .keras file."
            )
        c["model"] = key
    dataset = Path(c["dataset"]).expanduser()
    if c["dataset"] != DEFAULT_DATASET and (dataset.exists() or dataset.suffix == ".npz"):
        c["dataset"] = str(dataset.resolve())
    for key in ("data_dir", "optimizer"):
        if c[key] is not None and not isinstance(c[key], str):
            raise ValueError(f"{key} must be a string, got {c[key]!r}.")
    for key in ("train_size", "test_size"):
        c[key] = _number(key, c[key], int, 1)
    c["steps_per_execution"] = _number("steps_per_execution", c["steps_per_execution"], int, 1)
    if c["steps_per_execution"] is None:
        raise ValueError("steps_per_execution must not be empty (1: one step per call).")
    c["lr"] = _number("lr", c["lr"], float, 0.0, open_low=True)
    c["validation_split"] = _number("validation_split", c["validation_split"], float, 0.0, 1.0)
    if not isinstance(c["early_bird"], bool):
        raise ValueError(f"early_bird must be true or false, got {c['early_bird']!r}.")
    for key, spec in options.AT_INIT_SPECS.items():
        c[key] = spec.validate(key, spec.parse(c[key]))
    if (c["at_init"] is None) != (c["sparsity"] is None):
        raise ValueError("at_init and sparsity go together: --at-init snip --sparsity 0.95.")
    for key, spec in options.run_specs().items():  # text -> the option's type; checked below
        c[key] = spec.parse(c[key])
    for group in _option_groups(c).values():
        c.update({k: v for k, v in group.to_dict().items() if k in c})
    return c


def _option_groups(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{"pruning": Pruning(...), ...}`` of a configuration (each checks its values)."""
    specs = options.run_specs()
    return {
        keyword: cls(**{k: config[k] for k in cls.specs() if k in specs})
        for keyword, cls in options.GROUPS.items()
    }


def non_default(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that differ from :data:`DEFAULTS` and change results.

    A ``.keras`` model file is identified by its content (``sha256:...``).
    """
    out = {
        k: v
        for k, v in config.items()
        if k in DEFAULTS and k not in LOCATION_KEYS and v != DEFAULTS[k]
    }
    if config.get("model_sha256"):
        out["model"] = f"sha256:{config['model_sha256']}"
    return out


def config_hash(config: Mapping[str, Any], length: int = 12) -> str:
    """Short SHA-256 of the canonical JSON of :func:`non_default` (the run id)."""
    text = json.dumps(non_default(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_dir_for(config: Mapping[str, Any], runs_root: str | os.PathLike = "runs") -> Path:
    """``<runs_root>/<config_hash(config)>``."""
    return Path(runs_root) / config_hash(config)


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True).encode()
    atomic_write(path, lambda f: f.write(text))


def prepare_run(config: Mapping[str, Any], runs_root: str | os.PathLike = "runs") -> Path:
    """Create the run directory of a normalized ``config`` and its ``config.json``.

    An existing directory keeps its file, except that location keys (``data_dir``)
    are updated.  Returns the directory.
    """
    run_dir = run_dir_for(config, runs_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CONFIG_FILE
    if path.exists():
        old = load_config(run_dir)
        if non_default(old) != non_default(config):
            raise RunError(f"{run_dir} holds a different configuration; delete it or move it.")
        if old == dict(config):
            return run_dir
    _write_json(
        path,
        {"run_id": config_hash(config), "non_default": non_default(config), "config": config},
    )
    return run_dir


def load_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The normalized configuration stored in ``run_dir/config.json``.

    Raises:
        RunError: not a run directory, or an unreadable/invalid ``config.json``.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise RunError(f"{run_dir} is not a directory.")
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no {CONFIG_FILE}).")
    try:
        data = json.loads(path.read_text())
        config = normalize_config(data["config"])
        if data["config"].get("model_sha256"):  # the file's content when the run began
            config["model_sha256"] = data["config"]["model_sha256"]
        return config
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise RunError(f"{path} is unreadable or corrupt ({type(e).__name__}: {e}).") from e
    except (ValueError, FileNotFoundError) as e:
        raise RunError(f"{path} holds an invalid configuration: {e}") from e


# -- status -----------------------------------------------------------------


def total_rounds(config: Mapping[str, Any]) -> int:
    """Training rounds of a run: ``rounds + 1`` (or 2 when one-shot)."""
    return 2 if config["one_shot"] else config["rounds"] + 1


def completed_round(run_dir: str | os.PathLike) -> int | None:
    """The last round ``run_dir`` has checkpointed (0-based), or ``None``."""
    manifest = read_manifest(run_dir)
    return None if manifest is None else int(manifest["completed_round"])


def _read_done(run_dir: Path) -> dict[str, Any]:
    path = run_dir / DONE_FILE
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path} is unreadable or corrupt ({e}).") from e
    if not isinstance(summary, dict):
        raise RunError(f"{path} is corrupt (not a JSON object).")
    return summary


def done_summary(run_dir: str | os.PathLike, *, verify: bool = True) -> dict[str, Any] | None:
    """The ``DONE`` summary of a finished run, or ``None`` if it is not finished.

    With ``verify`` (the default) the run's ``ticket.keras`` must match the
    checksum the summary records: a summary is never handed back for a ticket
    that is not there.

    Raises:
        TicketDamagedError: the ticket (or ``DONE``) is damaged; the message says
            whether :func:`rebuild_ticket` (``keras-lottery resume``) can rebuild it.
    """
    run_dir = Path(run_dir)
    if not is_done(run_dir):
        return None
    if verify:
        problem = ticket_problem(run_dir)
        if problem is not None:
            raise TicketDamagedError(damage_message(run_dir, problem))
    return _read_done(run_dir)


def failure_reason(run_dir: str | os.PathLike) -> str | None:
    """Why the run stopped (the ``FAILED`` file), or ``None``."""
    path = Path(run_dir) / FAILED_FILE
    if not path.exists():
        return None
    try:
        return str(json.loads(path.read_text())["reason"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return "unknown (FAILED is unreadable)"


def is_done(run_dir: str | os.PathLike) -> bool:
    """True once ``run_dir`` has its ``DONE`` marker (see :func:`ticket_problem` for its ticket)."""
    return (Path(run_dir) / DONE_FILE).exists()


def ticket_problem(run_dir: str | os.PathLike) -> str | None:
    """What is wrong with a finished run's ticket; ``None`` if it is intact or not finished.

    The ticket is intact when ``ticket.keras`` has the SHA-256 that ``DONE`` records.
    """
    run_dir = Path(run_dir)
    if not is_done(run_dir):
        return None
    try:
        expected = _read_done(run_dir).get("ticket_sha256")
    except RunError:
        return f"{DONE_FILE} is unreadable"
    path = run_dir / TICKET_FILE
    if not path.is_file():
        return f"{TICKET_FILE} is missing"
    if expected is not None and file_sha256(path) != expected:
        return f"{TICKET_FILE} does not match the checksum in {DONE_FILE} (altered or truncated)"
    return None


def rebuild_problem(run_dir: str | os.PathLike) -> str | None:
    """Why the checkpoint of ``run_dir`` cannot rebuild its ticket; ``None`` if it can.

    It can when its last committed round is the final one and every committed
    file (θ0, the masks, the ticket's weights) matches its checksum.
    """
    run_dir = Path(run_dir)
    try:
        config = load_config(run_dir)
        manifest = verified_manifest(run_dir)
    except (RunError, CorruptCheckpointError) as e:
        return str(e).rstrip(".")
    if manifest is None:
        return f"it has no checkpoint ({MANIFEST} is missing)"
    last = total_rounds(config) - 1
    if int(manifest["completed_round"]) != last or not stores_weights(manifest):
        found = manifest["completed_round"]
        return f"its checkpoint holds round {found}, not the final round {last}"
    return None


def damage_message(run_dir: str | os.PathLike, problem: str, why_not: str | None = None) -> str:
    """The user's message for a damaged ticket: what is wrong and what to do.

    ``why_not`` defaults to :func:`rebuild_problem` of ``run_dir``.
    """
    why_not = why_not if why_not is not None else rebuild_problem(run_dir)
    if why_not is None:
        return (
            f"{run_dir}: {problem}; its checkpoint can rebuild it: run `keras-lottery resume "
            f"{run_dir}` (or keras_lottery.runs.directory.rebuild_ticket)."
        )
    return (
        f"{run_dir}: {problem}, and its checkpoint cannot rebuild it ({why_not}); restore "
        f"{TICKET_FILE} and {DONE_FILE} from a copy, or delete {run_dir} and run the search again."
    )


@dataclass
class RunInfo:
    """One run directory and how far it got."""

    path: Path
    config: dict[str, Any]
    completed_round: int | None
    total_rounds: int
    done: bool
    failed: str | None = None
    #: a finished run's damaged ticket: what is wrong and what to do (see :func:`damage_message`)
    damaged: str | None = None

    @property
    def status(self) -> str:
        if self.damaged:
            return "damaged"
        if self.done:
            return "done"
        if self.failed:
            return "failed"
        if self.completed_round is None:
            return "new"
        return f"round {self.completed_round + 1}/{self.total_rounds}"


def run_info(run_dir: str | os.PathLike) -> RunInfo:
    """Configuration and progress of one run directory (raises :class:`RunError`)."""
    config = load_config(run_dir)
    problem = ticket_problem(run_dir)
    return RunInfo(
        Path(run_dir),
        config,
        completed_round(run_dir),
        total_rounds(config),
        is_done(run_dir),
        failure_reason(run_dir),
        None if problem is None else damage_message(run_dir, problem),
    )


def list_runs(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Run directories among ``paths``: each a run directory or a folder of them."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / CONFIG_FILE).is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(d for d in p.iterdir() if (d / CONFIG_FILE).is_file()))
        else:
            raise RunError(f"{p} is not a directory.")
    return found


def readable_runs(
    paths: str | os.PathLike | Sequence[str | os.PathLike], read=None, on_error=None
) -> list[Any]:
    """``read(run_dir)`` for each run among ``paths`` that reads cleanly.

    A corrupt run directory is skipped: ``on_error(run_dir, error)`` is called
    (default: a warning naming it and the problem).  ``read`` defaults to
    :func:`run_info`.
    """
    read = read or run_info
    out = []
    for d in list_runs(paths):
        try:
            out.append(read(d))
        except (RunError, CorruptCheckpointError, ValueError, OSError) as e:
            if on_error is None:
                warnings.warn(f"skipping {d}: {e}", stacklevel=2)
            else:
                on_error(d, e)
    return out


# -- running ------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _cached_dataset(name: str, data_dir: str | None, mtime: float | None) -> Dataset:
    return load_dataset(name, data_dir=data_dir)


def load_data(config: Mapping[str, Any]) -> Dataset:
    """The configuration's dataset, cut to ``train_size`` / ``test_size``.

    The last dataset loaded is kept in memory (a sweep loads it once).
    """
    path = Path(config["dataset"])
    mtime = path.stat().st_mtime if path.exists() else None
    data = _cached_dataset(config["dataset"], config["data_dir"], mtime)
    if config["train_size"] or config["test_size"]:
        data = data.subset(config["train_size"], config["test_size"])
    return data


def _optimizer(name: str | None, lr: float | None, current) -> keras.optimizers.Optimizer:
    if name is None and current is not None:
        cfg = current.get_config()
        if lr is not None:
            cfg["learning_rate"] = lr
        return type(current).from_config(cfg)
    optimizer = keras.optimizers.get(name or "adam")
    if lr is not None:
        optimizer.learning_rate = lr
    return optimizer


def build_model(config: Mapping[str, Any], data: Dataset) -> keras.Model:
    """The configuration's compiled model, shaped for ``data``.

    Zoo models are built with ``seed``; a ``.keras`` file is loaded as saved
    (its weights are θ0) and, if it is not compiled, compiled with
    ``optimizer`` (default Adam) and ``lr`` and a cross-entropy loss.  Given
    ``optimizer``/``lr`` replace the optimizer of a compiled model;
    ``steps_per_execution`` > 1 recompiles it to run that many steps per call.
    """
    if config.get("model_sha256"):
        path = Path(config["model"])
        if not path.is_file():
            raise FileNotFoundError(f"No such model file: {path}")
        if file_sha256(path) != config["model_sha256"]:
            raise RunError(f"{path} changed since this run was configured (checksum differs).")
        model = load_keras_file(path)
    else:
        model = get_model(
            config["model"], data.x_train.shape[1:], data.num_classes, seed=config["seed"]
        )
    compiled = getattr(model, "optimizer", None) is not None and model.compiled
    if not compiled or config["optimizer"] is not None or config["lr"] is not None:
        if compiled:
            loss = model.loss
        else:
            loss = (
                "binary_crossentropy"
                if model.outputs[0].shape[-1] == 1
                else "sparse_categorical_crossentropy"
            )
        current = model.optimizer if compiled else None
        optimizer = _optimizer(config["optimizer"], config["lr"], current)
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    spe = config.get("steps_per_execution", 1)
    if spe > 1 and spe != model.get_compile_config().get("steps_per_execution", 1):
        compile_config = {**model.get_compile_config(), "steps_per_execution": spe}
        model.compile_from_config(compile_config)
    return model


def find_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`find_ticket` keyword arguments of a configuration.

    Its option objects (``pruning``, ``reset``, ``training``), ``validation_split``
    and ``early_bird``; an empty ``layer_rates``, a 0 ``validation_split`` and
    a false ``early_bird`` mean "none".
    """
    found = _option_groups({**config, "layer_rates": dict(config["layer_rates"]) or None})
    found["validation_split"] = config["validation_split"] or None
    found["early_bird"] = config["early_bird"] or None
    return found


@contextlib.contextmanager
def _lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` (released even on SIGKILL)."""
    handle = lock_run_dir(run_dir)
    try:
        yield
    finally:
        del handle


#: What a run writes into its directory (removed again if it fails before round 0 commits).
_RUN_FILES = (CONFIG_FILE, LOCK_FILE, MANIFEST, "state.npz", "record.json", FAILED_FILE)


def _remove_unstarted(run_dir: Path) -> None:
    """Remove a run directory whose first round never committed (keep foreign files)."""
    if read_manifest(run_dir) is not None or is_done(run_dir):
        return
    remove_leftovers(run_dir, keep=set())
    for name in _RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()  # only if nothing else is in it


def _save_model(model: keras.Model, path: Path) -> None:
    atomic_save(path, model.save)


def run(
    config: Mapping[str, Any],
    run_dir: str | os.PathLike,
    *,
    callbacks: Sequence[keras.callbacks.Callback] | None = None,
    verbose: int | str = "auto",
) -> keras.Model:
    """Run (or resume) the search of ``config`` in ``run_dir``; return the ticket.

    Checkpoints every round into ``run_dir``; at the end writes ``ticket.keras``
    and then the ``DONE`` summary.  A finished run is loaded, not redone
    (:func:`load_ticket`: a damaged ticket is rebuilt from the checkpoint).

    Raises:
        RunError: the directory is locked by another process.
        TicketDamagedError: a finished run's ticket is damaged beyond rebuilding.
        ValueError, FileNotFoundError, CorruptCheckpointError: from the library.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_done(run_dir):
        return load_ticket(run_dir)
    with _lock(run_dir):
        t0 = time.perf_counter()
        try:
            ticket = _search(config, run_dir, callbacks, verbose)
        except DivergenceError as e:
            _write_json(run_dir / FAILED_FILE, {"reason": str(e)})
            raise
        except BaseException:
            _remove_unstarted(run_dir)
            raise
        (run_dir / FAILED_FILE).unlink(missing_ok=True)
        _write_ticket(run_dir, config, ticket, {"seconds_this_session": time.perf_counter() - t0})
    return ticket


def _search(config, run_dir: Path, callbacks=None, verbose: int | str = "auto") -> keras.Model:
    """``find_ticket`` on the configuration's model and data, checkpointed in ``run_dir``."""
    data = load_data(config)
    model = build_model(config, data)
    if config.get("at_init"):
        model = _pruned_at_init(model, data, config)
    return find_ticket(
        model,
        data,
        **find_options(config),
        run_dir=run_dir,
        callbacks=callbacks,
        verbose=verbose,
    )


def _write_ticket(run_dir: Path, config, ticket: keras.Model, extra: Mapping[str, Any]) -> None:
    """``ticket.keras``, then the ``DONE`` summary with its checksum (each atomically)."""
    _save_model(ticket, run_dir / TICKET_FILE)
    final = ticket.lottery.final
    summary = {
        "run_id": config_hash(config),
        "ticket_sha256": file_sha256(run_dir / TICKET_FILE),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(),
        "rounds": len(ticket.lottery.rounds),
        "sparsity": final.sparsity,
        "percent_remaining": final.percent_remaining,
        "test_accuracy": final.test_accuracy,
        "early_stop_iteration": final.early_stop_iteration,
        "early_stop_test_accuracy": final.early_stop_test_accuracy,
        "seconds_training": sum(r.seconds for r in ticket.lottery.rounds),
        "cost": ticket.lottery.cost.to_dict() if ticket.lottery.cost else None,
        **extra,
    }
    _write_json(run_dir / DONE_FILE, summary)


def rebuild_ticket(run_dir: str | os.PathLike) -> keras.Model:
    """Write a finished run's ``ticket.keras`` and ``DONE`` again from its checkpoint.

    The checkpoint of the final round holds the ticket's weights and masks
    (checksummed), so the rebuilt ticket has the same weights, masks and record
    as the one the search wrote; its optimizer starts afresh (optimizer state
    is not checkpointed), so the file's bytes and checksum are new.  ``DONE``
    keeps when the search finished and adds ``rebuilt`` (when, and what was
    wrong).  A no-op returning the ticket if nothing is wrong.

    Raises:
        TicketDamagedError: the checkpoint cannot rebuild it (the message says
            what is damaged and what to do).
        RunError: not a finished run, or in use by another process.
    """
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if not is_done(run_dir):
        raise RunError(f"{run_dir} is not finished (no {DONE_FILE}); resume it instead.")
    with _lock(run_dir):
        problem = ticket_problem(run_dir)
        if problem is None:  # intact (or rebuilt by another call meanwhile)
            return load_ticket(run_dir)
        why_not = rebuild_problem(run_dir)
        if why_not is not None:
            raise TicketDamagedError(damage_message(run_dir, problem, why_not))
        try:
            ticket = _search(config, run_dir, verbose=0)
        except (RunError, CorruptCheckpointError, ValueError, OSError) as e:
            why_not = f"rebuilding failed: {type(e).__name__}: {str(e).strip()[:300]}"
            raise TicketDamagedError(damage_message(run_dir, problem, why_not)) from e
        try:
            old = _read_done(run_dir)
        except RunError:
            old = {}
        kept = {k: old[k] for k in ("finished", "seconds_this_session") if k in old}
        now = datetime.datetime.now(datetime.UTC).isoformat()
        _write_ticket(run_dir, config, ticket, {**kept, "rebuilt": {"at": now, "because": problem}})
    return ticket


def _pruned_at_init(model: keras.Model, data: Dataset, config: Mapping[str, Any]):
    """``model`` pruned at θ0 by the run's ``at_init`` criterion (same seed, same masks)."""
    from keras_lottery.search.at_init import prune_at_init

    return prune_at_init(
        model,
        (data.x_train, data.y_train),
        sparsity=config["sparsity"],
        method=config["at_init"],
        seed=config["seed"] or 0,
    )


def load_ticket(run_dir: str | os.PathLike, *, rebuild: bool = True) -> keras.Model:
    """The trained, mask-aware ticket of a finished run (``ticket.keras``).

    The file must match the SHA-256 recorded in ``DONE`` and is loaded in
    Keras's safe mode (no code in the file is run).  A missing or altered
    ticket is rebuilt from the run's checkpoint (:func:`rebuild_ticket`), unless
    ``rebuild`` is false.  A run killed between its last checkpoint and ``DONE``
    is finished the same way, without training.

    Raises:
        RunError: the run is not finished.
        TicketDamagedError: the ticket is damaged and was not (or cannot be) rebuilt.
    """
    run_dir = Path(run_dir)
    if not is_done(run_dir):
        config = load_config(run_dir)
        if rebuild and rebuild_problem(run_dir) is None:  # trained; ticket or DONE unwritten
            return run(config, run_dir, verbose=0)
        raise RunError(f"{run_dir} has no {DONE_FILE}: the run is not finished; resume it.")
    problem = ticket_problem(run_dir)
    if problem is not None:
        if not rebuild:
            raise TicketDamagedError(damage_message(run_dir, problem))
        rebuild_ticket(run_dir)
    return load_keras_file(run_dir / TICKET_FILE)


def load_keras_file(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` file in safe mode; a bad file is a :class:`RunError` naming it."""
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise RunError(
            f"{path} is not a loadable .keras model ({type(e).__name__}: {msg[:200]})."
        ) from e


def model_inputs(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """``x`` reshaped to the model's input shape, e.g. (n, 28, 28) -> (n, 28, 28, 1)."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return x
    shape = tuple(inputs[0].shape[1:])
    if None in shape or tuple(x.shape[1:]) == shape:
        return x
    return x.reshape((len(x), *shape))


def export_run(
    run_dir: str | os.PathLike,
    format: str = "tflite",
    path: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    verify_size: int = 1000,
    overwrite: bool = False,
    rnn: str | None = None,
    compact: bool = False,
    batch_size: int | None = None,
):
    """Export a finished run's ticket with :func:`keras_lottery.export.export`.

    Default ``path``: ``<run_dir>/export/<name><suffix>`` with ``name`` ``"ticket"``.
    The run's dataset verifies the export (first ``verify_size`` test examples)
    and calibrates ``"tflite-int8-full"`` (training images).  A file export
    gets its SHA-256 beside it (``<file>.sha256``, checked by ``sha256sum -c``).
    ``name`` must be a plain file name: an export never lands outside its folder.
    """
    from keras_lottery.export import FORMATS, export

    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    name = name or "ticket"
    if not isinstance(name, str) or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise ValueError(
            f"--name must be a plain file name without folders, got {name!r}; "
            "use --output to choose another folder."
        )
    ticket = load_ticket(run_dir)
    if path is None:
        path = run_dir / "export" / f"{name}{FORMATS[format]}"
    data = load_data(config)
    verify = None
    if verify_size:
        x = model_inputs(ticket, data.x_test[:verify_size])
        verify = (x, data.y_test[:verify_size])
    representative = None
    if format == "tflite-int8-full":
        representative = model_inputs(ticket, data.x_train[:256])
    report = export(
        ticket,
        path,
        format,
        name=name,
        representative_data=representative,
        verify_data=verify,
        overwrite=overwrite,
        rnn=rnn,
        compact=compact,
        batch_size=batch_size,
    )
    out = Path(report.path)
    if out.is_file():  # a checksum beside it, in `sha256sum -c` format
        line = f"{file_sha256(out)}  {out.name}\n".encode()
        atomic_write(out.with_name(out.name + ".sha256"), lambda f: f.write(line))
    return report


# -- sweeps -------------------------------------------------------------------

"""A finished run whose ticket.keras is damaged: every command notices, the checkpoint rebuilds it.

One tiny finished run (module fixture) is copied for each test; a copy of its
directory at the commit of ``DONE`` stands for a run killed between its files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_cli import error_line, invoke

from keras_lottery import strip
from keras_lottery.records import files
from keras_lottery.runs import directory as runs
from keras_lottery.runs import executors

pytestmark = pytest.mark.backends

OPTIONS = {"train_size": 200, "test_size": 50, "steps": 3, "rounds": 2, "validation_split": 0}
TINY = ["--train-size", "200", "--test-size", "50", "--steps", "3", "--rounds", "2"]
TINY += ["--validation-split", "0"]


def weights(model) -> list[np.ndarray]:
    """Every weight of a ticket, its masks included."""
    return [np.array(v) for v in model.weights]


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run, its ticket's weights, and a copy taken just before ``DONE`` was written."""
    root = tmp_path_factory.mktemp("finished")
    config = runs.normalize_config(OPTIONS)
    run_dir = runs.prepare_run(config, root / "runs")

    def copy_before_done(path: Path) -> None:
        if path.name == runs.DONE_FILE:  # ticket.keras is written, DONE not yet
            shutil.copytree(run_dir, root / "killed" / run_dir.name)

    files.commit_hook = copy_before_done
    try:
        runs.run(config, run_dir, verbose=0)
    finally:
        files.commit_hook = None
    return run_dir, weights(runs.load_ticket(run_dir)), root / "killed" / run_dir.name


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / run_dir.name
    shutil.copytree(run_dir, target)
    return target


def damage(run_dir: Path, how: str) -> None:
    ticket = run_dir / runs.TICKET_FILE
    data = bytearray(ticket.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01
        ticket.write_bytes(bytes(data))
    elif how == "truncate":
        ticket.write_bytes(bytes(data[: len(data) // 3]))
    else:
        ticket.unlink()


def is_intact(run_dir: Path) -> bool:
    done = json.loads((run_dir / runs.DONE_FILE).read_text())
    return done["ticket_sha256"] == files.file_sha256(run_dir / runs.TICKET_FILE)


@pytest.mark.parametrize(
    "how, command", [("flip", "find"), ("truncate", "export"), ("delete", "sweep")]
)
def test_a_damaged_ticket_is_reported_and_rebuilt_from_the_checkpoint(
    finished, tmp_path, how, command
):
    original, expected, _ = finished
    run_dir = copy_run(original, tmp_path)
    damage(run_dir, how)
    problem = runs.ticket_problem(run_dir)
    assert problem is not None and runs.TICKET_FILE in problem

    # The state, honestly: list, run_info, done_summary, report; nothing is written.
    listing = invoke("list", run_dir.parent)
    assert f"{run_dir}  damaged" in listing.output and "can rebuild it" in listing.output
    assert runs.run_info(run_dir).status == "damaged"
    with pytest.raises(runs.TicketDamagedError, match="keras-lottery resume"):
        runs.done_summary(run_dir)
    with pytest.raises(runs.TicketDamagedError, match="can rebuild it"):
        runs.load_ticket(run_dir, rebuild=False)
    report = invoke("report", run_dir.parent)
    assert report.exit_code == 0 and "Warning: " in report.output and problem in report.output
    assert runs.ticket_problem(run_dir) == problem

    # A command that hands the ticket back rebuilds it: the same weights and masks.
    if command == "find":
        result = invoke("find", *TINY, "--runs-root", run_dir.parent, "-q")
        assert result.exit_code == 0, result.output
        assert "rebuilding it from the checkpoint" in result.output and "Rebuilt " in result.output
        assert "already done" not in result.output
    elif command == "export":
        result = invoke("export", run_dir, "--format", "keras", "--verify-size", "10")
        assert result.exit_code == 0, result.output
        assert "rebuilding it from the checkpoint" in result.output
        exported = runs.load_keras_file(run_dir / "export" / "ticket.keras")
        assert same(weights(exported), weights(strip(runs.load_ticket(original))))
    else:
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({"base": OPTIONS, "grid": {}}))
        plan = executors.plan_sweep(spec, run_dir.parent)
        assert [j.run_dir for j in plan.todo] == [run_dir]
        lines: list[str] = []
        result = executors.run_sweep(
            spec, runs_root=run_dir.parent, echo=lambda line, err=False: lines.append(line)
        )
        assert result.ok and any(ln.startswith("rebuild (damaged ticket)") for ln in lines)
    assert runs.ticket_problem(run_dir) is None and is_intact(run_dir)
    assert same(weights(runs.load_ticket(run_dir)), expected)
    summary = runs.done_summary(run_dir)
    assert summary["rebuilt"]["because"] == problem
    before = json.loads((original / runs.DONE_FILE).read_text())
    for key in ("finished", "test_accuracy", "percent_remaining", "rounds"):
        assert summary[key] == before[key]
    assert runs.run_info(run_dir).status == "done"


def test_a_ticket_the_checkpoint_cannot_rebuild_is_a_clear_error(finished, tmp_path):
    original, _, _ = finished
    run_dir = copy_run(original, tmp_path)
    damage(run_dir, "flip")
    (weights_file,) = run_dir.glob("round_*/weights.npz")
    weights_file.write_bytes(weights_file.read_bytes()[:-8] + b"\0" * 8)
    listing = invoke("list", run_dir.parent)
    assert f"{run_dir}  damaged" in listing.output and "cannot rebuild it" in listing.output
    for args in (["resume", run_dir], ["export", run_dir, "--format", "keras"]):
        line = error_line(invoke(*args))
        assert "ticket.keras does not match the checksum" in line, line
        assert "cannot rebuild it" in line and str(weights_file) in line, line
        assert "restore ticket.keras and DONE from a copy, or delete" in line, line
    assert not (run_dir / "export").exists()


def test_a_kill_between_the_files_never_needs_the_run_deleted(finished, tmp_path):
    """Killed between ticket.keras and DONE, or at either file of a rebuild: loading finishes it."""
    original, expected, killed = finished
    assert not runs.is_done(killed) and (killed / runs.TICKET_FILE).is_file()
    assert runs.run_info(killed).status == "round 3/3"
    before_done = copy_run(killed, tmp_path / "a")
    assert same(weights(runs.load_ticket(before_done)), expected)  # finished, no training
    assert runs.is_done(before_done) and is_intact(before_done)

    # A rebuild killed at each of its commits (the temp file written, not yet renamed).
    run_dir = copy_run(original, tmp_path / "b")
    damage(run_dir, "delete")
    copies: list[Path] = []

    def copy_at_commit(path: Path) -> None:
        copies.append(tmp_path / f"at_{path.name}")
        shutil.copytree(run_dir, copies[-1])

    files.commit_hook = copy_at_commit
    try:
        runs.rebuild_ticket(run_dir)
    finally:
        files.commit_hook = None
    assert [c.name for c in copies] == ["at_ticket.keras", "at_DONE"]
    for copy in copies:
        assert runs.ticket_problem(copy) is not None  # DONE does not vouch for what is there
        assert same(weights(runs.load_ticket(copy)), expected)
        assert runs.ticket_problem(copy) is None and is_intact(copy)
        assert not any(files.is_temp_file(p.name) for p in copy.rglob("*"))

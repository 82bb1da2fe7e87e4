"""Tiny versions of the reproduction experiments in ``experiments/``.

They assert only what is robust at this size (checked against the full runs,
see experiments/README.md): on XOR, 10-unit nets pruned to 2 units and reset
to θ0 succeed far more often than 2-unit nets trained from scratch; on a 1k
MNIST subset, a one-shot ticket at ~7% of the weights stays close to the dense
net and beats random pruning at the same sparsity; one pruning-at-init run
(``at_init.py``) yields a complete row.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

import common  # noqa: E402
import xor  # noqa: E402

XOR_SEEDS = range(10)


def test_xor_pruned_two_unit_nets_beat_two_unit_nets_from_scratch():
    scratch = [xor.scratch(2, seed, steps=400)["ok"] for seed in XOR_SEEDS]
    pruned = [
        xor.pruned(seed, 400, "product", one_shot=True, units=2)[2]["ok"] for seed in XOR_SEEDS
    ]
    # Full run (experiments/results/xor_trials.jsonl, same settings and seeds):
    # seeds 0-9 give MARGIN_NOTE; demand a clear margin, not the exact counts.
    assert sum(pruned) >= sum(scratch) + 4, (sum(pruned), sum(scratch))


@pytest.fixture(scope="module")
def tiny_mnist():
    if not common.MNIST_DIR.is_dir():
        pytest.skip(f"real MNIST not found at {common.MNIST_DIR}")
    train, val, test = common.mnist_splits(train=1000, test=1000)
    return train, (val[0][:1000], val[1][:1000]), test


def _one_shot(strategy, data, seed=0):
    train, val, test = data
    ticket = common.kl.find_ticket(
        common.lenet(seed),
        train,
        rounds=12,  # one-shot to 0.8**12 = 6.9% of the hidden weights
        rate=0.2,
        output_rate=0.1,
        one_shot=True,
        strategy=strategy,
        steps=300,
        eval_every=50,
        validation_data=val,
        test_data=test,
        seed=seed,
        verbose=0,
    )
    return ticket.lottery.rounds


def test_one_shot_lenet_ticket_vs_random_pruning(tiny_mnist):
    dense, ticket = _one_shot("rewind", tiny_mnist)
    _, random = _one_shot("random_prune", tiny_mnist)
    assert ticket.percent_remaining == pytest.approx(7.0, abs=0.1)
    assert random.percent_remaining == pytest.approx(ticket.percent_remaining)
    for r in (dense, ticket, random):
        assert 0 < r.early_stop_iteration <= 300
        assert r.curve[-1]["iteration"] == 300
    # the ticket stays within 3 points of the dense net at ~7% of its weights ...
    assert ticket.early_stop_test_accuracy >= dense.early_stop_test_accuracy - 0.03
    # ... and is not worse than a random mask of the same size
    assert ticket.early_stop_test_accuracy >= random.early_stop_test_accuracy


def test_at_init_run_row(tiny_mnist):
    """One pruning-at-init run of ``at_init.py`` at a tiny size: its row is complete."""
    import at_init

    row = at_init.run("synflow", 0.9, 0, "rearrange", tiny_mnist, steps=100, eval_every=50)
    assert row["percent_remaining"] == pytest.approx(10.0, abs=0.01)
    assert len(row["layer_remaining"]) == 3
    assert 0 < row["early_stop_iteration"] <= 100
    assert row["early_stop_test_accuracy"] > 0.5


def test_readme_tables_are_what_tables_py_makes_from_the_stored_results():
    """Every ``<!-- table:NAME -->`` block of experiments/README.md is regenerated, not typed."""
    import re

    import tables

    text = (EXPERIMENTS / "README.md").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"<!-- table:(\S+) -->\n(.*?)\n<!-- /table -->", text, re.S))
    made = tables.tables()
    assert blocks, "no table blocks found"
    stale = [name for name, table in blocks.items() if made.get(name) != table]
    assert not stale, f"run `python experiments/tables.py --readme`; stale tables: {stale}"

"""The benchmark helpers: worker processes answer in turn, memory readings are sane."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import _bench  # noqa: E402

CHILD = f"""
import sys
sys.path.insert(0, {str(BENCH)!r})
import _bench
count = [0]
def step():
    count[0] += 1
    return {{"n": count[0], "arg": sys.argv[1]}}
_bench.serve(step, {{"ready": True}})
"""


def test_worker_answers_each_request_in_order(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    w = _bench.Worker([str(script), "hello"])
    try:
        assert w.ready == {"ready": True}
        assert [w.send()["n"] for _ in range(3)] == [1, 2, 3]
        assert w.send()["arg"] == "hello"
    finally:
        w.close()
    assert w.proc.returncode == 0


def test_dead_worker_is_an_error_not_a_hang(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("raise SystemExit(3)\n")
    with pytest.raises(RuntimeError, match="died without answering"):
        _bench.Worker([str(script)])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc only")
def test_peak_memory_resets_and_sees_a_new_allocation():
    _bench.reset_peak_rss()
    before = _bench.peak_rss_mb()
    block = bytearray(64 * 2**20)  # 64 MiB, touched
    for i in range(0, len(block), 4096):
        block[i] = 1
    assert _bench.peak_rss_mb() >= before + 60
    assert _bench.rss_mb() >= 60
    del block


def test_alternate_interleaves_runs():
    order = []
    runs = {"a": lambda: order.append("a") or 1.0, "b": lambda: order.append("b") or 2.0}
    times = _bench.alternate(runs, repeats=3)
    assert order == ["a", "b"] * 3
    assert times == {"a": [1.0] * 3, "b": [2.0] * 3}

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


def _other_backend() -> str | None:
    """A Keras backend that needs no TensorFlow, if one is installed."""
    import importlib.util

    return next((b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None), None)


@pytest.mark.slow
def test_accelerator_small_run_has_every_row_without_tensorflow(tmp_path):
    """``accelerator.py --small`` (trimmed) times every model x dtype and a search of each."""
    import json
    import os
    import subprocess

    backend = _other_backend()
    if backend is None:
        pytest.skip("neither JAX nor PyTorch is installed")
    out = tmp_path / "accelerator.json"
    root = str(BENCH.parent)
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    argv = ["--small", "--steps", "2", "--repeats", "2", "--rounds", "2", "--search-steps", "1"]
    done = subprocess.run(
        [sys.executable, str(BENCH / "accelerator.py"), *argv, "--no-tensorflow", "--out", out],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["machine"]["backend"] == backend
    assert result["tensorflow_imported"] is False
    rows = {(r["model"], r["dtype"]): r for r in result["steps"]}
    assert set(rows) == {
        (m, d) for m in ("resnet50", "transformer") for d in ("float32", "mixed_bfloat16")
    }
    for row in rows.values():
        assert row["plain_ms"] > 0 and row["masked_ms"] > 0
        assert row["ratio"] == pytest.approx(row["masked_ms"] / row["plain_ms"])
        assert 0.75 < row["sparsity"] < 0.85  # --sparsity 0.8, drawn at random
    searches = {r["model"]: r for r in result["search"]}
    assert set(searches) == {"resnet50", "transformer"}
    for search in searches.values():
        assert search["dtype"] == "float32" and len(search["fit_s"]) == 3  # 2 rounds + final
        assert search["total_s"] > sum(search["fit_s"]) > 0
        assert search["marginal_s_per_round"] >= 0
    table = done.stdout
    assert "| resnet50 | mixed_bfloat16 |" in table and "| transformer | float32 |" in table


def test_structured_speed_masks_keep_the_asked_share_of_units_but_the_output_layer():
    """``structured_speed.structured``: whole units masked, ``keep`` of each layer, and the
    compacted model has exactly those widths and the masked model's outputs."""
    import numpy as np
    import structured_speed

    import keras_lottery as kl

    model, shape = structured_speed.build("lenet5", 28)
    masked = structured_speed.structured(model, 0.5)
    masks = [np.asarray(pw.mask) for pw in kl.prunable_weights(masked)]
    for mask in masks:
        columns = mask.reshape(-1, mask.shape[-1])
        alive = columns.any(axis=0)  # a removed unit loses every weight that produces it
        expected = mask.shape[-1] if mask is masks[-1] else round(0.5 * mask.shape[-1])
        assert alive.sum() == expected
    small, report = kl.compact(masked)
    assert [after for _, after in report.units.values()] == [3, 8, 60, 42, 10]
    x = np.random.default_rng(0).random((4, *shape), dtype=np.float32)
    np.testing.assert_allclose(small(x), kl.strip(masked)(x), atol=1e-5)

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


def _early_bird():
    import importlib

    return importlib.import_module("early_bird")


def _run(its, stops, acc, seconds=1.0):
    return {
        "iterations": sum(its),
        "round_iterations": its,
        "stops": stops,
        "reasons": [None] * len(stops),
        "percent_remaining": 51.3,
        "test_accuracy": acc,
        "seconds": seconds,
    }


def test_early_bird_tables_are_computed_from_the_runs():
    """Ratios, stop ranges (iterations and % of full IMP's round), accuracy ranges, per-seed Δ."""
    eb = _early_bird()
    full = [_run([100, 100, 100], [None, None], 0.90), _run([100, 100, 100], [None] * 2, 0.92)]
    early = [_run([30, 50, 100], [30, 50], 0.89), _run([40, 100, 100], [40, None], 0.94)]
    text = eb.tables({eb.FULL: full, "early": early}, seeds=[3, 7])
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    cells = [c.strip() for c in rows["early"].strip("|").split("|")]
    # mean iterations (180 + 240) / 2 = 210 of 300: 0.70x; 3 of 4 rounds stopped at 30-50 (30-50%)
    assert cells[1:9] == [
        "51.3%",
        "210",
        "0.70×",
        "3/4",
        "30–50 (30–50%)",
        "91.50 (89.00–94.00)",
        "+0.50 (−1.00 to +2.00)",
        "1",
    ]
    assert "| 0/4 | – |" in rows["full IMP"] and "1.00×" in rows["full IMP"]
    assert "| 7 | early | 240 | 40, full | 94.00 | +2.00 |" in text
    assert "| 3 | early | 180 | 30, 50 | 89.00 | −1.00 |" in text
    assert "| 3 | full IMP | 300 | full, full | 90.00 | – |" in text


def test_early_bird_out_file_is_what_it_printed(tmp_path, monkeypatch, capsys):
    """``--out`` writes exactly the printed tables, with the command and versions."""
    import numpy as np

    from keras_lottery.data import datasets

    eb = _early_bird()
    x, y = np.zeros((6, 28, 28), "float32"), np.zeros(6, "int64")
    monkeypatch.setattr(datasets, "load_dataset", lambda path: datasets.Dataset("m", x, y, x, y))
    fake = {None: _run([10, 10], [None], 0.5)}
    monkeypatch.setattr(
        eb, "search", lambda data, r, s, seed, e, ep: fake.get(e, _run([5, 10], [5], 0.4))
    )
    out = tmp_path / "table.md"
    eb.main(["--rounds", "1", "--seeds", "0", "--settings", "half:", "--out", str(out)])
    text = out.read_text()
    assert text in capsys.readouterr().out
    assert "| half | 51.3% | 15 | 0.75× | 1/1 | 5 (50%) | 40.00 (40.00) | −10.00 (−10.00) |" in text
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]  # no temp file left


def test_early_bird_bad_settings_say_how_to_write_them():
    eb = _early_bird()
    with pytest.raises(SystemExit, match="name:field=value"):
        eb.parse_settings("min_fraction=0")
    with pytest.raises(SystemExit, match="field=value"):
        eb.parse_settings("a:min_fraction")


def test_env_sizes_counts_each_distribution_and_each_file_once(tmp_path):
    """Sizes per distribution come from RECORD; a hard-linked file is counted once, as du does."""
    import os

    import env_sizes

    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / "big").mkdir(parents=True)
    (site / "big" / "a.bin").write_bytes(b"x" * 200_000)
    os.link(site / "big" / "a.bin", site / "big" / "a_link.bin")
    (site / "small.py").write_bytes(b"y" * 10)
    for name, files in {
        "big-1.0": ["big/a.bin", "big/a_link.bin"],
        "small-2.0": ["small.py"],
    }.items():
        info = site / f"{name}.dist-info"
        info.mkdir()
        (info / "RECORD").write_text(
            "".join(f"{f},sha256=x,1\n" for f in files) + f"{name}.dist-info/RECORD,,\n"
        )
    assert env_sizes.site_packages(tmp_path / "venv") == site
    blocks = os.stat(site / "big" / "a.bin").st_blocks * 512
    dists = env_sizes.distributions(site)
    assert blocks <= dists["big"] < 2 * blocks  # RECORD lists both names of one inode
    assert blocks <= env_sizes.disk_usage(site / "big") < 2 * blocks  # as du counts it
    assert 0 < dists["small"] < blocks
    row = env_sizes.measure(tmp_path / "venv", "fake", None, top=1)
    assert row["distributions"] == 2 and row["largest"][0][0] == "big"
    assert "not measured" in env_sizes.table([row])


def test_env_sizes_refuses_a_folder_that_is_no_environment(tmp_path):
    import env_sizes

    with pytest.raises(SystemExit, match="is it a virtual environment"):
        env_sizes.site_packages(tmp_path)


def test_benchmark_readme_shows_the_stored_outputs_verbatim():
    """Each table stored under benchmarks/results/ appears unchanged in benchmarks/README.md."""
    readme = (BENCH / "README.md").read_text(encoding="utf-8")
    stored = sorted((BENCH / "results").glob("*.md"))
    assert stored
    for path in stored:
        lines = path.read_text(encoding="utf-8").splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith("|"))
        end = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), None)
        table = "\n".join(lines[first:end])
        assert table in readme, f"benchmarks/README.md does not show {path.name}'s table as stored"


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

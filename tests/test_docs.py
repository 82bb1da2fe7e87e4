"""The documentation runs: README and guide code blocks, examples in smoke size, versions.

A page's ```python blocks run in order in one fresh interpreter (later blocks see what
earlier ones defined), in a temporary working directory.  A block preceded by an
HTML comment starting with ``<!-- skip`` is shown but not run.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import keras_lottery

ROOT = Path(__file__).resolve().parent.parent
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def python_blocks(markdown: str) -> list[str]:
    """The runnable ```python blocks of a Markdown text, dedented, in order."""
    blocks: list[str] = []
    lines = markdown.splitlines()
    previous = ""  # the last non-blank line before the current one
    i = 0
    while i < len(lines):
        if re.match(r"^[ \t]*```python[ \t]*$", lines[i]):
            start = i + 1
            i = start
            while i < len(lines) and lines[i].strip() != "```":
                i += 1
            if not previous.strip().startswith("<!-- skip"):
                blocks.append(textwrap.dedent("\n".join(lines[start:i]) + "\n"))
            previous = "```"
        elif lines[i].strip():
            previous = lines[i]
        i += 1
    return blocks


def run_python(code: str, cwd: Path, timeout: float = 600) -> str:
    """Run ``code`` in a fresh interpreter in ``cwd``; return its stdout, fail with its stderr."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_block_runner_finds_blocks_and_honours_skip():
    text = (
        "Intro\n\n```python\na = 1\n```\n\n<!-- skip: needs a GPU -->\n```python\nb = 2\n```\n"
        "\n- a list item:\n\n  ```python\n  c = a + 1\n  ```\n\n```bash\nls\n```\n"
    )
    assert python_blocks(text) == ["a = 1\n", "c = a + 1\n"]


def test_readme_is_a_short_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) <= 10_500
    assert "experiments/results/lenet_controls.png" in text
    (quickstart,) = python_blocks(text)
    assert len(quickstart.strip().splitlines()) <= 15
    assert 'pip install -e ".[dev]"' in text


def test_readme_links_point_at_files_that_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"^[a-z]+:", t)]
    assert local, "no local links found"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_heading_anchors_in_links_exist():
    """``page.md#anchor`` links name a heading of that page as the docs site spells it."""
    from markdown.extensions.toc import slugify

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target, anchor in re.findall(r"\]\(([^)#\s]*\.md)#([^)\s]+)\)", text):
            linked = (page.parent / target).resolve()
            if not linked.exists():
                continue  # missing files are the other tests' business
            headings = re.findall(r"^#+\s+(.+?)\s*$", linked.read_text(encoding="utf-8"), re.M)
            if anchor not in {slugify(h, "-") for h in headings}:
                broken.append(f"{page.relative_to(ROOT)} -> {target}#{anchor}")
    assert not broken, f"links to headings that do not exist: {broken}"


#: The one change the quickstart test makes: one short round instead of six of two epochs.
QUICKSTART_LENGTH = ("rounds=5, epochs=2", "rounds=1, steps=20")


@pytest.mark.slow
@pytest.mark.backends
def test_readme_quickstart_runs_on_the_first_set_up(tmp_path):
    """The quickstart as written, on the README's first set-up (any backend, no TensorFlow).

    Only its length is cut (:data:`QUICKSTART_LENGTH`, which must match exactly once).
    CI runs this in its JAX and PyTorch environments without TensorFlow.
    """
    (code,) = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    full, short = QUICKSTART_LENGTH
    assert code.count(full) == 1, f"the quickstart no longer says {full!r}: update the test"
    out = run_python(code.replace(full, short), tmp_path)
    assert (tmp_path / "lenet.keras").stat().st_size > 0
    assert "zeros, read back from the file" in out and "argmax agreement 100.00%" in out
    assert "accuracy  keras" in out


_RUNNABLE_GUIDES = [p for p in GUIDES if python_blocks(p.read_text(encoding="utf-8"))]


@pytest.mark.slow
@pytest.mark.parametrize("page", _RUNNABLE_GUIDES, ids=lambda p: p.name)
def test_guide_code_blocks_run(page, tmp_path):
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    run_python("\n".join(blocks), tmp_path)


def _example(name: str) -> Path:
    path = ROOT / "examples" / name
    assert path in EXAMPLES
    return path


def run_example(name: str, cwd: Path, *args: str) -> str:
    script = _example(name)
    return run_python(
        f"import sys; sys.argv = [{str(script)!r}, '--smoke', *{list(args)!r}]; "
        f"import runpy; runpy.run_path({str(script)!r}, run_name='__main__')",
        cwd,
    )


def test_every_example_has_a_smoke_test():
    tested = {
        "mnist_tflite.py",
        "sweep_report.py",
        "applications_ticket.py",
        "compact_custom_layer.py",
    }
    assert {p.name for p in EXAMPLES} == tested


@pytest.mark.slow
def test_example_mnist_tflite(tmp_path):
    out = run_example("mnist_tflite.py", tmp_path, "--out", "t.tflite")
    assert (tmp_path / "t.tflite").stat().st_size > 0
    assert "argmax agreement 100.00%" in out
    # the search's table: rounds 0, 1 and 2 at 100%, 80% and 64% of the weights
    assert re.search(r"^\s+2\s+64\.\d\d\s", out, re.M), out


@pytest.mark.slow
def test_example_sweep_report(tmp_path):
    out = run_example("sweep_report.py", tmp_path, "--out", "sw")
    runs = [p for p in (tmp_path / "sw" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 2 and all((p / "DONE").is_file() for p in runs)
    assert (tmp_path / "sw" / "figures" / "accuracy.png").stat().st_size > 0
    csv = (tmp_path / "sw" / "table.csv").read_text()
    assert "rewind" in csv and "reinit" in csv
    assert "rewind" in out


@pytest.mark.slow
def test_example_applications_ticket(tmp_path):
    out = run_example("applications_ticket.py", tmp_path)
    assert "weight-matrix parameters" in out  # the coverage line
    # one round of 20% (10% for the classifier): between 79% and 81% remain
    pct = float(re.search(r"([\d.]+)% of the prunable weights remain", out).group(1))
    assert 79.0 <= pct <= 81.0, out


@pytest.mark.slow
def test_example_compact_custom_layer(tmp_path):
    out = run_example("compact_custom_layer.py", tmp_path)
    # one round of 50% of the units: the block's 256 hidden units and 64 outputs halve
    assert "block hidden: 256 -> 128" in out and "block: 64 -> 32" in out, out
    diff = float(re.search(r"max \|compact - ticket\| on \d+ test digits: (\S+)", out).group(1))
    assert diff <= 1e-4, out


def test_version_comes_from_the_package_metadata():
    assert keras_lottery.__version__ == importlib.metadata.version("keras-lottery")


def test_changelog_has_unreleased_on_top_and_dated_versions():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## \[?([^\]\s]+)\]?(?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert sections[0][0] == "Unreleased"
    released = sections[1:]
    assert released and all(date for _, date in released), sections
    assert ("0.1.0", "2026-11-17") in released


def test_no_session_wording_in_project_text():
    """Project text speaks of versions and dates; API names (pytest fixture scopes) are fine."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    hits = []
    for name in files:
        path = ROOT / name
        if path.suffix not in {".md", ".py", ".sh", ".yml", ".yaml", ".toml", ".txt", ""}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for i, line in enumerate(text.splitlines(), 1):
            line = re.sub(r'scope="s(?:ession)"|\w+\.S(?:ession)\b', "", line)  # API names
            if re.search(r"\bsessions?\b", line, re.I):
                hits.append(f"{name}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)

"""Installed size of keras-lottery's environments, per extra, and the time to install them.

Two ways to measure, both printing one Markdown table (``--out FILE`` also
writes it):

* ``--venv PATH [PATH ...]``: environments that already exist (e.g. the ones
  ``pip install -e ".[dev]"`` or CI made); their install time is not known.
* ``--extras jax torch tensorflow ...``: for each, a fresh virtual environment in
  a temporary folder, ``pip install "<this checkout>[<extra>]"`` timed (with
  ``--no-cache``, pip downloads every wheel, so the time includes the network),
  measured, then deleted (``--keep`` keeps it).  This downloads and installs
  for real: a ``torch`` environment takes several GB of disk while it exists.

Size is disk usage (``du``: allocated blocks, a hard-linked file once) of the
environment's site-packages and of the whole environment; the largest
distributions come from their ``RECORD`` files.

    python benchmarks/env_sizes.py --venv .venv .venv-jax --out benchmarks/results/env_sizes.md
    python benchmarks/env_sizes.py --extras jax,test tensorflow --no-cache
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` (as ``du`` counts them: blocks, each inode once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def site_packages(venv: Path) -> Path:
    """The site-packages folder of a virtual environment (POSIX or Windows layout)."""
    found = sorted(venv.glob("lib/python3*/site-packages")) or sorted(
        venv.glob("Lib/site-packages")
    )
    if not found:
        raise SystemExit(f"{venv}: no lib/python3*/site-packages; is it a virtual environment?")
    return found[0]


def distributions(site: Path) -> dict[str, int]:
    """Bytes per installed distribution, from the files its ``RECORD`` lists (each inode once)."""
    sizes = {}
    for record in site.glob("*.dist-info/RECORD"):
        name = record.parent.name.split("-")[0]
        seen: set[tuple[int, int]] = set()
        total = 0
        with open(record, newline="") as f:
            for row in csv.reader(f):
                path = site / row[0] if row else None
                if not path or path.is_symlink() or not path.is_file():
                    continue
                st = path.stat()
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
        sizes[name] = total
    return sizes


def measure(venv: Path, label: str, seconds: float | None, top: int) -> dict:
    site = site_packages(venv)
    dists = distributions(site)
    largest = sorted(dists.items(), key=lambda kv: -kv[1])[:top]
    return {
        "label": label,
        "site_packages": disk_usage(site),
        "environment": disk_usage(venv),
        "distributions": len(dists),
        "largest": largest,
        "seconds": seconds,
    }


def install(extra: str, no_cache: bool, keep: bool, python: str) -> dict:
    """A fresh environment with ``.[extra]`` installed, timed; its measurement."""
    folder = Path(tempfile.mkdtemp(prefix=f"keras-lottery-{extra.replace(',', '-')}-"))
    venv = folder / "venv"
    try:
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        cache = ["--no-cache-dir"] if no_cache else []
        t0 = time.perf_counter()
        subprocess.run([*pip, *cache, f"{ROOT}[{extra}]"], check=True)
        seconds = time.perf_counter() - t0
        return measure(venv, f"fresh `[{extra}]`", seconds, top=5)
    finally:
        if keep:
            print(f"kept {venv}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, then rename it (no keras_lottery import:
    this script runs before the package is installed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def table(rows: list[dict]) -> str:
    lines = [
        "| environment | site-packages | whole environment | distributions "
        "| largest distributions | `pip install` time |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        largest = ", ".join(f"{n} {b / GB:.2f}" for n, b in r["largest"])
        took = "not measured" if r["seconds"] is None else f"{r['seconds']:.0f} s"
        lines.append(
            f"| {r['label']} | {r['site_packages'] / GB:.2f} GB | {r['environment'] / GB:.2f} GB "
            f"| {r['distributions']} | {largest} (GB) | {took} |"
        )
    return "\n".join(lines)


def installed_extras(venv: Path) -> str:
    """What the environment holds that marks its extra: the backends and TensorFlow."""
    site = site_packages(venv)
    names = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    marks = [n for n in ("tensorflow", "jax", "torch", "keras_hub", "ray", "mkdocs") if n in names]
    return ", ".join(marks) or "no backend"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", nargs="+", default=[], help="existing environments to measure")
    ap.add_argument(
        "--extras", nargs="+", default=[], help="extras to install fresh, e.g. jax,test"
    )
    ap.add_argument("--no-cache", action="store_true", help="pip downloads every wheel")
    ap.add_argument("--keep", action="store_true", help="keep the fresh environments")
    ap.add_argument("--python", default=sys.executable, help="Python that makes the venvs")
    ap.add_argument("--top", type=int, default=5, help="largest distributions to list")
    ap.add_argument("--out", help="also write the table here (Markdown)")
    args = ap.parse_args(argv)
    if not args.venv and not args.extras:
        ap.error("name --venv PATH ... and/or --extras EXTRA ...")
    rows = []
    for path in args.venv:
        venv = Path(path)
        if not venv.is_dir():
            raise SystemExit(f"--venv {path}: no such folder")
        label = f"`{venv.name}` ({installed_extras(venv)})"
        rows.append(measure(venv, label, None, args.top))
    for extra in args.extras:
        rows.append(install(extra, args.no_cache, args.keep, args.python))
    command = shlex.join(["python", "benchmarks/env_sizes.py", *sys.argv[1:]])
    text = (
        f"`{command}`\n\n{platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}; GB = 10^9 bytes of disk\n\n{table(rows)}\n"
    )
    print(text)
    if args.out:
        write_atomically(Path(args.out), text)


if __name__ == "__main__":
    main()

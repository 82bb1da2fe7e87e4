"""Sweep specs: a YAML or JSON grid of run configurations.

```yaml
base: {model: lenet_300_100, rounds: 5}
grid: {seed: [0, 1], strategy: [rewind, reinit]}   # 4 jobs
runs_root: runs                                     # optional
resources: {cpus_per_job: 2, gpus_per_job: 0}      # optional, for Ray
```

:func:`load_sweep` checks every key and value (naming the file and line of a
mistake) and expands the grid into normalized configurations for
:func:`keras_lottery.runs.directory.run`.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_lottery.runs.directory import (
    DEFAULTS,
    normalize_config,
    suggest_name,
    unknown_key_message,
)


def expand_grid(
    base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]] | None = None
) -> list[dict[str, Any]]:
    """The cartesian product of ``grid`` over ``base``: one raw config per job.

    ``grid`` maps keys to lists of values; the last key varies fastest.
    """
    grid = dict(grid or {})
    keys = list(grid)
    return [
        {**base, **dict(zip(keys, values))}
        for values in itertools.product(*(grid[k] for k in keys))
    ]


class SpecError(ValueError):
    """A malformed sweep spec; the message names the file, line and key."""


@dataclass
class Sweep:
    """A parsed sweep spec: normalized job configurations and where they go."""

    path: Path
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    runs_root: str | None
    jobs: list[dict[str, Any]]
    resources: dict[str, float] = field(default_factory=dict)


_SPEC_KEYS = ("base", "grid", "runs_root", "resources")
#: What each job reserves on a cluster (see keras_lottery.runs.executors.RayCluster).
RESOURCE_KEYS = ("cpus_per_job", "gpus_per_job")


#: Largest sweep spec read, in bytes.
MAX_SPEC_BYTES = 1 << 20


def _loader():
    """PyYAML's safe loader, refusing aliases (``*name``): no "billion laughs" expansion."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "aliases (*name) are not allowed in a sweep spec; write the values out",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def _key_lines(text: str) -> dict[tuple, int]:
    """1-based line of each mapping key / list item, by path, from the YAML (or JSON) text."""
    import yaml

    lines: dict[tuple, int] = {}

    def walk(node, path):
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                lines[(*path, k.value)] = k.start_mark.line + 1
                walk(v, (*path, k.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    try:
        root = yaml.compose(text, Loader=_loader())
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _parse_spec(path: Path, text: str) -> Any:
    import yaml

    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{path}: line {e.lineno}, column {e.colno}: {e.msg}") from None
    try:
        return yaml.load(text, Loader=_loader())  # a SafeLoader without aliases
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{path}: {where}{problem}") from None


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read a YAML or JSON sweep spec and expand it into job configurations.

    The spec is a mapping with ``base`` (options shared by all jobs), ``grid``
    (option -> list of values; the jobs are the cartesian product), an
    optional ``runs_root`` and optional ``resources`` (CPUs/GPUs per job on
    Ray).  Every option name and value is checked here.

    Raises:
        SpecError: naming the file, the line and the wrong key or value.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such sweep spec: {path}")
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError(
                f"{path}: {path.stat().st_size} bytes; a sweep spec may have at most "
                f"{MAX_SPEC_BYTES} bytes."
            )
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: unreadable ({e}).") from None
    spec = _parse_spec(path, text)
    lines = _key_lines(text)

    def fail(keys: tuple, message: str):
        line = next((lines[keys[:i]] for i in range(len(keys), -1, -1) if keys[:i] in lines), None)
        raise SpecError(f"{path}: {f'line {line}: ' if line else ''}{message}")

    if not isinstance(spec, dict):
        fail((), f"a sweep spec must be a mapping with keys {', '.join(_SPEC_KEYS)}.")
    for key in spec:
        if key not in _SPEC_KEYS:
            hint = (
                "; put run options under 'base:' or 'grid:'"
                if key in DEFAULTS
                else suggest_name(str(key), _SPEC_KEYS)
            )
            fail((key,), f"unknown key {key!r} at the top level{hint}.")
    base = spec.get("base") or {}
    grid = spec.get("grid") or {}
    for section, value in (("base", base), ("grid", grid)):
        if not isinstance(value, dict):
            fail((section,), f"'{section}' must be a mapping of option names to values.")
        for key in value:
            if key not in DEFAULTS:
                fail((section, key), unknown_key_message(str(key), f"'{section}'") + ".")
    runs_root = spec.get("runs_root")
    if runs_root is not None and not isinstance(runs_root, str):
        fail(("runs_root",), f"runs_root must be a string, got {runs_root!r}.")
    for key, value in base.items():
        try:
            normalize_config({key: value})
        except (ValueError, FileNotFoundError) as e:
            fail(("base", key), f"base: {e}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            fail(("grid", key), f"grid: {key} must be a non-empty list of values.")
        for i, value in enumerate(values):
            try:
                normalize_config({key: value})
            except (ValueError, FileNotFoundError) as e:
                fail(("grid", key, i), f"grid: {e}")
    jobs = []
    for raw in expand_grid(base, grid):
        try:
            jobs.append(normalize_config(raw))
        except (ValueError, FileNotFoundError) as e:
            fail(("grid",), str(e))
    resources = spec.get("resources") or {}
    if not isinstance(resources, dict):
        fail(("resources",), f"'resources' must be a mapping with keys {', '.join(RESOURCE_KEYS)}.")
    for key, value in resources.items():
        if key not in RESOURCE_KEYS:
            fail(
                ("resources", key),
                f"unknown key {key!r} in 'resources'{suggest_name(str(key), RESOURCE_KEYS)}.",
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            fail(("resources", key), f"resources: {key} must be a number >= 0, got {value!r}.")
    if resources.get("cpus_per_job") == 0:
        fail(("resources", "cpus_per_job"), "resources: cpus_per_job must be > 0.")
    if runs_root is not None and not Path(runs_root).is_absolute():
        runs_root = str(path.parent / runs_root)
    return Sweep(path, base, grid, runs_root, jobs, dict(resources))

"""The folders are the architecture: static checks over keras_lottery/'s source.

import-linter (`lint-imports`, in CI) checks the floors; these check what it cannot see.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import keras_lottery

pytestmark = pytest.mark.backends

PACKAGE = Path(keras_lottery.__file__).parent
#: Modules at the top of keras_lottery/: the public face and the shared helpers.
TOP = {"__init__", "analysis", "callbacks", "extras", "options", "seeding", "zoo"}
#: Where TensorFlow may be imported directly: the formats only TensorFlow writes and the
#: TFMOT integration. Everything else goes through keras_lottery.extras.tensorflow(...).
TF_ALLOWED = ("export/", "tfmot/", "extras.py")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def test_the_top_holds_only_the_public_face_and_shared_helpers():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == TOP, f"new top-level modules {sorted(top - TOP)}: put them in a package"
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (folder / "__init__.py").exists(), f"{folder.name}/ is not a package"


def test_tensorflow_is_imported_only_through_extras():
    found = []
    for name, tree in _modules():
        if name.startswith(TF_ALLOWED):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            if {"tensorflow", "tf_keras", "tensorflow_datasets"} & set(tops):
                found.append(f"{name}:{node.lineno}")
    assert not found, f"import TensorFlow through keras_lottery.extras.tensorflow(): {found}"


def test_no_module_imports_another_modules_private_names():
    found = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_lottery"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    found.append(f"{name}:{node.lineno} {private}")
    assert not found, f"what another module calls is public in its module: {found}"


def test_no_import_hidden_from_import_linter():
    """``importlib.import_module`` of our own modules hides a dependency (and a cycle)."""
    found = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("keras_lottery")
            ):
                found.append(f"{name}:{node.lineno}")
    assert not found, found


def test_development_guide_names_files_and_functions_that_exist():
    """docs/development.md's module map and "where new things go" follow the code: every
    file it names exists, and every `name` or `module.name` it quotes is a module, or a
    function, class or constant defined in the library."""
    import re

    root = PACKAGE.parent
    guide = (root / "docs" / "development.md").read_text(encoding="utf-8")
    for path in set(re.findall(r"`([a-z_/]+\.py)`", guide)):
        assert (PACKAGE / path).exists() or (root / path).exists(), path
    sources = [
        p for d in (PACKAGE, root / "keras_lottery_options", root / "cli") for p in d.rglob("*.py")
    ]
    code = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    modules = {p.stem for p in sources} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    modules |= {"keras_lottery", "keras_lottery_cli", "keras_lottery_options", "backends"}
    quoted = set(re.findall(r"`([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(\))?`", guide))
    missing = [
        name
        for name in sorted(quoted)
        if not name.endswith((".py", ".toml"))
        and name.split(".")[-1] not in modules
        and not re.search(
            rf"^\s*(def|class) {name.split('.')[-1]}\b|^\s*{name.split('.')[-1]}\s*[:=]", code, re.M
        )
    ]
    assert not missing, f"docs/development.md names what the code does not define: {missing}"

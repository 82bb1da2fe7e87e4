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

"""MkDocs hooks: pages that live outside docs/, and the generated API reference.

* The front page is the repository's README.md, and the experiment and benchmark
  pages are experiments/README.md and benchmarks/README.md (with the plots they
  show), so nothing is copied into docs/.
* Links are written relative to the file's place in the repository (so they
  work on a code host too); they are rewritten to the pages' places in the site.
  A link to a file that is neither a page nor an added file is left alone, and
  ``mkdocs build --strict`` then fails on it.
* Sphinx roles in docstrings (``:func:`export` ``) are shown as plain code.
* Every public module ``keras_lottery/<name>.py`` and ``keras_lottery/<pkg>/<name>.py``
  gets a page ``api/<dotted name>.md`` holding ``::: keras_lottery.<dotted name>``, added
  to the nav under "API reference" (a package's page holds its docstring): a new module
  appears without editing any page.
"""

from __future__ import annotations

import ast
import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "keras_lottery"
API_SECTION = "API reference"

# repository path -> site source path, for files outside docs/
EXTRA_PAGES = {
    "README.md": "README.md",
    "experiments/README.md": "experiments/README.md",
    "benchmarks/README.md": "benchmarks/README.md",
    "CHANGELOG.md": "changelog.md",
}
EXTRA_GLOBS = ["experiments/results/*.png", "benchmarks/*.png"]

_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def public_modules() -> list[str]:
    """Dotted names of the package's public modules and sub-packages, and their modules."""
    names = [p.stem for p in (ROOT / PACKAGE).glob("*.py")]
    for init in (ROOT / PACKAGE).glob("*/__init__.py"):
        package = init.parent.name
        names.append(package)
        names += [f"{package}.{p.stem}" for p in init.parent.glob("*.py") if p.stem != "__init__"]
    return sorted(m for m in names if not any(part.startswith("_") for part in m.split(".")))


def is_package(module: str) -> bool:
    return (ROOT / PACKAGE / module.replace(".", "/") / "__init__.py").exists()


def _defines_objects(module: str) -> bool:
    """Whether a module's file defines a function or class (a package may only re-export)."""
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef | ast.ClassDef) for n in tree.body)


def _defining(module: str, name: str) -> str:
    """The module that defines ``name``, following a package's re-export of it."""
    if not is_package(module):
        return module
    init = ast.parse(_source(module).read_text(encoding="utf-8"))
    for node in init.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            if any((alias.asname or alias.name) == name for alias in node.names):
                return _defining(node.module.split(".", 1)[1], name)
    return module


def _first_line(doc: str | None) -> str:
    text = (doc or "").strip().split("\n\n")[0].replace("\n", " ").replace("|", "\\|")
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text)  # :func:`x` -> `x`


def _source(module: str) -> Path | None:
    """The file of ``keras_lottery.<module>`` (a dotted name relative to the package)."""
    path = ROOT / PACKAGE / f"{module.replace('.', '/')}.py"
    if not path.exists():  # a sub-package
        path = ROOT / PACKAGE / module.replace(".", "/") / "__init__.py"
    return path if path.exists() else None


def _docstring(module: str, name: str | None, path: Path | None = None) -> str:
    """First paragraph of a module's or a top-level def/class's docstring, read statically."""
    path = path or _source(module)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if name is None:
        return _first_line(ast.get_docstring(tree))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            return _first_line(ast.get_docstring(node))
    for node in tree.body:  # a module re-exporting the name from another one
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if not any(alias.name == name for alias in node.names):
            continue
        if node.module.startswith(f"{PACKAGE}."):
            inner = node.module.split(".", 1)[1]
            if inner != module:
                return _docstring(inner, name)
        elif (ROOT / node.module / "__init__.py").exists():  # a sibling package, e.g. the options
            return _docstring(node.module, name, ROOT / node.module / "__init__.py")
    return ""


def api_overview() -> str:
    """The "API reference" front page: every name in ``keras_lottery.__all__``."""
    init = ast.parse((ROOT / PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    origin: dict[str, tuple[str, str | None]] = {}
    exported: list[str] = []
    for node in init.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            for alias in node.names:
                if node.module == PACKAGE:  # from keras_lottery import zoo
                    origin[alias.asname or alias.name] = (alias.name, None)
                else:
                    module = _defining(node.module.split(".", 1)[1], alias.name)
                    origin[alias.asname or alias.name] = (module, alias.name)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            exported = list(ast.literal_eval(node.value))
    rows = ["| name | what it is |", "|---|---|"]
    for name in sorted(exported, key=str.lower):
        module, obj = origin.get(name, (None, None))
        if module is None:
            rows.append(f"| `{PACKAGE}.{name}` | |")
            continue
        anchor = f"{PACKAGE}.{module}" + (f".{obj}" if obj else "")
        link = f"{module}.md#{anchor}" if obj else f"{module}.md"
        rows.append(f"| [`{PACKAGE}.{name}`]({link}) | {_docstring(module, obj)} |")
    return API_INTRO + "\n".join(rows) + "\n"


API_INTRO = """# API reference

Generated from the docstrings. `import keras_lottery` gives the names below (its
`__all__`), and `keras_lottery.__version__`; each links to its module's page. The modules in
the menu hold the rest, one package per floor of the library: `keras_lottery.search` (ways
to a ticket and the search's steps), `keras_lottery.masks`, `keras_lottery.criteria`,
`keras_lottery.compact`, `keras_lottery.records`, `keras_lottery.export`,
`keras_lottery.runs` (the Python side of the command line), `keras_lottery.data` and
`keras_lottery.tfmot`; `keras_lottery.zoo` has the paper's models.

"""


def _extra_files() -> dict[str, str]:
    extra = dict(EXTRA_PAGES)
    for pattern in EXTRA_GLOBS:
        for path in sorted(ROOT.glob(pattern)):
            rel = path.relative_to(ROOT).as_posix()
            extra[rel] = rel
    return extra


def on_config(config):
    api = [{"Overview": "api/index.md"}]
    api += [{f"{PACKAGE}.{m}": f"api/{m}.md"} for m in public_modules()]
    for i, entry in enumerate(config["nav"] or []):
        if isinstance(entry, dict) and API_SECTION in entry:
            config["nav"][i] = {API_SECTION: api}
    return config


def on_files(files: Files, config) -> Files:
    for repo_path, uri in _extra_files().items():
        files.append(
            File.generated(config, uri, abs_src_path=str(ROOT / repo_path)),
        )
    files.append(File.generated(config, "api/index.md", content=api_overview()))
    for m in public_modules():
        content = f"# `{PACKAGE}.{m}`\n\n::: {PACKAGE}.{m}\n"
        if is_package(m) and not _defines_objects(m):  # its modules have pages of their own
            content += "    options:\n      members: false\n"
        files.append(File.generated(config, f"api/{m}.md", content=content))
    return files


_ROLE = re.compile(r":(?:func|class|meth|data|attr|mod|exc):(<code>)~?")


def on_page_content(html: str, page, config, files: Files) -> str:
    """Docstrings may use Sphinx roles (:func:`x`); show them as plain code."""
    return _ROLE.sub(r"\1", html)


def _repo_path(src_uri: str) -> str:
    """Where a page's source lives in the repository."""
    for repo_path, uri in _extra_files().items():
        if uri == src_uri:
            return repo_path
    return f"docs/{src_uri}"


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    page_repo = _repo_path(page.file.src_uri)
    site_of = {repo: uri for repo, uri in _extra_files().items()}
    site_of.update(
        {f"docs/{f.src_uri}": f.src_uri for f in files if f.src_uri not in site_of.values()}
    )
    site_of["examples"] = "examples.md"

    def rewrite(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo), path))
        uri = site_of.get(repo)
        if uri is None:
            return match.group(0)
        new = posixpath.relpath(uri, posixpath.dirname(page.file.src_uri) or ".")
        return f"{match.group(1)}{new}{'#' + anchor if anchor else ''}{match.group(3)}"

    return _LINK.sub(rewrite, markdown)

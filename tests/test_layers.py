"""The package's folders are the stages of the data flow, and imports point down the stages only.

``LAYERS`` declares the order, lowest first. Every import of a ``sambench`` module — at module level or
inside a function — must target the importer's own layer or a lower one; no two modules may import each
other, directly or around a loop; no module imports another module's private (``_``) name; and an import
inside a function carries a short comment saying why it is not at the top (in this package: to keep
torch, or another heavy library, out of start-up).

The checker reads source text only, so the tests below can plant each kind of fault in a copy of the
package and show that it is caught.
"""

from __future__ import annotations

import ast
import functools
import shutil
from pathlib import Path

import pytest

import sambench

PACKAGE = Path(sambench.__file__).resolve().parent

#: The stages, lowest first. A top-level module is its own unit (``types``, ``files``, ``api``, ...); a
#: folder is one unit. ``sambench`` itself (``__init__``: the version and lazy public names) is ground.
LAYERS = [
    {"sambench", "types", "files"},
    {"config"},
    {"metrics"},
    {"inputs"},
    {"datasets"},
    {"adapters"},
    {"training"},
    {"store"},
    {"execution"},
    {"analysis"},
    {"report"},
    {"leaderboard"},
    {"api"},
    {"cli", "__main__"},
]


def _layer(unit: str) -> int:
    for i, units in enumerate(LAYERS):
        if unit in units:
            return i
    raise AssertionError(f"sambench.{unit} is in no layer of LAYERS: place it there")


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["sambench", *parts])


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "sambench"


class Tree:
    """Every module of a package tree with its imports of other package modules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sources = {_module_name(root, p): p for p in sorted(root.rglob("*.py"))}
        #: (importer, imported module, line, inside a function, commented, names imported from it)
        self.imports: list[tuple[str, str, int, bool, bool, list[str]]] = []
        #: (module, line, text) of attribute reads of a private name on an imported package module
        self.private_reads: list[tuple[str, int, str]] = []
        #: (module, line, imported module) of imports inside a function with no comment saying why
        self.silent: list[tuple[str, int, str]] = []
        for module, path in self.sources.items():
            self._scan(module, path)

    def _resolve(self, module: str, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = module.split(".")
        if not self.sources[module].name == "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def _scan(self, module: str, path: Path) -> None:
        src = path.read_text(encoding="utf-8")
        lines = src.splitlines()
        tree = ast.parse(src)
        inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            line = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            commented = "#" in line or above.startswith("#")
            if id(node) in inside and not commented:
                what = node.names[0].name if isinstance(node, ast.Import) else ("." * node.level + (node.module or ""))
                self.silent.append((module, node.lineno, what))
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "sambench":
                        self.imports.append((module, a.name, node.lineno, id(node) in inside, commented, []))
                        aliases[a.asname or a.name.split(".")[0]] = a.asname and a.name or "sambench"
                continue
            target = self._resolve(module, node)
            if target.split(".")[0] != "sambench":
                continue
            names = [a.name for a in node.names]
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in self.sources:  # `from sambench.pkg import submodule`
                    self.imports.append((module, sub, node.lineno, id(node) in inside, commented, []))
                    aliases[a.asname or a.name] = sub
                    names.remove(a.name)
            if names or target not in {m for _, m, *_ in self.imports[-len(node.names):]}:
                self.imports.append((module, target, node.lineno, id(node) in inside, commented, names))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                self.private_reads.append((module, node.lineno, f"{node.value.id}.{node.attr}"))

    # ------------------------------------------------------------------------------------------ rules

    def upward(self) -> list[str]:
        return [f"{m}:{line} imports {t} (layer {_unit(t)} is above {_unit(m)})"
                for m, t, line, *_ in self.imports if _layer(_unit(t)) > _layer(_unit(m))]

    def private(self) -> list[str]:
        found = [f"{m}:{line} imports {t}.{n}" for m, t, line, _, _, names in self.imports for n in names
                 if n.startswith("_") and not n.startswith("__") and t != m]
        return found + [f"{m}:{line} reads {text}" for m, line, text in self.private_reads]

    def uncommented_lazy(self) -> list[str]:
        return [f"{m}:{line} imports {what} inside a function without a comment saying why"
                for m, line, what in self.silent]

    def loops(self) -> list[list[str]]:
        """Strongly connected groups of more than one module (Tarjan), each sorted."""
        graph: dict[str, set[str]] = {m: set() for m in self.sources}
        for m, t, *_ in self.imports:
            if t in graph and t != m and not (m.startswith(t + ".") or t == "sambench"):
                graph[m].add(t)  # a submodule importing its own package's __init__ is Python's order, not a loop
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on: set[str] = set()
        out: list[list[str]] = []

        def visit(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            for w in graph[v]:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    out.append(sorted(group))

        for v in graph:
            if v not in index:
                visit(v)
        return out


# ------------------------------------------------------------------------------------------- the tree


@functools.lru_cache(maxsize=1)
def _package() -> Tree:
    return Tree(PACKAGE)


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _package().sources}
    assert units <= set().union(*LAYERS), sorted(units - set().union(*LAYERS))
    assert {"config", "inputs", "datasets", "metrics", "adapters", "execution", "store", "analysis", "report",
            "leaderboard", "cli"} <= units


def test_imports_point_down_the_stages_only():
    assert _package().upward() == []


def test_no_import_loops():
    assert _package().loops() == []


def test_no_module_imports_another_ones_private_name():
    assert _package().private() == []


def test_every_import_inside_a_function_says_why():
    assert _package().uncommented_lazy() == []


# ----------------------------------------------------- the checker catches each fault planted in a copy


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "sambench"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "data"))
    return root


def _plant(root: Path, relative: str, code: str) -> None:
    path = root / relative
    path.write_text(path.read_text(encoding="utf-8") + "\n" + code + "\n", encoding="utf-8")


@pytest.mark.slow  # copies and parses the whole package
def test_a_planted_upward_import_is_caught(tmp_path):
    root = _copy(tmp_path)
    _plant(root, "inputs/prompts.py", "from sambench.report.html import write_index  # planted")
    assert Tree(root).upward() == [f"sambench.inputs.prompts:{_last_line(root, 'inputs/prompts.py')} imports "
                                   "sambench.report.html (layer report is above inputs)"]


@pytest.mark.slow  # copies and parses the whole package
def test_a_planted_loop_is_caught(tmp_path):
    root = _copy(tmp_path)
    # two modules of one folder that import each other: no layer rule sees it, the loop rule does
    _plant(root, "inputs/clicks.py", "import sambench.inputs.corruptions  # planted")
    _plant(root, "inputs/corruptions.py", "import sambench.inputs.clicks  # planted")
    assert Tree(root).upward() == []
    assert Tree(root).loops() == [["sambench.inputs.clicks", "sambench.inputs.corruptions"]]


@pytest.mark.slow  # copies and parses the whole package
def test_a_planted_loop_held_open_by_a_function_level_import_is_caught(tmp_path):
    root = _copy(tmp_path)
    _plant(root, "store/__init__.py", "def _planted():\n    # planted\n    from sambench.store.table import COLUMNS\n")
    _plant(root, "store/table.py", "def _planted():\n    # planted\n    import sambench.store.sqlite\n")
    _plant(root, "store/sqlite.py", "def _planted():\n    # planted\n    import sambench.store.table\n")
    assert ["sambench.store.sqlite", "sambench.store.table"] in Tree(root).loops()


@pytest.mark.slow  # copies and parses the whole package
def test_a_planted_private_import_is_caught(tmp_path):
    root = _copy(tmp_path)
    _plant(root, "analysis/noc.py", "from sambench.metrics import _planted_private  # planted")
    _plant(root, "report/tables.py", "import sambench.analysis.summary as S  # planted\nS._planted_private")
    found = Tree(root).private()
    assert len(found) == 2
    assert found[0].startswith("sambench.analysis.noc:") and found[0].endswith("imports sambench.metrics._planted_private")
    assert found[1].startswith("sambench.report.tables:") and found[1].endswith("reads S._planted_private")


@pytest.mark.slow  # copies and parses the whole package
@pytest.mark.parametrize("body, named", [("from sambench.metrics import iou\n    return iou", " imports sambench.metrics "),
                                         ("import torch\n    return torch", " imports torch ")])
def test_a_planted_silent_import_inside_a_function_is_caught(tmp_path, body, named):
    root = _copy(tmp_path)
    _plant(root, "analysis/noc.py", f"def _planted():\n    {body}")
    found = Tree(root).uncommented_lazy()
    assert len(found) == 1 and found[0].startswith("sambench.analysis.noc:") and named in found[0]


def _last_line(root: Path, relative: str) -> int:
    return len((root / relative).read_text(encoding="utf-8").splitlines())

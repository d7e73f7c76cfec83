"""The package's layers: every import points to the importer's own layer or one below it, and no two modules
import each other, directly or round a longer circle.

The test reads the source (an AST walk over every ``.py`` file in ``dept_vl/`` and ``tasks/``) and imports
nothing of it. It counts every import statement: at module level, inside functions, under ``if TYPE_CHECKING:``;
``from x import y`` counts as an import of ``x.y`` when ``y`` is a module, else of ``x``; relative imports
are resolved. Importing ``x.y`` is not counted as importing the package ``x`` too (Python runs its
``__init__``, which only re-exports), and modules loaded by name at run time (the task registry's
``importlib.import_module`` of ``tasks/``, a plug-in folder) are not imports.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dept_vl"
# Source folders and the module names their files have (tasks/ is installed as dept_vl.task_defs).
SOURCES = {ROOT / "dept_vl": "dept_vl", ROOT / "tasks": "dept_vl.task_defs"}

# The layers, top (1) to bottom (8). A module belongs to the group of the longest prefix that names it; it
# may import its own group and every group below, never one above. A prefix may name a module that is not
# written yet: nothing here requires any of them to exist.
LAYERS: list[tuple[str, list[str]]] = [
    ("command line", ["dept_vl.cli", "dept_vl.__main__"]),
    ("demo", ["dept_vl.demo"]),
    ("recipes", ["dept_vl.recipes"]),
    ("training", ["dept_vl.train"]),
    ("methods", ["dept_vl.methods"]),
    ("configuration, reports, tasks", ["dept_vl.config", "dept_vl.report", "dept_vl.tasks", "dept_vl.task_defs"]),
    ("data, models, the DePT method", ["dept_vl.data", "dept_vl.models", "dept_vl.dept"]),
    ("metrics, files", ["dept_vl.metrics", "dept_vl.io", "dept_vl.adapter", "dept_vl.hub", "dept_vl.model_card",
                        "dept_vl.version"]),
]
# dept_vl/__init__.py, the package facade, stands above every layer: it may import anything, and nothing
# imports it (import the submodule that holds the name instead).
FACADE = PACKAGE

# Imports forbidden whatever the layers say: (importer prefix, imported prefix, why). The command line's
# own entry point (python -m dept_vl) is the one module that imports the command line.
FORBIDDEN: list[tuple[str, str, str]] = [
    ("dept_vl.models", "dept_vl.data", "the backbone knows nothing of the data (callers pass a vocabulary in)"),
    ("dept_vl.data", "dept_vl.metrics", "task scorers live with the task definitions in tasks/"),
    ("dept_vl.report", "dept_vl.data.shapes", "reports read result files and task definitions, not the synthetic world"),
]
ENTRY_POINT = "dept_vl.__main__"
CLI = "dept_vl.cli"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line} {self.importer} -> {self.imported}"


def module_files() -> dict[str, Path]:
    """Every module name of the package and its file."""
    modules = {}
    for folder, prefix in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([prefix, *parts])] = path
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    base = base if is_package else base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, path: Path, known: set[str], root: Path = ROOT) -> list[Import]:
    """The package-internal imports of one file (``known``: every module name, to tell submodules from names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    file = str(path.relative_to(root))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                source = _resolve_relative(module, path.name == "__init__.py", node.level, node.module)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                names.append(submodule if submodule in known else source)
        for name in dict.fromkeys(names):  # `from x import a, b` is one import of x
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                found.append(Import(module, name, file, node.lineno))
    return found


def all_imports() -> tuple[dict[str, Path], list[Import]]:
    modules = module_files()
    known = set(modules)
    edges = [imp for name, path in modules.items() for imp in imports_of(name, path, known)]
    return modules, edges


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    """The layer number (1 = top) of a module, 0 for the package facade, None when no layer names it."""
    if module == FACADE:
        return 0
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for number, (_, prefixes) in enumerate(LAYERS, start=1):
        for prefix in prefixes:
            if _matches(module, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), number)
    return None if best is None else best[1]


def _describe(layer: int | None) -> str:
    if layer == 0:
        return "the package facade"
    return "no layer" if layer is None else f"layer {layer} ({LAYERS[layer - 1][0]})"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of a module graph (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def one_cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest circle through the first module of a strongly connected component (first module repeated last)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                return paths[node] + [start]
            if child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return [start, start]


def cycles(modules: dict[str, Path], edges: list[Import]) -> list[str]:
    """One message per import circle (strongly connected component): its modules, one circle through them
    step by step, and every import among them (file:line), which shows where to cut."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    where: dict[tuple[str, str], Import] = {}
    for imp in edges:
        if imp.imported in graph and imp.imported != imp.importer:
            graph[imp.importer].add(imp.imported)
            where.setdefault((imp.importer, imp.imported), imp)
    messages = []
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        circle = one_cycle(component, graph)
        steps = "\n      ".join(str(where[(a, b)]) for a, b in zip(circle, circle[1:]))
        inside = sorted(str(imp) for imp in edges if imp.importer in component and imp.imported in component
                        and imp.importer != imp.imported)
        messages.append(f"  circle of {len(component)} modules {component}, e.g.\n      {steps}\n"
                        f"    every import among them:\n      " + "\n      ".join(inside))
    return messages


def violations(modules: dict[str, Path], edges: list[Import]) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {"modules without a layer": [], "upward imports": [],
                                      "forbidden imports": [], "import circles": cycles(modules, edges)}
    for name in sorted(modules):
        if layer_of(name) is None:
            problems["modules without a layer"].append(f"  {modules[name].relative_to(ROOT)} ({name}): add it to LAYERS")
    for imp in edges:
        if imp.importer == FACADE or imp.imported == imp.importer:
            continue
        if imp.imported == FACADE:
            problems["forbidden imports"].append(
                f"  {imp}: nothing imports the package facade {FACADE}; import the submodule that defines the name")
            continue
        if _matches(imp.imported, CLI) and imp.importer != ENTRY_POINT:
            problems["forbidden imports"].append(f"  {imp}: nothing imports the command line")
        for importer, imported, why in FORBIDDEN:
            if _matches(imp.importer, importer) and _matches(imp.imported, imported):
                problems["forbidden imports"].append(f"  {imp}: {why}")
        upper, lower = layer_of(imp.importer), layer_of(imp.imported)
        if upper is not None and lower is not None and lower < upper:
            problems["upward imports"].append(f"  {imp}: {_describe(upper)} imports {_describe(lower)}")
    return problems


def format_problems(problems: dict[str, list[str]]) -> str:
    return "\n".join(f"{kind} ({len(lines)}):\n" + "\n".join(lines) for kind, lines in problems.items() if lines)


# ------------------------------------------------------------------ the tests
def test_every_import_respects_the_layers_and_no_module_imports_in_a_circle():
    modules, edges = all_imports()
    problems = violations(modules, edges)
    if any(problems.values()):
        pytest.fail("the layer rules are broken (see the table in tests/test_layers.py):\n" + format_problems(problems),
                    pytrace=False)


def test_the_walk_sees_function_local_relative_and_submodule_imports(tmp_path):
    source = tmp_path / "sub"
    source.mkdir()
    (source / "__init__.py").write_text("from . import mod\nfrom .mod import thing\n")
    (source / "mod.py").write_text("import os\n\ndef f():\n    from ..other import x\n    import dept_vl.data.kshot\n")
    known = {"dept_vl.sub", "dept_vl.sub.mod", "dept_vl.other", "dept_vl.data.kshot"}
    found = {(i.importer, i.imported, i.line) for i in imports_of("dept_vl.sub", source / "__init__.py", known, tmp_path)}
    assert found == {("dept_vl.sub", "dept_vl.sub.mod", 1), ("dept_vl.sub", "dept_vl.sub.mod", 2)}
    found = {(i.importer, i.imported, i.line) for i in imports_of("dept_vl.sub.mod", source / "mod.py", known, tmp_path)}
    assert found == {("dept_vl.sub.mod", "dept_vl.other", 4), ("dept_vl.sub.mod", "dept_vl.data.kshot", 5)}


def test_layers_and_circles_are_reported_with_their_place():
    assert layer_of("dept_vl.cli") == 1 and layer_of("dept_vl.train.loop") == 4 and layer_of("dept_vl.task_defs.glue") == 6
    assert layer_of("dept_vl.data.shapes.scene") == 7 and layer_of("dept_vl.adapter") == 8 and layer_of("dept_vl") == 0
    assert layer_of("dept_vl.tasks") == 6 and layer_of("dept_vl.tasksx") is None
    modules = {name: ROOT / "x.py" for name in ("dept_vl.models.a", "dept_vl.models.b", "dept_vl.data.c", "dept_vl.metrics.d")}
    edges = [Import("dept_vl.models.a", "dept_vl.models.b", "a.py", 1), Import("dept_vl.models.b", "dept_vl.models.a", "b.py", 2),
             Import("dept_vl.metrics.d", "dept_vl.data.c", "d.py", 3), Import("dept_vl.data.c", "dept_vl.metrics.d", "c.py", 4),
             Import("dept_vl.models.a", "dept_vl.data.c", "a.py", 5)]
    problems = violations(modules, edges)
    assert problems["upward imports"] == ["  d.py:3 dept_vl.metrics.d -> dept_vl.data.c: layer 8 (metrics, files) imports "
                                          "layer 7 (data, models, the DePT method)"]
    assert [line.split(":")[0].strip() for line in problems["forbidden imports"]] == ["c.py", "a.py"]
    circles = problems["import circles"]
    assert len(circles) == 2 and any("a.py:1 dept_vl.models.a -> dept_vl.models.b" in c and "b.py:2" in c for c in circles)

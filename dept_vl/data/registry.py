"""The one task registry. Task definitions live in the top-level ``tasks/`` folder (installed as
``dept_vl.task_defs``), one small file per task or family, each calling :func:`register_task`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType

from dept_vl.data.task import Task

_TASKS: dict[str, Task] = {}
_OWNERS: dict[str, str] = {}  # task name -> module that registered it
_DEFINITIONS_PACKAGE = "dept_vl.task_defs"
_loaded = False


def register_task(task: Task) -> Task:
    """Add a task to the registry (call it at import time of a file in ``tasks/``).

    Re-registering a name replaces it only when it comes from the same module (a reload).

    Raises:
        ValueError: when another module already registered the same name.
    """
    module = str(sys._getframe(1).f_globals.get("__name__", "?"))
    owner = _OWNERS.get(task.name)
    if owner is not None and owner != module:
        raise ValueError(f"task name {task.name!r} is registered twice "
                         f"(by {owner} and {module}); rename one")
    _TASKS[task.name] = task
    _OWNERS[task.name] = module
    return task


def _definitions_package() -> ModuleType:
    try:
        return importlib.import_module(_DEFINITIONS_PACKAGE)
    except ModuleNotFoundError as err:
        if err.name != _DEFINITIONS_PACKAGE:
            raise
    # Running from a source checkout whose install does not map tasks/ (e.g. an editable install
    # that predates the mapping): load <repo>/tasks under the package name.
    folder = Path(__file__).resolve().parents[2] / "tasks"
    init = folder / "__init__.py"
    if not init.is_file():
        raise ModuleNotFoundError(
            f"cannot find the task definitions: neither the package {_DEFINITIONS_PACKAGE} nor "
            f"{init} exists; reinstall dept-vl (pip install .)")
    spec = importlib.util.spec_from_file_location(
        _DEFINITIONS_PACKAGE, init, submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[_DEFINITIONS_PACKAGE] = package
    spec.loader.exec_module(package)
    return package


def load_definitions() -> None:
    """Import every module of ``tasks/`` once, which registers their tasks."""
    global _loaded
    if _loaded:
        return
    package = _definitions_package()
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{_DEFINITIONS_PACKAGE}.{info.name}")
    _loaded = True


def list_tasks() -> list[str]:
    """Names of every registered task, sorted."""
    load_definitions()
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """The task registered under ``name``.

    Raises:
        ValueError: unknown name, with the closest known names and the full list.
    """
    load_definitions()
    if name in _TASKS:
        return _TASKS[name]
    close = difflib.get_close_matches(name, list(_TASKS), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ValueError(f"unknown task {name!r}; {hint}known tasks: {', '.join(sorted(_TASKS))}")


def task_table() -> list[dict[str, str]]:
    """One row per task: name, family, kind, role, source, metric (headline), formats."""
    rows = []
    for name in list_tasks():
        task = _TASKS[name]
        rows.append({
            "name": name,
            "family": task.family,
            "kind": task.kind,
            "role": task.role or "",
            "source": task.source,
            "metric": f"{task.headline_metric} ({task.scale})",
            "formats": ",".join(task.formats),
        })
    return rows


def format_task_table() -> str:
    """The task table as aligned text (what ``dept-vl tasks`` prints)."""
    rows = task_table()
    columns = ["name", "kind", "role", "metric", "formats", "source"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    for row in rows:
        lines.append("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
    return "\n".join(lines)

"""A non-editable install carries the task definitions, the recipes and the shipped backbone."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_tasks_recipes_and_backbone(tmp_path):
    pytest.importorskip("setuptools")
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    wheel = next(tmp_path.glob("dept_vl-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for task_file in (ROOT / "tasks").glob("*.py"):
        assert f"dept_vl/task_defs/{task_file.name}" in names
    for recipe in (ROOT / "configs").glob("*.yaml"):
        assert f"dept_vl/recipe_files/{recipe.name}" in names
    for asset in (ROOT / "dept_vl" / "assets").rglob("*"):
        if asset.is_file():
            assert asset.relative_to(ROOT).as_posix() in names
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("__init__.py")}
    on_disk = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "dept_vl").rglob("__init__.py")}
    assert on_disk <= packages, f"packages missing from pyproject: {sorted(on_disk - packages)}"

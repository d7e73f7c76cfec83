"""Where the YAML recipes of configs/ are found, in a checkout or after ``pip install .``."""

from __future__ import annotations

from pathlib import Path


def recipes_dir() -> Path:
    try:
        import importlib.resources

        folder = Path(str(importlib.resources.files("dept_vl.recipe_files")))
        if folder.is_dir():
            return folder
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[1] / "configs"


def list_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def recipe_path(name_or_path: str) -> Path:
    """A recipe by name (``shapes_pretrain``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = recipes_dir() / f"{name_or_path.removesuffix('.yaml')}.yaml"
    if candidate.is_file():
        return candidate
    raise FileNotFoundError(f"config {name_or_path!r} is neither a file nor a recipe; recipes: {', '.join(list_recipes())}")

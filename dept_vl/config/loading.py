"""Loading a config: the recipes of ``configs/``, ``key=value`` overrides with type-aware values, and
:func:`load_config`, which builds and checks every section."""

from __future__ import annotations

import dataclasses
import datetime
import difflib
from pathlib import Path
from typing import Any

import yaml

from dept_vl.config.fields import type_hints, list_item, unoptional, check_value
from dept_vl.config.sections import RunConfig
from dept_vl.config.yaml_format import read_recipe_file, read_yaml
from dept_vl.dept.config import DePTConfig

# ---------------------------------------------------------------------------------------------------------
# recipes: the YAML files of configs/, in a checkout or after ``pip install .`` (as dept_vl.recipe_files)


def recipes_dir() -> Path:
    try:
        import importlib.resources

        folder = Path(str(importlib.resources.files("dept_vl.recipe_files")))
        if folder.is_dir():
            return folder
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "configs"


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


# ---------------------------------------------------------------------------------------------------------
# loading: overrides, type-aware values, sections

_NULLS = ("", "null", "Null", "NULL", "None", "~")


def _keys(cls: type, prefix: str = "") -> list[str]:
    out = []
    for name, hint in type_hints(cls).items():
        out.append(prefix + name)
        if dataclasses.is_dataclass(hint):
            out += _keys(hint, f"{prefix}{name}.")
    return out


def _hint_at(parts: list[str]) -> Any | None:
    """The type hint of the dotted key ``parts`` of RunConfig, or None for an unknown key."""
    cls: Any = RunConfig
    for part in parts[:-1]:
        cls = type_hints(cls).get(part) if dataclasses.is_dataclass(cls) else None
    return type_hints(cls).get(parts[-1]) if dataclasses.is_dataclass(cls) else None


def _split_list(text: str, item: Any) -> list[Any]:
    """``a,b`` or ``a b`` -> a list (items parsed as YAML unless they are strings)."""
    pieces = text.replace(",", " ").split()
    return pieces if item is str else [read_yaml(p) for p in pieces]


def _coerce(value: Any, hint: Any) -> Any:
    """A value read from YAML, made the field's type where YAML guessed another: a string field's
    ``2024-01-01`` or ``1e3`` is the string, a list field's ``a,b`` or ``4`` a list."""
    base, _ = unoptional(hint)
    item = list_item(base)
    if base is str and isinstance(value, (int, float, datetime.date)) and not isinstance(value, bool):
        return str(value)
    if item is not None and isinstance(value, str):
        return _split_list(value, item)
    if item is not None and isinstance(value, list):
        return [_coerce(v, item) for v in value]
    if item is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return value


def _parse_override(text: str, hint: Any | None) -> Any:
    base, optional = unoptional(hint)
    if optional and text.strip() in _NULLS:
        return None
    if base is str:  # a string field takes the text as it is: ``output_dir=2024-01-01``, ``out #1``
        return text
    if list_item(base) is not None and not text.strip():
        return []
    return read_yaml(text)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings. ``null``, ``None`` or ``~`` is None where the field allows None; a
    string field takes the text as it is; other values are parsed as YAML (``3``, ``1e-3``, ``[4, 16]``);
    a list field also takes ``a,b``."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. train.max_steps=200)")
        key, text = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        hint = _hint_at(parts)
        try:
            value = _parse_override(text, hint)
        except yaml.YAMLError as err:
            raise ValueError(f"override {item!r}: the value is not valid YAML: {err}") from err
        node[parts[-1]] = _coerce(value, hint) if hint is not None else value
    return data


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"config section {where or 'top level'} must be a mapping, got {data!r}")
    hints = type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{where}.{key}" if where else str(key)
        if key not in hints:
            close = difflib.get_close_matches(full, _keys(RunConfig), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown config key {full!r}{hint}")
        sub = hints[key]
        kwargs[key] = _build(sub, value or {}, full) if dataclasses.is_dataclass(sub) else _coerce(value, sub)
    if cls is not DePTConfig:
        return cls(**kwargs)
    # DePTConfig checks its own values (as DePTConfig.<name>); the types first, then its messages as dept.<name>
    for key, value in kwargs.items():
        check_value(f"{where}.{key}", value, hints[key], {})
    try:
        return cls(**kwargs)
    except ValueError as err:
        message = str(err)
        raise ValueError(f"{where}.{message.removeprefix('DePTConfig.')}" if message.startswith("DePTConfig.")
                         else f"config section {where}: {message}") from err


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML recipe (or the defaults), apply overrides, and check every key and value."""
    data: dict[str, Any] = read_recipe_file(recipe_path(str(path))) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    # ``method`` is only checked to be a name here: the run assembly checks it against the method registry
    return _build(RunConfig, data, "")

"""Declarative checks: :func:`option` (a field with its help text and checks), :func:`section`, and
:func:`check_section`, which checks every field of a section against its type hint when the section is made."""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from dataclasses import field
from typing import Any


# ---------------------------------------------------------------------------------------------------------
# declarative checks


def option(default: Any, help: str, *, choices: tuple[str, ...] | None = None, minimum: float | None = None,
           above: float | None = None, below: float | None = None, nonempty: bool = False) -> Any:
    """A dataclass field with its help text and its checks (for a list, choices and bounds apply to each item).

    ``choices``: the allowed values; ``minimum``: value >= minimum; ``above``: value > above; ``below``:
    value < below; ``nonempty``: a string or list may not be empty. The type comes from the type hint.
    """
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "minimum": minimum,
                "above": above, "below": below, "nonempty": nonempty}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(factory: Any, help: str) -> Any:
    """A field holding a whole config section."""
    return field(default_factory=factory, metadata={"help": help})


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def unoptional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(typing.get_args(hint)) > 1
    return hint, False


def list_item(hint: Any) -> Any | None:
    """The item type of ``list[X]``, else None."""
    return typing.get_args(hint)[0] if typing.get_origin(hint) is list else None


def _is_type(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    item = list_item(hint)
    if item is not None:
        return isinstance(value, list) and all(_is_type(v, item) for v in value)
    if typing.get_origin(hint) is dict:  # a mapping of names to free values (checked by whoever reads them)
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)
    raise TypeError(f"the config system has no check for the type {hint!r}")


_NOUNS = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings")}


def _or(words: typing.Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _bounds(meta: typing.Mapping[str, Any]) -> str:
    parts = [f"{op} {meta[k]}" for k, op in (("minimum", ">="), ("above", ">"), ("below", "<")) if meta.get(k) is not None]
    return " and ".join(parts)


def _describe(hint: Any, meta: typing.Mapping[str, Any]) -> str:
    """What a field allows, in words: 'an integer >= 1 or null', 'a non-empty list of integers >= 1'."""
    base, optional = unoptional(hint)
    choices, bounds, nonempty = meta.get("choices"), _bounds(meta), meta.get("nonempty")
    item = list_item(base)
    if item is not None:
        what = f"names from {', '.join(choices)}" if choices else " ".join(filter(None, [_NOUNS[item][1], bounds]))
        text = f"a {'non-empty ' if nonempty else ''}list of {what}"
    elif choices:
        text = f"one of {_or(choices)}"
    elif dataclasses.is_dataclass(base):
        text = f"a {base.__name__} section"
    elif typing.get_origin(base) is dict:
        text = "a mapping of names to values"
    else:
        text = " ".join(filter(None, ["a non-empty string" if base is str and nonempty else _NOUNS[base][0], bounds]))
    return text + (" or null" if optional else "")


def _in_bounds(value: Any, meta: typing.Mapping[str, Any]) -> bool:
    return ((meta.get("minimum") is None or value >= meta["minimum"]) and (meta.get("above") is None or value > meta["above"])
            and (meta.get("below") is None or value < meta["below"]))


def check_value(key: str, value: Any, hint: Any, meta: typing.Mapping[str, Any]) -> None:
    """Raise ValueError naming ``key``, the value and what is allowed, unless ``value`` fits ``hint`` and ``meta``."""
    base, optional = unoptional(hint)
    if value is None and optional:
        return
    allowed = _describe(hint, meta)
    choices = meta.get("choices")
    if not _is_type(value, base):
        raise ValueError(f"{key}={value!r}: must be {allowed}")
    items = value if isinstance(value, list) else [value]
    unknown = [v for v in items if choices and v not in choices]
    if unknown and isinstance(value, list):
        raise ValueError(f"{key}={value!r}: {', '.join(map(repr, unknown))} unknown; choose any of {', '.join(choices)}")
    if unknown:
        raise ValueError(f"{key}={value!r} is unknown; choose {_or(choices)}")
    if meta.get("nonempty") and len(value) == 0 or not all(_in_bounds(v, meta) for v in items):
        raise ValueError(f"{key}={value!r}: must be {allowed}")


def check_section(self: Any, prefix: str) -> None:
    """Check every field of a section dataclass against its type hint and :func:`option` checks."""
    hints = type_hints(type(self))
    for f in dataclasses.fields(self):
        check_value(f"{prefix}.{f.name}" if prefix else f.name, getattr(self, f.name), hints[f.name], f.metadata)



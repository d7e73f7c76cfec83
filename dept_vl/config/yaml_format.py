"""YAML as the config system reads and writes it: YAML 1.2 booleans and floats (``compile: off`` stays a
string, ``1e-4`` is a number), and saved configs that read back equal."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

# ---------------------------------------------------------------------------------------------------------
# YAML


class YamlLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans and floats: only true/false are booleans, so ``compile: off`` and
    ``mixed_precision: no`` stay the strings they read as, and ``1e-4`` is a float."""


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# and YAML 1.2's floats: ``1e-4`` is a number (YAML 1.1 wants ``1.0e-4``)
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")
YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))


class YamlDumper(yaml.SafeDumper):
    """Quotes every string that :class:`YamlLoader` would read as something else (``'1e3'``), so a saved
    config reads back equal."""


YamlDumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))


def read_yaml(text: str) -> Any:
    """Parse YAML text as the config system does (YAML 1.2 booleans)."""
    return yaml.load(text, Loader=YamlLoader)


def read_recipe_file(path: Path) -> dict[str, Any]:
    try:
        with path.open() as stream:  # the parser's messages name the file
            data = yaml.load(stream, Loader=YamlLoader)
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must be a mapping of config keys (method:, model:, train:, ...) "
                         f"at its top level, not a {type(data).__name__}")
    return data



"""The one adapter format, read and written here only.

An adapter is a folder with two files, the layout peft uses:

- ``adapter_model.safetensors``: the trained tensors (never a pickle);
- ``adapter_config.json``: for methods that peft knows (LoRA, prompt tuning) peft's own config, so that
  ``peft.PeftModel.from_pretrained`` reads the folder; for the others (DePT, full fine-tuning) no peft keys.
  In both cases the key ``dept_vl`` records what dept-vl needs: the format and its version, the ``method``,
  its ``settings`` (e.g. the DePTConfig) and the shape facts of the ``base_model`` it was trained on.

Adapters of format version 1 (``dept_config.json`` + ``adapter.safetensors``, always DePT) still load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dept_vl.io import save_tensors_atomic, write_json_atomic

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
FORMAT_NAME = "dept-vl-adapter"
FORMAT_VERSION = 2
RECORD_KEY = "dept_vl"
LEGACY_CONFIG_FILE, LEGACY_WEIGHTS_FILE = "dept_config.json", "adapter.safetensors"  # format version 1


@dataclass
class Adapter:
    """A saved adapter as read from its folder."""

    method: str
    settings: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    base_model: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    peft_config: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def base_model_facts(base_model: nn.Module) -> dict[str, Any]:
    """Shape facts of a base model, stored with an adapter so that a wrong base is caught at load."""
    weight = base_model.get_input_embeddings().weight
    config = getattr(base_model, "config", None)
    name = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None) or ""
    return {
        "name_or_path": str(name),
        "model_type": str(getattr(config, "model_type", type(base_model).__name__)),
        "text_model_type": str(getattr(config, "text_model_type", getattr(config, "model_type", ""))),
        "d_model": int(weight.shape[1]),
        "vocab_size": int(weight.shape[0]),
    }


def check_base_model(facts: dict[str, Any], base_model: nn.Module, source: Any) -> None:
    """Raise if ``base_model`` differs in width, vocabulary or text-model type from the one an adapter was trained on."""
    actual = base_model_facts(base_model)
    for key in ("d_model", "vocab_size", "text_model_type"):
        if facts.get(key) in (None, "", "unknown") or not actual.get(key):
            continue
        if str(facts[key]) != str(actual[key]):
            raise ValueError(
                f"adapter {source} was trained on a base model with {key}={facts[key]} "
                f"({facts.get('name_or_path') or 'unnamed'}), but this base model has {key}={actual[key]} "
                f"({actual['name_or_path'] or 'unnamed'}); load it onto the base model it was trained with"
            )


def write_adapter(
    directory: str | Path,
    *,
    method: str,
    settings: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    base_model: dict[str, Any],
    peft_config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an adapter folder (each file atomically: the tensors first, then the config that names them)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors_atomic(directory / WEIGHTS_FILE, tensors, metadata={"format": FORMAT_NAME, "method": method})
    record = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "method": method, "settings": settings,
              "base_model": base_model, **(extra or {})}
    write_json_atomic(directory / CONFIG_FILE, {**(peft_config or {}), RECORD_KEY: record})
    return directory


def is_adapter(directory: str | Path) -> bool:
    """Whether ``directory`` holds a dept-vl adapter (either format version)."""
    directory = Path(directory)
    return ((directory / CONFIG_FILE).is_file() and (directory / WEIGHTS_FILE).is_file()) or (
        (directory / LEGACY_CONFIG_FILE).is_file() and (directory / LEGACY_WEIGHTS_FILE).is_file())


def read_adapter(directory: str | Path) -> Adapter:
    """Read a saved adapter, with clear errors for missing or foreign files."""
    from safetensors.torch import load_file

    directory = Path(directory).expanduser()
    if (directory / LEGACY_CONFIG_FILE).is_file() and not (directory / CONFIG_FILE).is_file():
        return _read_legacy(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        hint = (" (a checkpoint released with the DePT paper? use DePTModel.from_official or `dept-vl import-official`)"
                if (directory / "adapter_model.bin").exists() else "")
        raise FileNotFoundError(f"{directory} is not a dept-vl adapter: expected {CONFIG_FILE} and {WEIGHTS_FILE}{hint}")
    meta = _read_json(config_path)
    record = meta.get(RECORD_KEY)
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        hint = " (a peft adapter: load it with peft)" if "peft_type" in meta else ""
        raise ValueError(f"{config_path} is not a dept-vl adapter config: it has no {RECORD_KEY!r} record{hint}")
    peft_config = {k: v for k, v in meta.items() if k != RECORD_KEY} or None
    known = ("format", "format_version", "method", "settings", "base_model")
    return Adapter(method=record["method"], settings=record.get("settings", {}), tensors=_load(load_file, weights_path),
                   base_model=record.get("base_model", {}), path=directory, peft_config=peft_config,
                   extra={k: v for k, v in record.items() if k not in known})


def _read_legacy(directory: Path) -> Adapter:
    from safetensors.torch import load_file

    meta = _read_json(directory / LEGACY_CONFIG_FILE)
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{directory / LEGACY_CONFIG_FILE} has format {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    method = meta.get("method", "dept")
    return Adapter(method=method, settings=meta.get(method, {}), tensors=_load(load_file, directory / LEGACY_WEIGHTS_FILE),
                   base_model=meta.get("base_model", {}), path=directory)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the adapter folder is damaged") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _load(load_file: Any, path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for truncated or foreign files
        raise ValueError(f"{path} is not a readable safetensors file ({error}); the adapter folder is damaged") from None

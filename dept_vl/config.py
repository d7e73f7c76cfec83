"""One config system: a YAML recipe, ``key=value`` overrides, and the resolved config written with the outputs."""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dept_vl.dept.config import DePTConfig


@dataclass
class ModelConfig:
    preset: str = "tiny"  # a name from dept_vl.list_presets()
    backbone: str | None = None  # folder of a pretrained backbone (the demo ships one); None = the preset's own weights
    dtype: str = "auto"  # float32 | bfloat16 | float16 | auto (bfloat16 on GPU, float32 on CPU)


@dataclass
class LoRAConfig:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q", "v"])
    lr: float = 1e-3
    weight_decay: float = 0.0


@dataclass
class FullConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0


@dataclass
class DataConfig:
    tasks: list[str] = field(default_factory=lambda: ["shapes_color", "shapes_exist"])
    format: str = "shifted"  # plain | shifted | default | reference (task-specific input formats)
    data_dir: str | None = None
    train_size: int | None = None  # examples generated/loaded per task for training (None = the task's default)
    eval_size: int | None = 500  # examples per task in dev/test evaluation (None = all)
    mixing: str = "proportional"  # proportional | temperature
    mixing_cap: int = 10000  # examples-proportional mixing caps each task's size at this
    temperature: float = 2.0
    max_input_length: int | None = None  # truncate text inputs (None = DePT's max_length)
    max_target_length: int = 32
    length_grouping: bool = True
    feature_cache: bool = True  # cache frozen image-encoder features (identical results, much faster)


@dataclass
class TrainConfig:
    max_steps: int = 500
    batch_size: int = 64
    grad_accum: int = 1
    warmup_steps: int = 50
    max_grad_norm: float = 1.0
    seed: int = 0
    mixed_precision: str = "auto"  # no | bf16 | fp16 | auto (bf16 on GPU)
    log_every: int = 50
    eval_every: int = 250
    save_every: int = 250
    compile: str = "auto"  # auto (single GPU, >= 1000 steps) | on | off
    attention: str = "auto"  # auto (biased_sdpa for T5 with a frozen base on GPU) | keep | eager | sdpa | biased_sdpa | biased_cudnn
    num_workers: int = 0
    stop_at: int = 0  # > 0: end this job at that step with a checkpoint (time-limited jobs); --resume goes on
    gradient_sync: str = "auto"  # several processes: ddp | allreduce (one flat all-reduce) | auto (allreduce when compiled)


@dataclass
class EvalConfig:
    batch_size: int = 128
    max_new_tokens: int = 16
    num_beams: int = 1
    length_penalty: float = 1.0
    split: str = "test"


@dataclass
class AdaptConfig:
    task: str = "shapes_count"
    k: list[int] = field(default_factory=lambda: [4, 16, 32])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    source: str | None = None  # adapter folder, or None / "none" to start from scratch
    transfer: list[str] = field(default_factory=lambda: ["prompt", "lowrank", "modules"])
    dev_k: int | None = None  # examples (per class) in the k-shot dev split; None = k
    save_adapters: bool = True  # write each run's selected adapter to runs/k<k>_seed<s>/adapter


@dataclass
class RunConfig:
    method: str = "dept"  # dept | prompt_tuning | lora | full
    output_dir: str = "runs/default"
    model: ModelConfig = field(default_factory=ModelConfig)
    dept: DePTConfig = field(default_factory=lambda: DePTConfig(num_virtual_tokens=8, rank=4, max_length=64))
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    full: FullConfig = field(default_factory=FullConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        from dept_vl.io import write_text_atomic

        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


METHODS = ("dept", "prompt_tuning", "lora", "full")


def _keys(cls: type, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        out.append(name)
        if dataclasses.is_dataclass(f.type if isinstance(f.type, type) else _field_type(cls, f.name)):
            out += _keys(_field_type(cls, f.name), name + ".")
    return out


def _field_type(cls: type, name: str) -> Any:
    import typing

    return typing.get_type_hints(cls)[name]


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"config section {where or 'top level'} must be a mapping, got {data!r}")
    hints = {f.name: _field_type(cls, f.name) for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            full = f"{where}.{key}" if where else key
            close = difflib.get_close_matches(full, _keys(RunConfig), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown config key {full!r}{hint}")
        sub = hints[key]
        kwargs[key] = _build(sub, value or {}, f"{where}.{key}" if where else key) if dataclasses.is_dataclass(sub) else value
    return cls(**kwargs)


class _Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans and floats: only true/false are booleans, so ``compile: off`` and
    ``mixed_precision: no`` stay the strings they read as, and ``1e-4`` is a float."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# and YAML 1.2's floats: ``1e-4`` is a number (YAML 1.1 wants ``1.0e-4``)
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+.0123456789"))


def read_yaml(text: str) -> Any:
    """Parse YAML text as the config system does (YAML 1.2 booleans)."""
    return yaml.load(text, Loader=_Loader)


def _parse_value(text: str) -> Any:
    return read_yaml(text)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings (values parsed as YAML: ``3``, ``1e-3``, ``[4, 16]``, ``null``)."""
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
        value = _parse_value(text)
        if isinstance(value, str) and parts[-1] in ("k", "seeds", "tasks", "transfer", "target_modules", "trainable_modules"):
            value = [read_yaml(v) for v in value.replace(",", " ").split()]
        node[parts[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML recipe (or the defaults), apply overrides, and validate every key and value."""
    data: dict[str, Any] = {}
    if path is not None:
        from dept_vl.recipes import recipe_path

        data = read_yaml(recipe_path(str(path)).read_text()) or {}
    data = apply_overrides(data, list(overrides or []))
    config = _build(RunConfig, data, "")
    if config.method not in METHODS:
        raise ValueError(f"method={config.method!r} is unknown; choose one of {', '.join(METHODS)}")
    return config

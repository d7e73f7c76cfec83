"""DePT (Shi and Lipani, ICLR 2024): a soft prompt plus a low-rank offset ``A @ B`` on the text embeddings."""

from __future__ import annotations

import dataclasses

from torch import nn

from dept_vl.adapter import Adapter
from dept_vl.config import RunConfig
from dept_vl.dept.config import DePTConfig
from dept_vl.dept.model import DePTModel
from dept_vl.methods.registry import Method, register_method

SHAPE_FIELDS = ("num_virtual_tokens", "rank", "max_length", "alpha", "trainable_modules")


@register_method
class DePT(Method):
    """DePT (Shi and Lipani, ICLR 2024): m prompt tokens and A @ B of rank r over s positions (settings: dept.*)."""

    name = "dept"
    label = "dept"
    model_class: type[DePTModel] = DePTModel
    transfer_parts = ("prompt", "lowrank", "modules")

    def can_pack(self, config: RunConfig) -> bool:
        """DePT and prompt tuning change only the input, unless ``dept.trainable_modules`` trains base modules."""
        return not config.dept.trainable_modules

    def adapter_config(self, config: RunConfig, base: nn.Module) -> DePTConfig:
        return config.dept

    def build(self, config: RunConfig, base: nn.Module, seed: int | None = None) -> DePTModel:
        dept = self.adapter_config(config, base)
        if seed is not None:
            dept = dataclasses.replace(dept, seed=seed)
        return self.model_class(base, dept, getattr(base, "tokenizer", None))

    def from_adapter(self, base: nn.Module, adapter: Adapter) -> DePTModel:
        return self.model_class.from_adapter(base, adapter)

    def check(self, config: RunConfig) -> None:
        limit = config.data.max_input_length
        if limit is not None and limit > config.dept.max_length:
            raise ValueError(f"data.max_input_length={limit} exceeds dept.max_length={config.dept.max_length}, the longest "
                             f"input A @ B covers; lower data.max_input_length or raise dept.max_length")

    def for_adapter(self, config: RunConfig, adapter: Adapter) -> RunConfig:
        """The adapter's shapes (m, r, s, alpha, trainable modules) replace the run's; its learning rates do not."""
        shapes = {f: adapter.settings[f] for f in SHAPE_FIELDS if f in adapter.settings}
        return dataclasses.replace(config, dept=dataclasses.replace(config.dept, **shapes))

    def with_source(self, config: RunConfig, source: Adapter) -> RunConfig:
        """A target run takes the source's shapes; its learning rates stay the run's (the target stage sets its own)."""
        if source.method != self.name:
            raise ValueError(f"adapt.source={source.path} is a {source.method!r} adapter but method={self.name!r}; "
                             f"start a {self.name} run from a {self.name} adapter (or set method={source.method})")
        return self.for_adapter(config, source)

    def input_limit(self, config: RunConfig) -> int | None:
        return config.dept.max_length

    def may_skip_parameters(self, config: RunConfig) -> bool:
        return bool(config.dept.trainable_modules)  # a text-only batch skips e.g. the visual projection

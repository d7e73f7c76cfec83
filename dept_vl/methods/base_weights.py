"""The body shared by methods that train base weights: LoRA (matrices inside the base) and full fine-tuning."""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from dept_vl.adapter import Adapter, base_model_facts, write_adapter
from dept_vl.dept.wrapper import AdapterWrapper
from dept_vl.methods.registry import Method


class BaseWeightsModel(AdapterWrapper):
    """A base model some of whose own weights train; ``adapter_state_dict`` and ``state_dict`` hold exactly those
    weights."""

    method = ""

    def __init__(self, base_model: nn.Module, settings: Any):
        super().__init__()
        self.base_model = base_model
        self.settings = settings

    def forward(self, **batch: Any) -> Any:
        return self.base_model(**batch)

    @torch.no_grad()
    def generate(self, **kwargs: Any) -> torch.Tensor:
        return self.base_model.generate(**kwargs)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.base_model.named_parameters() if p.requires_grad}

    def param_groups(self) -> list[dict[str, Any]]:
        params = list(self.trainable_parameters().values())
        return [{"name": self.method, "params": params, "lr": self.settings.lr, "weight_decay": self.settings.weight_decay}]

    def file_name(self, name: str) -> str:
        """The name a trainable tensor has in the adapter file (its parameter name by default)."""
        return name

    def adapter_state_names(self) -> list[str]:
        return [f"base_model.{n}" for n in self.trainable_parameters()]

    def disable_adapter(self) -> AbstractContextManager[None]:
        raise ValueError(f"method {self.method!r} trains the base model's own weights: there is no frozen base to return "
                         f"to; load a fresh base model to compare with")

    def adapter_state_dict(self, keep_vars: bool = False) -> dict[str, torch.Tensor]:
        return {self.file_name(n): (p if keep_vars else p.detach()) for n, p in self.trainable_parameters().items()}

    def load_adapter_state(self, state: dict[str, torch.Tensor], parts: Iterable[str] = ()) -> list[str]:
        own = self.adapter_state_dict(keep_vars=True)
        missing = sorted(set(state) - set(own))
        if missing:
            raise ValueError(f"{self.method} adapter tensors {missing[:3]} have no place in this model (its tensors: {sorted(own)[:3]}...)")
        with torch.no_grad():
            for name, value in state.items():
                own[name].copy_(value.to(own[name].device, own[name].dtype))
        return list(state)

    def peft_config(self) -> dict[str, Any] | None:
        """peft's config of this adapter, when peft knows the method."""
        return None

    def save_pretrained(self, directory: str | Path) -> Path:
        return write_adapter(directory, method=self.method, settings=dataclasses.asdict(self.settings),
                             tensors=self.adapter_state_dict(), base_model=base_model_facts(self.base_model),
                             peft_config=self.peft_config())


class BaseWeightsMethod(Method):
    """A method whose model is ``model_class(base, config.<name>)``; its adapter stores those settings."""

    model_class: ClassVar[type[BaseWeightsModel]]
    settings_class: ClassVar[type]
    changes_base = True

    def build(self, config: Any, base: nn.Module, seed: int | None = None) -> BaseWeightsModel:
        return self.model_class(base, getattr(config, self.name))

    def from_adapter(self, base: nn.Module, adapter: Adapter) -> BaseWeightsModel:
        self.check_base(adapter, base)
        model = self.model_class(base, self.settings_class(**adapter.settings))
        model.load_adapter_state(adapter.tensors)
        return model.eval()

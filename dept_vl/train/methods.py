"""The methods a run can train, behind one interface: DePT, vanilla prompt tuning, LoRA (peft), full fine-tuning.

Every trainable model here offers ``forward(**batch)``, ``generate(**batch, **options)``, ``param_groups()``,
``adapter_state_dict()``, ``load_adapter_state(state, parts)`` and ``save_pretrained(dir)``, writing the
one adapter format (``dept_config.json`` + ``adapter.safetensors``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from dept_vl.config import RunConfig
from dept_vl.dept.config import DePTConfig
from dept_vl.dept.model import ADAPTER_FILE, CONFIG_FILE, FORMAT_NAME, FORMAT_VERSION, DePTModel, base_model_facts
from dept_vl.io import save_tensors_atomic, write_json_atomic


def prompt_tuning_config(dept: DePTConfig, d_model: int) -> DePTConfig:
    """Vanilla prompt tuning with DePT's parameter budget: rank 0 and m = DePT's parameters / d_model."""
    m = max(1, dept.num_parameters(d_model) // d_model)
    return dataclasses.replace(dept, num_virtual_tokens=m, rank=0)


class PeftMethodModel(nn.Module):
    """Shared body of the reference methods that train base weights (LoRA through peft, full fine-tuning)."""

    method = "base"

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

    def adapter_state_dict(self, keep_vars: bool = False) -> dict[str, torch.Tensor]:
        return {n: (p if keep_vars else p.detach()) for n, p in self.trainable_parameters().items()}

    def load_adapter_state(self, state: dict[str, torch.Tensor], parts: Iterable[str] = ()) -> list[str]:
        own = self.adapter_state_dict(keep_vars=True)
        missing = sorted(set(state) - set(own))
        if missing:
            raise ValueError(f"{self.method} adapter tensors {missing[:3]} have no place in this model")
        with torch.no_grad():
            for name, value in state.items():
                own[name].copy_(value.to(own[name].device, own[name].dtype))
        return list(state)

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_tensors_atomic(directory / ADAPTER_FILE, self.adapter_state_dict(), metadata={"format": FORMAT_NAME})
        write_json_atomic(directory / CONFIG_FILE, {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "method": self.method,
            self.method: dataclasses.asdict(self.settings), "base_model": base_model_facts(self.base_model),
        })
        return directory


class LoRAModel(PeftMethodModel):
    """LoRA on the text model's attention projections, injected by peft (never hand-written)."""

    method = "lora"

    def __init__(self, base_model: nn.Module, settings: Any):
        from peft import LoraConfig, inject_adapter_in_model

        super().__init__(base_model, settings)
        base_model.requires_grad_(False)
        target = getattr(base_model, "text_model", base_model)
        lora = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                          target_modules=list(settings.target_modules))
        inject_adapter_in_model(lora, target)


class FullFineTuneModel(PeftMethodModel):
    """Every weight of the text model (and the visual projection, if any) is trained."""

    method = "full"

    def __init__(self, base_model: nn.Module, settings: Any):
        super().__init__(base_model, settings)
        base_model.requires_grad_(False)
        getattr(base_model, "text_model", base_model).requires_grad_(True)
        if hasattr(base_model, "visual_projection"):
            base_model.visual_projection.requires_grad_(True)


def build_method(config: RunConfig, base_model: nn.Module, tokenizer: Any = None) -> nn.Module:
    """Wrap a frozen base with the method the run config names."""
    d_model = int(base_model.get_input_embeddings().weight.shape[1])
    if config.method == "dept":
        return DePTModel(base_model, config.dept, tokenizer)
    if config.method == "prompt_tuning":
        return DePTModel(base_model, prompt_tuning_config(config.dept, d_model), tokenizer)
    if config.method == "lora":
        return LoRAModel(base_model, config.lora)
    if config.method == "full":
        return FullFineTuneModel(base_model, config.full)
    raise ValueError(f"method={config.method!r} is unknown; choose dept, prompt_tuning, lora or full")


def method_config(config: RunConfig, d_model: int) -> DePTConfig | None:
    """The DePTConfig a run's method trains (None for LoRA and full fine-tuning)."""
    if config.method == "dept":
        return config.dept
    if config.method == "prompt_tuning":
        return prompt_tuning_config(config.dept, d_model)
    return None

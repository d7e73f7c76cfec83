"""LoRA (Hu et al., 2022) on the text model's attention projections, injected by peft (never hand-written).

Saved as peft saves LoRA (keys ``base_model.model.<module>.lora_A.weight`` relative to the text model, and peft's
``LoraConfig``), so ``peft.PeftModel.from_pretrained(text_model, folder)`` reads the folder too.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from torch import nn

from dept_vl.adapter import base_model_facts
from dept_vl.config import LoRAConfig
from dept_vl.methods.base_weights import BaseWeightsMethod, BaseWeightsModel
from dept_vl.methods.registry import register_method

ADAPTER_NAME = "default"  # peft's name of the one injected adapter
PEFT_PREFIX = "base_model.model."


class LoRAModel(BaseWeightsModel):
    method = "lora"

    def __init__(self, base_model: nn.Module, settings: LoRAConfig):
        from peft import LoraConfig, inject_adapter_in_model

        super().__init__(base_model, settings)
        base_model.requires_grad_(False)
        self.target_prefix = "text_model." if hasattr(base_model, "text_model") else ""
        target = getattr(base_model, "text_model", base_model)
        inject_adapter_in_model(LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                                           target_modules=list(settings.target_modules)), target)

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Inside, every injected LoRA layer computes its base layer alone (peft's ``enable_adapters(False)``)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in self.base_model.modules() if isinstance(m, BaseTunerLayer)]
        for layer in layers:
            layer.enable_adapters(False)
        try:
            yield
        finally:
            for layer in layers:
                layer.enable_adapters(True)

    def file_name(self, name: str) -> str:
        return PEFT_PREFIX + name.removeprefix(self.target_prefix).replace(f".{ADAPTER_NAME}.", ".")

    def peft_config(self) -> dict[str, Any]:
        s = self.settings
        return {"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "r": s.r, "lora_alpha": s.alpha, "lora_dropout": s.dropout,
                "target_modules": list(s.target_modules), "bias": "none", "inference_mode": True,
                "base_model_name_or_path": base_model_facts(self.base_model)["name_or_path"] or None}


@register_method
class LoRA(BaseWeightsMethod):
    """LoRA (Hu et al., 2022) through peft on the text model's attention projections (settings: lora.*)."""

    name = "lora"
    label = "lora"
    model_class = LoRAModel
    settings_class = LoRAConfig

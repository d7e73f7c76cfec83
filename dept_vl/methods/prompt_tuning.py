"""Vanilla prompt tuning (Lester et al., 2021): DePT with rank 0, at DePT's parameter budget.

SPoT (Vu, Lester, Constant, Al-Rfou and Cer, "SPoT: Better Frozen Model Adaptation through Soft Prompt Transfer",
ACL 2022: a prompt trained on source tasks initialises the target's prompt) is this method with a source adapter:
``dept-vl adapt method=prompt_tuning adapt.source=<a prompt-tuning adapter>`` (results label ``pt-transfer``).

Saved as peft saves prompt tuning (``prompt_embeddings`` and peft's ``PromptTuningConfig``, one transformer
submodule: the prompt goes in front of the encoder input only), so peft reads the folder too.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from dept_vl.adapter import base_model_facts, write_adapter
from dept_vl.config import RunConfig
from dept_vl.dept.config import DePTConfig
from dept_vl.dept.model import DePTModel
from dept_vl.methods.dept import DePT
from dept_vl.methods.registry import register_method

PEFT_PROMPT = "prompt_embeddings"


def prompt_tuning_config(dept: DePTConfig, d_model: int) -> DePTConfig:
    """Prompt tuning with DePT's parameter budget: rank 0 and m = DePT's parameters // d_model. A config that
    already has rank 0 is taken as it is (its m is the prompt length)."""
    if dept.rank == 0:
        return dept
    m = max(1, dept.num_parameters(d_model) // d_model)
    return dataclasses.replace(dept, num_virtual_tokens=m, rank=0)


class PromptTuningModel(DePTModel):
    """A rank-0 :class:`DePTModel` whose adapter files use peft's prompt-tuning names."""

    method = "prompt_tuning"
    prompt_key = PEFT_PROMPT

    def save_pretrained(self, directory: Any) -> Any:
        facts = base_model_facts(self.base_model)
        peft_config = {
            "peft_type": "PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM", "num_virtual_tokens": self.dept_config.num_virtual_tokens,
            "token_dim": self.d_model, "num_transformer_submodules": 1, "prompt_tuning_init": "RANDOM",
            "base_model_name_or_path": facts["name_or_path"] or None, "inference_mode": True,
        }
        return write_adapter(directory, method=self.method, settings=self.dept_config.to_dict(),
                             tensors=self.adapter_state_dict(), base_model=facts, peft_config=peft_config)


@register_method
class PromptTuning(DePT):
    """Prompt tuning (Lester et al., 2021) with DePT's parameter budget spent on prompt tokens alone (dept.*)."""

    name = "prompt_tuning"
    label = "pt"
    model_class = PromptTuningModel
    transfer_parts = ("prompt", "modules")

    def adapter_config(self, config: RunConfig, base: nn.Module) -> DePTConfig:
        return prompt_tuning_config(config.dept, int(base.get_input_embeddings().weight.shape[1]))

    def for_adapter(self, config: RunConfig, adapter: Any) -> RunConfig:
        new = super().for_adapter(config, adapter)
        return dataclasses.replace(new, dept=dataclasses.replace(new.dept, rank=0))

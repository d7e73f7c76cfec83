"""ADePT (Tang, Hu and Liu, "ADePT: Adaptive Decomposed Prompt Tuning for Parameter-Efficient Fine-tuning", ICLR 2025).

DePT's position-indexed offset ``A @ B`` becomes a feed-forward network shared by every token (the paper's
formula for the updated input embedding):

    x_i' = x_i + ReLU(x_i W1 + b1) W2 + b2        W1: d x r, b1: r, W2: r x d, b2: d

applied to each text embedding x_i, so the offset depends on the token, not on its position, and there is no
``max_length``. The soft prompt (m x d) stays in front of the encoder input and gets no offset. Trainable:
``m*d + r*(2d + 1) + d`` (T5-base, m=60, r=19: 76,051, inside prompt tuning's 100-token budget of 76,800).

Settings (``dept`` section): ``num_virtual_tokens`` = m, ``rank`` = r (>= 1), ``lr_prompt`` (the prompt),
``lr_lowrank`` (W1, b1, W2, b2), ``weight_decay``, ``init``/``init_text`` (the prompt), ``seed``;
``max_length`` and ``alpha`` are not used (the public code computes ``alpha / sqrt(r)`` but never applies it).

Initialisation, as the public code (HungerPWAY/ADePT, ``PromptEmbeddingLoRAX``) does it: W1 kaiming-uniform with
a = sqrt(5) on its d x r tensor (bound 1/sqrt(r)), b1 = 0, W2 = 0, b2 = 0, so the offset is zero at step 0.
Left out: that code's dropout (p = 0.1, hard-coded) on ``x W1 + b1`` in training; here the offset is
deterministic, as DePT's is. Its two AdamW groups (prompt; W1, b1, W2, b2) are kept.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dept_vl.config import RunConfig
from dept_vl.dept.config import DePTConfig
from dept_vl.methods.encoder_input import EncoderInputMethod, EncoderInputModel
from dept_vl.methods.registry import register_method


def adept_parameters(m: int, r: int, d: int) -> int:
    """Trainable parameters of ADePT: the prompt and the token-shared network."""
    return m * d + r * (2 * d + 1) + d


class ADePTModel(EncoderInputModel):
    """A frozen encoder-decoder reading ``[prompt (m)] [x + ReLU(x W1 + b1) W2 + b2 (L)]``."""

    method = "adept"
    tensor_parts = {"prompt": "prompt", "offset_W1": "lowrank", "offset_b1": "lowrank", "offset_W2": "lowrank",
                    "offset_b2": "lowrank"}

    def __init__(self, base_model: nn.Module, config: DePTConfig, settings: Any = None, tokenizer: Any = None, *,
                 initialize: bool = True, stored: dict[str, torch.Tensor] | None = None):
        super().__init__(base_model, config)
        m, r, d = config.num_virtual_tokens, config.rank, self.d_model
        if r < 1:
            raise ValueError(f"ADePT needs dept.rank >= 1 (the width r of its token-shared network), got {r}; "
                             f"rank 0 is prompt tuning: use method=prompt_tuning")
        self.prompt = self.parameter(self.initial_prompt(tokenizer) if initialize else torch.zeros(m, d)) if m > 0 else None
        w1 = torch.empty(d, r)
        nn.init.kaiming_uniform_(w1, a=math.sqrt(5), generator=self.generator)
        self.offset_W1 = self.parameter(w1)
        self.offset_b1 = self.parameter(torch.zeros(r))
        self.offset_W2 = self.parameter(torch.zeros(r, d))
        self.offset_b2 = self.parameter(torch.zeros(d))

    def token_offset(self, embeds: torch.Tensor) -> torch.Tensor:
        """``ReLU(x W1 + b1) W2 + b2`` for every embedding x, in float32."""
        hidden = torch.relu(embeds.float() @ self.offset_W1 + self.offset_b1)
        return hidden @ self.offset_W2 + self.offset_b2

    def prepare_inputs(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                       inputs_embeds: torch.Tensor | None = None, **route: Any) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = self.text_embeddings(input_ids, attention_mask, inputs_embeds)
        embeds = (embeds.float() + self.token_offset(embeds)).to(embeds.dtype)
        return self.prepend(self.prompt, embeds, mask) if self.prompt is not None else (embeds, mask)


@register_method
class ADePT(EncoderInputMethod):
    """ADePT (Tang et al., ICLR 2025): m prompt tokens and a token-shared offset network of width r (settings: dept.*)."""

    name = "adept"
    label = "adept"
    model_class = ADePTModel

    def check(self, config: RunConfig) -> None:
        super().check(config)
        if config.dept.rank < 1:
            raise ValueError(f"dept.rank={config.dept.rank}: ADePT needs a network width r >= 1; rank 0 is prompt tuning "
                             f"(method=prompt_tuning)")

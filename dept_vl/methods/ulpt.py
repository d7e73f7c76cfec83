"""ULPT (Wu, Hao and Mou, "ULPT: Prompt Tuning with Ultra Low-Dimensional Optimization", EACL 2026).

Each of the n prompt vectors is trained in a very low dimension r and mapped to the model's width d by a frozen
random up-projection P (r x d) with a learned scale s and shift b (the paper's up-projected prompt):

    e_i = s * (z_i P) + b        z_i in R^r (trained), P frozen, s, b in R^d (trained)

The prompt ``[e_1 .. e_n]`` goes in front of the encoder input, as prompt tuning's does. Trainable: ``n*r + 2d``
(T5-base, n=100, r=64: 7,936). P is drawn once from ``dept.seed`` and stored with the adapter (tensor
``projection``), so a saved adapter needs no random generator to be read back.

Settings (``dept`` section): ``num_virtual_tokens`` = n, ``rank`` = r (>= 1), ``lr_prompt`` (z, s and b: the
public code trains them with one learning rate), ``weight_decay``, ``seed`` (z and P); ``lr_lowrank``,
``max_length``, ``alpha`` and ``init`` are not used. ``ulpt.projection``: how P is drawn.

Initialisation, checked against the public code (MANGA-UOFA/ULPT, ``PromptEmbeddingLodim``): z ~ N(0, 1) (its
``nn.Embedding(n, r)`` default; a text init is not applied there), s = 1, b = 0. Its P is Xavier-uniform,
U(+-sqrt(6 / (r + d))), drawn from the global random state (saved beside the run), one P for all tokens
(``num_random_proj=1``). ``ulpt.projection=normal`` (the default, a Gaussian) draws N(0, 2 / (r + d)),
the same variance; ``uniform`` draws the public code's distribution.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dept_vl.config import RunConfig, ULPTConfig
from dept_vl.dept.config import DePTConfig
from dept_vl.methods.encoder_input import EncoderInputMethod, EncoderInputModel
from dept_vl.methods.registry import register_method


def ulpt_parameters(n: int, r: int, d: int) -> int:
    """Trainable parameters of ULPT: the low-dimensional prompt, the scale and the shift."""
    return n * r + 2 * d


def up_projection(r: int, d: int, kind: str, generator: torch.Generator) -> torch.Tensor:
    """The frozen r x d up-projection: ``normal`` N(0, 2/(r+d)) or ``uniform`` U(+-sqrt(6/(r+d)))."""
    if kind == "normal":
        return torch.randn(r, d, generator=generator) * math.sqrt(2.0 / (r + d))
    if kind == "uniform":
        limit = math.sqrt(6.0 / (r + d))
        return torch.rand(r, d, generator=generator) * (2 * limit) - limit
    raise ValueError(f"ulpt.projection={kind!r} is unknown; choose normal or uniform")


class ULPTModel(EncoderInputModel):
    """A frozen encoder-decoder reading ``[s * (z P) + b (n)] [text (L)]``."""

    method = "ulpt"
    tensor_parts = {"prompt_low": "prompt", "projection": "prompt", "scale": "prompt", "shift": "prompt"}
    settings_class = ULPTConfig
    group_parts = {"prompt": "lr_prompt"}

    def __init__(self, base_model: nn.Module, config: DePTConfig, settings: ULPTConfig | None = None, tokenizer: Any = None, *,
                 initialize: bool = True, stored: dict[str, torch.Tensor] | None = None):
        settings = settings or ULPTConfig()
        super().__init__(base_model, config, settings)
        n, r, d = config.num_virtual_tokens, config.rank, self.d_model
        if n < 1 or r < 1:
            raise ValueError(f"ULPT needs dept.num_virtual_tokens >= 1 and dept.rank >= 1 (n prompt vectors of dimension r), "
                             f"got n={n}, r={r}")
        self.prompt_low = self.parameter(torch.randn(n, r, generator=self.generator))
        self.register_buffer("projection", up_projection(r, d, settings.projection, self.generator).to(self.device_))
        self.scale = self.parameter(torch.ones(d))
        self.shift = self.parameter(torch.zeros(d))

    def prompt_embeddings(self) -> torch.Tensor:
        """``e_i = s * (z_i P) + b`` for every prompt vector, (n, d), float32."""
        return self.scale * (self.prompt_low @ self.projection) + self.shift

    def prepare_inputs(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                       inputs_embeds: torch.Tensor | None = None, **route: Any) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = self.text_embeddings(input_ids, attention_mask, inputs_embeds)
        return self.prepend(self.prompt_embeddings(), embeds, mask)


@register_method
class ULPT(EncoderInputMethod):
    """ULPT (Wu et al., EACL 2026): n prompt vectors of dimension r up-projected by a frozen random P (settings: dept.*, ulpt.*)."""

    name = "ulpt"
    label = "ulpt"
    model_class = ULPTModel
    section = "ulpt"
    transfer_parts = ("prompt",)

    def check(self, config: RunConfig) -> None:
        super().check(config)
        if config.dept.rank < 1:
            raise ValueError(f"dept.rank={config.dept.rank}: ULPT trains each prompt vector in dimension r = dept.rank >= 1")

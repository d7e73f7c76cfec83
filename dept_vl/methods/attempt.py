"""ATTEMPT (Asai, Salehi, Peters and Hajishirzi, "ATTEMPT: Parameter-Efficient Multi-task Tuning via Attentional
Mixtures of Soft Prompts", EMNLP 2022).

Frozen source prompts P_1..P_t (m x d each, trained on source tasks) and a trainable target prompt P_0 are mixed
per input by an attention over prompts (the paper's instance-wise prompt):

    x   = max-pool over the input's text embeddings                      (d)
    h   = LayerNorm(SiLU(x W_down) W_up)            W_down: d x r, W_up: r x d
    a_j = softmax_j(max-pool(P_j) . h / T)          j = 0..t
    P   = P_0 + sum_j a_j P_j                        (m x d, in front of the encoder input)

Trainable: P_0, W_down, W_up: ``m*d + 2*d*r`` (T5-base, m=100, r=100: 230,400; the source prompts are stored
with the adapter, frozen, and not counted).

Settings: ``attempt.sources`` (folders of prompt-tuning or DePT adapters, whose prompts are P_1..P_t, or an
ATTEMPT adapter, whose source prompts are taken), ``attempt.temperature`` (T); ``dept`` section: ``rank`` = r,
``lr_prompt`` (P_0), ``lr_lowrank`` (W_down, W_up), ``weight_decay``, ``seed``. m is the sources' prompt length
(``dept.num_virtual_tokens`` is set to it); ``max_length``, ``alpha`` and ``init`` are not used.

Checked against the public code (AkariAsai/ATTEMPT, ``T5Stack`` with ``attn_method="sub"``): T = 2087 in every
released config (d * e = 2087.6 at d = 768, which is what its learned temperature starts at): the default here
is d * e; W_down, W_up are bias-free ``nn.Linear`` layers with torch's default init, U(+-1/sqrt(fan_in)); its
layer norm is not among the trained parameters (weight 1, bias 0), so here it has none; P_0 starts as a copy of
the first source prompt (its single-task training). Differences: the max-pool skips padding (that code pools
every position, padding included, which makes a row's scores depend on its batch); its separate learning rate
for the attention (``attn_learning_rate``) never takes effect there (the parameter names it compares with lack
``.weight``), while here W_down and W_up train at ``dept.lr_lowrank``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dept_vl.adapter import check_base_model, read_adapter
from dept_vl.config import AttemptConfig, RunConfig
from dept_vl.dept.config import DePTConfig
from dept_vl.methods.encoder_input import EncoderInputMethod, EncoderInputModel
from dept_vl.methods.registry import register_method

PROMPT_NAMES = ("prompt", "prompt_embeddings")  # DePT's and prompt tuning's (peft's) names of the prompt


def attempt_parameters(m: int, r: int, d: int) -> int:
    """Trainable parameters of ATTEMPT: the target prompt and the attention's two projections."""
    return m * d + 2 * d * r


def read_source_prompts(folders: list[str], base: nn.Module) -> torch.Tensor:
    """The source prompts (t x m x d) of ``folders``: each a prompt-tuning or DePT adapter (its prompt) or an ATTEMPT
    adapter (its source prompts), trained on ``base``'s width."""
    prompts: list[torch.Tensor] = []
    for folder in folders:
        adapter = read_adapter(folder)
        check_base_model(adapter.base_model, base, adapter.path)
        if adapter.method == "attempt":
            prompts += list(adapter.tensors["source_prompts"].float())
            continue
        found = [adapter.tensors[n] for n in PROMPT_NAMES if n in adapter.tensors]
        if not found:
            raise ValueError(f"attempt.sources: {folder} is a {adapter.method!r} adapter without a prompt tensor; list "
                             f"prompt-tuning, DePT or ATTEMPT adapters")
        prompts.append(found[0].float())
    lengths = {tuple(p.shape) for p in prompts}
    if len(lengths) != 1:
        raise ValueError(f"attempt.sources have prompts of different shapes {sorted(lengths)} ({', '.join(folders)}); "
                         f"ATTEMPT mixes prompts of one length m: train the sources with one dept.num_virtual_tokens")
    return torch.stack(prompts)


class ATTEMPTModel(EncoderInputModel):
    """A frozen encoder-decoder reading ``[P_0 + sum_j a_j(x) P_j (m)] [text (L)]``."""

    method = "attempt"
    tensor_parts = {"prompt": "prompt", "source_prompts": "prompt", "attn_down": "lowrank", "attn_up": "lowrank"}
    settings_class = AttemptConfig

    def __init__(self, base_model: nn.Module, config: DePTConfig, settings: AttemptConfig | None = None, tokenizer: Any = None,
                 *, initialize: bool = True, stored: dict[str, torch.Tensor] | None = None):
        settings = settings or AttemptConfig()
        if stored is not None and "source_prompts" in stored:
            sources = torch.zeros_like(stored["source_prompts"], dtype=torch.float32)
        elif settings.sources:
            sources = read_source_prompts(settings.sources, base_model)
        else:
            raise ValueError("ATTEMPT needs source prompts: set attempt.sources=[<folder>, ...] (prompt-tuning, DePT or "
                             "ATTEMPT adapters trained on source tasks)")
        config = dataclasses.replace(config, num_virtual_tokens=int(sources.shape[1]))
        super().__init__(base_model, config, settings)
        r, d = config.rank, self.d_model
        if r < 1:
            raise ValueError(f"ATTEMPT needs dept.rank >= 1 (the width r of its attention network), got {r}")
        if sources.shape[2] != d:
            raise ValueError(f"attempt.sources have prompts of width {sources.shape[2]}, the base model's is {d}")
        self.register_buffer("source_prompts", sources.to(self.device_))
        self.prompt = self.parameter(sources[0].clone())  # the public code starts P_0 from the first source prompt
        g = self.generator
        self.attn_down = self.parameter((torch.rand(d, r, generator=g) * 2 - 1) / math.sqrt(d))  # nn.Linear(d, r)'s init
        self.attn_up = self.parameter((torch.rand(r, d, generator=g) * 2 - 1) / math.sqrt(r))  # nn.Linear(r, d)'s init

    @property
    def temperature(self) -> float:
        return self.settings.temperature or self.d_model * math.e

    def mixing_weights(self, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """a (B, t+1): the attention of each input over ``[P_1 .. P_t, P_0]``."""
        pooled = embeds.float().masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(dim=1)
        h = F.layer_norm(F.silu(pooled @ self.attn_down) @ self.attn_up, (self.d_model,))
        keys = self.all_prompts().amax(dim=1)  # (t+1, d)
        return torch.softmax(h @ keys.T / self.temperature, dim=-1)

    def all_prompts(self) -> torch.Tensor:
        return torch.cat([self.source_prompts, self.prompt.unsqueeze(0)])

    def prepare_inputs(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                       inputs_embeds: torch.Tensor | None = None, **route: Any) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = self.text_embeddings(input_ids, attention_mask, inputs_embeds)
        weights = self.mixing_weights(embeds, mask)
        prompt = self.prompt + torch.einsum("bj,jmd->bmd", weights, self.all_prompts())
        return self.prepend(prompt, embeds, mask)


@register_method
class ATTEMPT(EncoderInputMethod):
    """ATTEMPT (Asai et al., EMNLP 2022): a target prompt plus an input-dependent mix of frozen source prompts (attempt.*)."""

    name = "attempt"
    label = "attempt"
    model_class = ATTEMPTModel
    section = "attempt"

    def check(self, config: RunConfig) -> None:
        super().check(config)
        from_attempt_adapter = config.adapt.source not in (None, "", "none", "None")  # a target run takes its sources
        if not config.attempt.sources and not from_attempt_adapter:
            raise ValueError("attempt.sources is empty: list the folders of the source prompts (prompt-tuning, DePT or "
                             "ATTEMPT adapters), e.g. attempt.sources=[runs/pt_color/adapter,runs/pt_exist/adapter]")
        if config.dept.rank < 1:
            raise ValueError(f"dept.rank={config.dept.rank}: ATTEMPT's attention network needs a width r = dept.rank >= 1")

    def with_source(self, config: RunConfig, source: Any) -> RunConfig:
        """A target run from an ATTEMPT adapter: its source prompts are the sources, its P_0 and attention transfer."""
        new = super().with_source(config, source)
        return dataclasses.replace(new, attempt=dataclasses.replace(new.attempt, sources=[str(source.path)]))

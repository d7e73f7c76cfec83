"""MPT (Wang, Panda, Karlinsky, Feris, Sun and Kim, "Multitask Prompt Tuning Enables Parameter-Efficient Transfer
Learning", ICLR 2023): a prompt shared by every task times each task's low-rank factors (the paper's
decomposition of a task prompt, rank one there):

    P_k = P* o (u_k v_k)        P*: m x d (shared), u_k: m x q, v_k: q x d (task k's), o: elementwise

Source stage (``dept-vl pretrain``, one (u_k, v_k) per source task in ``mpt.tasks``, default ``data.tasks``):
each batch uses its own task's factors. Transfer (``dept-vl adapt`` from an MPT adapter): the target starts
from the shared prompt P* with its own factors, initialised as the mean of the source tasks' factors (peft's
``AVERAGE_SOURCE_TASKS``), and trains both. The paper's distillation of single-task teacher prompts into P*
is left out (peft lacks it too). Trainable: ``m*d + T*q*(m + d)`` for T tasks (T5-base, one target task,
m=98, q=1: 76,130, inside prompt tuning's 100-token budget of 76,800).

Settings (``dept`` section): ``num_virtual_tokens`` = m, ``lr_prompt`` (P*), ``lr_lowrank`` (the factors),
``weight_decay``, ``init``/``init_text`` (P*), ``seed``; ``mpt.rank`` = q, ``mpt.tasks``; ``dept.rank``,
``max_length`` and ``alpha`` are not used.

peft's ``MultitaskPromptTuningConfig`` fits the adapter format: the folder carries its config and tensor names
(``prompt_embeddings``, ``prefix_task_cols`` = u, ``prefix_task_rows`` = v), so ``peft.PeftModel`` reads it and
computes the same outputs with ``task_ids`` (tested). peft's module is not used for training: it draws the
factors from the global random state as N(0, 0.02^2), so its task prompt starts at about 1e-3 of P*; here
u = 1 and v = 1/q, so P_k = P* at step 0 (for q > 1, N(0, 0.02^2) noise is added to u to tell the q
components apart), and a model without a task's factors (evaluated on a new task) uses the mean factors.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from dept_vl.adapter import base_model_facts, write_adapter
from dept_vl.config import MPTConfig, RunConfig
from dept_vl.dept.config import DePTConfig
from dept_vl.methods.encoder_input import EncoderInputMethod, EncoderInputModel
from dept_vl.methods.registry import register_method

FACTORS = ("prefix_task_cols", "prefix_task_rows")


def mpt_parameters(m: int, q: int, d: int, tasks: int = 1) -> int:
    """Trainable parameters of MPT: the shared prompt and every task's factors."""
    return m * d + tasks * q * (m + d)


class MPTModel(EncoderInputModel):
    """A frozen encoder-decoder reading ``[P* o (u_k v_k) (m)] [text (L)]``, k the row's task."""

    method = "mpt"
    tensor_parts = {"prompt_embeddings": "prompt", "prefix_task_cols": "lowrank", "prefix_task_rows": "lowrank"}
    settings_class = MPTConfig

    def __init__(self, base_model: nn.Module, config: DePTConfig, settings: MPTConfig | None = None, tokenizer: Any = None, *,
                 initialize: bool = True, stored: dict[str, torch.Tensor] | None = None):
        settings = settings or MPTConfig()
        super().__init__(base_model, config, settings)
        m, q, d, tasks = config.num_virtual_tokens, settings.rank, self.d_model, len(settings.tasks)
        if m < 1 or tasks < 1:
            raise ValueError(f"MPT needs dept.num_virtual_tokens >= 1 and at least one task in mpt.tasks, got m={m}, "
                             f"mpt.tasks={settings.tasks}")
        self.task_names = tuple(settings.tasks)
        self.prompt_embeddings = self.parameter(self.initial_prompt(tokenizer) if initialize else torch.zeros(m, d))
        cols = torch.ones(tasks, m, q)
        if q > 1:
            cols += 0.02 * torch.randn(tasks, m, q, generator=self.generator)
        self.prefix_task_cols = self.parameter(cols)
        self.prefix_task_rows = self.parameter(torch.full((tasks, q, d), 1.0 / q))
        self._active: int | None = None  # the task of evaluation batches (task_scope); None: the mean factors

    # ----------------------------------------------------------------- tasks
    def task_index(self, task: str) -> int:
        if task not in self.task_names:
            raise ValueError(f"this MPT model has factors for the tasks {list(self.task_names)}, not for {task!r}; a run on "
                             f"{task} from scratch needs mpt.tasks=[{task}] (a run from an MPT source adapter gets it)")
        return self.task_names.index(task)

    def task_inputs(self, task: str, rows: int) -> dict[str, torch.Tensor]:
        """What a training batch of ``task`` carries for this model: each row's task index (``task_ids``)."""
        return {"task_ids": torch.full((rows,), self.task_index(task), dtype=torch.long)}

    @contextmanager
    def task_scope(self, task: str) -> Iterator[None]:
        """Inside, batches without ``task_ids`` use ``task``'s factors (the mean factors for a task it has none for)."""
        previous, self._active = self._active, self.task_names.index(task) if task in self.task_names else None
        try:
            yield
        finally:
            self._active = previous

    def route_keys(self) -> tuple[str, ...]:
        return ("task_ids",)

    # ---------------------------------------------------------------- forward
    def task_prompts(self, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``P* o (u_k v_k)`` for each row (B, m, d), or one prompt (m, d) when every row has the same task."""
        cols, rows_ = self.prefix_task_cols, self.prefix_task_rows
        if task_ids is not None:
            return self.prompt_embeddings * torch.bmm(cols[task_ids], rows_[task_ids])
        if self._active is not None or len(self.task_names) == 1:
            k = self._active or 0
            return self.prompt_embeddings * (cols[k] @ rows_[k])
        return self.prompt_embeddings * (cols.mean(0) @ rows_.mean(0))

    def prepare_inputs(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                       inputs_embeds: torch.Tensor | None = None, task_ids: torch.Tensor | None = None,
                       **route: Any) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, mask = self.text_embeddings(input_ids, attention_mask, inputs_embeds)
        return self.prepend(self.task_prompts(task_ids), embeds, mask)

    # ------------------------------------------------------------ checkpoints
    def transfer_value(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """A source's factors for several tasks become one target's as their mean (peft's AVERAGE_SOURCE_TASKS)."""
        if name in FACTORS and value.shape[0] != len(self.task_names) and len(self.task_names) == 1:
            return value.float().mean(0, keepdim=True)
        return value

    def save_pretrained(self, directory: str | Path) -> Path:
        """The adapter folder, with peft's ``MultitaskPromptTuningConfig`` and tensor names."""
        facts = base_model_facts(self.base_model)
        peft_config = {
            "peft_type": "MULTITASK_PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM", "num_virtual_tokens": self.dept_config.num_virtual_tokens,
            "token_dim": self.d_model, "num_transformer_submodules": 1, "prompt_tuning_init": "RANDOM",
            "num_tasks": len(self.task_names), "num_ranks": self.settings.rank,
            "base_model_name_or_path": facts["name_or_path"] or None, "inference_mode": True,
        }
        return write_adapter(directory, method=self.method, settings=self.adapter_settings(), tensors=self.adapter_state_dict(),
                             base_model=facts, peft_config=peft_config)


@register_method
class MPT(EncoderInputMethod):
    """MPT (Wang et al., ICLR 2023): a shared prompt times each task's rank-q factors (settings: dept.*, mpt.*)."""

    name = "mpt"
    label = "mpt"
    model_class = MPTModel
    section = "mpt"

    def settings(self, config: RunConfig) -> MPTConfig:
        """``mpt`` with its tasks resolved: ``mpt.tasks``, else ``data.tasks``."""
        return dataclasses.replace(config.mpt, tasks=list(config.mpt.tasks or config.data.tasks))

    def with_source(self, config: RunConfig, source: Any) -> RunConfig:
        """A target run from an MPT adapter: its m and q, one task (``adapt.task``) with the mean source factors."""
        new = super().with_source(config, source)
        return dataclasses.replace(new, mpt=dataclasses.replace(new.mpt, tasks=[config.adapt.task]))

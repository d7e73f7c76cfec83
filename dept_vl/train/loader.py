"""From examples to the loop's batches: the batch plan (mixture or k-shot), collation, frozen image features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from dept_vl.config import DataConfig, TrainConfig
from dept_vl.data.batching import Collator, mixture_rates, plan_batches
from dept_vl.data.example import Example


@dataclass
class Batch:
    """One micro-batch as the loop receives it: the task it comes from and its tensors."""

    task: str
    tensors: dict[str, torch.Tensor]


class TrainBatches(Sequence[Batch]):
    """The run's whole batch plan, collated on access: item ``i`` is the ``i``-th micro-batch of this process.

    Args:
        plan: per micro-batch, ``(task, [example indices])``, already this process's share.
        examples: each task's training examples.
        collate: turns a list of examples into tensors.
    """

    def __init__(self, plan: list[tuple[str, list[int]]], examples: dict[str, Sequence[Example]], collate: Collator):
        self.plan, self.examples, self.collate = plan, examples, collate

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> Batch:  # type: ignore[override]
        task, indices = self.plan[index]
        return Batch(task, self.collate([self.examples[task][i] for i in indices]))


def word_count(example: Example) -> int:
    """A cheap proxy of an input's token count, for length-grouped batches."""
    return len(example.input_text.split())


def mixture_plan(train_sets: dict[str, Sequence[Example]], data: DataConfig, train: TrainConfig,
                 rank: int = 0, world: int = 1) -> tuple[list[tuple[str, list[int]]], dict[str, float]]:
    """A multi-task plan: each batch from one task, drawn at the mixture's rates; every process takes every
    ``world``-th row of each global batch of ``train.batch_size * world``. Returns the plan and the rates."""
    rates = mixture_rates({n: len(s) for n, s in train_sets.items()}, data.mixing, data.mixing_cap, data.temperature)
    pools = {n: [word_count(e) for e in s] for n, s in train_sets.items()}
    plan = plan_batches(pools, rates, train.max_steps * train.grad_accum, train.batch_size * world, train.seed, data.length_grouping)
    return [(b[0][0], [i for _, i in b[rank::world]]) for b in plan], rates


def single_task_plan(examples: Sequence[Example], train: TrainConfig, seed: int, task: str = "train") -> list[tuple[str, list[int]]]:
    """A k-shot plan: shuffled epochs of ``examples`` in batches of ``min(batch_size, len(examples))``."""
    batch_size = min(train.batch_size, len(examples))
    plan = plan_batches({task: [word_count(e) for e in examples]}, {task: 1.0}, train.max_steps * train.grad_accum,
                        batch_size, seed, False)
    return [(task, [i for _, i in b]) for b in plan]


def image_features(model: Any, example_sets: Sequence[Sequence[Example]], batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Frozen image-encoder outputs by image id for every image in ``example_sets`` (each computed once)."""
    from dept_vl.models import VisionFeatureCache, load_image

    cache = VisionFeatureCache()
    unique: dict[str, Any] = {}
    for examples in example_sets:
        for e in examples:
            if e.has_image and e.image_id not in unique:
                unique[e.image_id] = e.image
    ids = list(unique)
    by_id: dict[str, torch.Tensor] = {}
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        images = [unique[i] if hasattr(unique[i], "convert") else load_image(unique[i]) for i in chunk]
        by_id.update(zip(chunk, cache.get_or_compute(chunk, images, model).cpu()))
    return by_id


def make_collator(model: Any, data: DataConfig, max_input_length: int, features: dict[str, torch.Tensor] | None = None) -> Collator:
    """The collator of a run: the model's tokenizer and image transform, inputs cut at ``max_input_length``."""
    from dept_vl.models import load_image

    return Collator(
        tokenizer=model.tokenizer,
        max_input_length=max_input_length,
        max_target_length=data.max_target_length,
        image_transform=getattr(model, "image_transform", None),
        image_features=features,
        load_image=lambda image: image if hasattr(image, "convert") else load_image(image),
    )

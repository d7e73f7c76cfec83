"""From examples to the loop's batches: the batch plan (mixture or k-shot), collation, frozen image features
(computed once into a feature store, shared on disk by every run and process)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from dept_vl.config import DataConfig, TrainConfig
from dept_vl.data.batching import Collator, image_ids, image_sources, mixture_rates, plan_batches
from dept_vl.data.example import Example

if TYPE_CHECKING:
    from dept_vl.models.feature_store import FeatureStore


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


def images_by_id(example_sets: Sequence[Sequence[Example]]) -> dict[str, Any]:
    """Every image of ``example_sets`` by image id (a multi-image example's images each under its own id)."""
    unique: dict[str, Any] = {}
    for examples in example_sets:
        for e in examples:
            for image_id, source in zip(image_ids(e), image_sources(e)):
                if image_id is None:
                    raise ValueError(f"example {e.id!r} has an image but no image_id; stored features are looked up by id")
                unique.setdefault(image_id, source)
    return unique


def feature_folder(data: DataConfig, generated_only: bool) -> Path | None:
    """Where ``data.feature_dir`` keeps features: ``auto`` is the machine's shared folder, except when every image
    of the run is generated in memory (the synthetic world: kept in memory); null is in memory."""
    from dept_vl.models.feature_store import default_feature_dir

    if data.feature_dir == "auto":
        return None if generated_only else default_feature_dir()
    return Path(data.feature_dir).expanduser() if data.feature_dir else None


def image_features(model: Any, example_sets: Sequence[Sequence[Example]], data: DataConfig | None = None, *,
                   directory: str | Path | None = None, num_workers: int = 0, batch_size: int = 128, rank: int = 0,
                   world: int = 1, show_progress: bool = False) -> FeatureStore | None:
    """The frozen image encoder's features of every image in ``example_sets``, computed where the store lacks them.

    With a ``directory``, the store is shared by every run and process on the machine: the ``world`` processes
    of a run split the missing images (see :func:`~dept_vl.models.feature_extraction.share`) and each reads
    all. Images are decoded by ``num_workers`` worker processes. The returned store is read lazily by id
    (memory-mapped shards); without a directory it holds the features in memory. None when no example has an image.
    """
    from dept_vl.models.feature_cache import computed_dtype
    from dept_vl.models.feature_extraction import extract_features
    from dept_vl.models.feature_store import FeatureStore, resolve_dtype

    images = images_by_id(example_sets)
    if not images:
        return None
    dtype = resolve_dtype(data.feature_dtype if data is not None else "auto", computed_dtype(model))
    store = FeatureStore(directory, model.feature_key, dtype)
    extract_features(store, model, images, rank=rank, world=world, num_workers=num_workers, batch_size=batch_size,
                     show_progress=show_progress)
    return store


def make_collator(model: Any, data: DataConfig, max_input_length: int, features: Mapping[str, torch.Tensor] | None = None) -> Collator:
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

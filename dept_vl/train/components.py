"""Components the recipes wire together: device and precision, the base model, task data, features, collation."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from dept_vl.config import DataConfig, ModelConfig, RunConfig
from dept_vl.data.batching import Collator
from dept_vl.data.example import Example

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on a GPU and float32 on the CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"model.dtype={name!r} is unknown; choose auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def load_base_model(cfg: ModelConfig, device: torch.device, method: str = "dept", seed: int = 0) -> torch.nn.Module:
    """The frozen backbone: a shipped/pretrained backbone folder, or a preset built by name.

    Seeded first, so that a preset with random weights (offline tests) is the same model in every
    process and in every recipe of a run (pretrain, adapt, evaluate)."""
    from dept_vl.models import build_vl_model
    from dept_vl.models.backbone import load_backbone

    seed_everything(seed)
    model = load_backbone(cfg.backbone) if cfg.backbone else build_vl_model(cfg.preset)
    dtype = resolve_dtype(cfg.dtype, device) if method in ("dept", "prompt_tuning", "lora") else torch.float32
    return model.to(device=device, dtype=dtype)


def load_tasks(names: Sequence[str]) -> dict[str, Any]:
    """Look every task up before anything is loaded or trained (unknown names fail here)."""
    from dept_vl.data.registry import get_task

    return {name: get_task(name) for name in names}


def load_split(task: Any, split: str, data: DataConfig, size: int | None = None, seed: int = 0) -> list[Example]:
    """One split of a task in the run's format, cut to ``size`` examples (a fixed random subset)."""
    fmt = data.format if data.format in task.formats or data.format == "default" else "default"
    examples = task.load(split, data_dir=data.data_dir, fmt=fmt, **_size_option(task, split, size))
    if size is not None and len(examples) > size:
        examples = random.Random(f"{task.name}/{split}").sample(examples, size)
    return examples


def _size_option(task: Any, split: str, size: int | None) -> dict[str, Any]:
    """Generated tasks (the synthetic world) make only as many examples as asked for."""
    if size is None or task.family != "shapes":
        return {}
    return {"size": size}


@dataclass
class Features:
    """Frozen image-encoder outputs by image id, computed once per run (the vision feature cache)."""

    by_id: dict[str, torch.Tensor]

    @classmethod
    def compute(cls, model: Any, example_sets: Sequence[Sequence[Example]], batch_size: int = 256) -> "Features":
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
            images = [load_image(unique[i]) if not hasattr(unique[i], "convert") else unique[i] for i in chunk]
            feats = cache.get_or_compute(chunk, images, model).cpu()
            by_id.update(zip(chunk, feats))
        return cls(by_id)


def make_collator(model: Any, data: DataConfig, max_length: int, features: Features | None = None) -> Collator:
    from dept_vl.models import load_image

    return Collator(
        tokenizer=model.tokenizer,
        max_input_length=data.max_input_length or max_length,
        max_target_length=data.max_target_length,
        image_transform=getattr(model, "image_transform", None),
        image_features=features.by_id if features is not None else None,
        load_image=lambda image: image if hasattr(image, "convert") else load_image(image),
    )


def generation_length(task: Any, config: RunConfig) -> int:
    """New tokens to generate: captions get the target length, answers and labels ``eval.max_new_tokens``."""
    if task.kind in ("caption", "generation"):
        return max(config.eval.max_new_tokens, config.data.max_target_length)
    return config.eval.max_new_tokens


def text_length(example: Example) -> int:
    """A cheap proxy of the token count, for length-grouped batches."""
    return len(example.input_text.split())


def max_text_length(config: RunConfig) -> int:
    return config.dept.max_length

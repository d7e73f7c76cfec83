"""The synthetic shapes world: 4 source and 6 target tasks, formats "shifted" (default) and "plain".
Generated offline and deterministically; no data_dir (see docs/synthetic_world.md)."""

from typing import Any

from dept_vl.data.example import Example
from dept_vl.data.registry import register_task
from dept_vl.data.shapes.builders import (
    SPECS, build_examples, make_classification_scorer, score_caption, score_exact, score_regression,
)
from dept_vl.data.task import Task


def _register(name: str) -> None:
    spec = SPECS[name]

    def loader(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
        if data_dir is not None:
            raise ValueError(f"{name} is generated, not read: drop data_dir (got {data_dir!r})")
        return build_examples(name, split, fmt, **options)

    if spec.kind == "vqa":
        scorer, metric, scale = score_exact, "accuracy", "0..1"
    elif spec.kind == "caption":
        scorer, metric, scale = score_caption, "cider", "CIDEr-D ~0..10"
    elif spec.kind == "classification":
        scorer, metric, scale = make_classification_scorer(spec.label_words), "accuracy", "0..1"
    else:
        scorer, metric, scale = score_regression, "mean(pearson,spearmanr)", "-1..1"
    register_task(Task(
        name=name, kind=spec.kind, family="shapes", role=spec.role, has_images=spec.has_images,
        source="synthetic (generated offline)", headline_metric=metric, scale=scale,
        loader=loader, scorer=scorer,
        label_words=list(spec.label_words) if spec.label_words else None,
        balance_field="label" if spec.kind == "classification" else None,
        formats=("shifted", "plain"), description=spec.description,
    ))


for _name in SPECS:
    _register(_name)

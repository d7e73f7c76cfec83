"""The synthetic shapes world: 4 source and 6 target tasks, formats "shifted" (default) and "plain".
Generated offline and deterministically; no data_dir (see docs/synthetic_world.md)."""

import functools
from collections.abc import Callable
from typing import Any

from dept_vl.data.example import Example
from dept_vl.data.registry import register_task
from dept_vl.data.shapes.builders import SPECS, build_examples
from dept_vl.data.task import Task
from dept_vl.metrics.glue import classification_metrics, regression_metrics
from dept_vl.task_defs._scorers import score_captions, score_exact_match

# Captions: BLEU and CIDEr-D with no METEOR (evaluation stays fast), plus the exact-match rate.
# the synthetic world's captions are plain words, commas and periods, which the Python port of the PTB
# tokenizer splits exactly as the Java one (tests/test_metrics_ptb.py): no JVM start per evaluation
score_caption = functools.partial(score_captions, meteor=False, exact=True, tokenizer="python")


def make_classification_scorer(labels: tuple[str, ...]) -> Callable[[list[str], list[Example]], dict[str, float]]:
    """Accuracy, F1 and the rest of the classification metrics over ``labels`` (the task's label words)."""
    def score(predictions: list[str], examples: list[Example]) -> dict[str, float]:
        return classification_metrics(predictions, [ex.target_text for ex in examples], list(labels))
    return score


def score_regression(predictions: list[str], examples: list[Example]) -> dict[str, float]:
    """Pearson and Spearman correlations of the predicted numbers; headline their mean."""
    out = regression_metrics(predictions, [ex.target_text for ex in examples])
    out["headline"] = (out["pearson"] + out["spearmanr"]) / 2
    return out


def _register(name: str) -> None:
    spec = SPECS[name]

    def loader(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
        if data_dir is not None:
            raise ValueError(f"{name} is generated, not read: drop data_dir (got {data_dir!r})")
        return build_examples(name, split, fmt, **options)

    if spec.kind == "vqa":
        scorer, metric, scale = score_exact_match, "accuracy", "0..1"
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

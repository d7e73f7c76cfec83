"""The Task record: where a task's data comes from, how it becomes text, and how it is scored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dept_vl.data.example import Example

KINDS = ("classification", "regression", "vqa", "caption", "generation")
SPLITS = ("train", "dev", "test")
ROLES = (None, "source", "target")

Loader = Callable[..., list[Example]]
Scorer = Callable[[list[str], list[Example]], dict[str, float]]


@dataclass
class Task:
    """One task: a loader that yields :class:`Example` records and a scorer of predictions.

    Attributes:
        name: registry name (``cola``, ``vqa_v2``, ``shapes_count``...).
        kind: one of ``classification regression vqa caption generation``.
        source: where the data comes from, for humans (``dept-vl tasks`` shows it).
        headline_metric: the metric that ``evaluate(...)["headline"]`` holds: a key of the
            scorer's dict, or a description such as ``mean(accuracy,f1)`` when the scorer
            returns ``headline`` itself.
        loader: ``loader(split, data_dir, fmt, **options) -> list[Example]``; ``split`` is one of
            ``train dev test``, ``fmt`` one of ``formats`` ("default" already resolved).
        scorer: ``scorer(predictions, examples) -> dict`` with every metric of the task.
        label_words: the valid outputs of a classification task (default format), else None.
        balance_field: ``"label"`` when k-shot sampling balances classes, else None.
        has_images: whether examples carry an image.
        formats: accepted ``fmt`` values; the first is what ``fmt="default"`` means.
        role: ``"source"`` or ``"target"`` for the synthetic world's transfer design, else None.
        description: one line for humans.
        scale: the headline's scale, for humans (``"0..1"``, ``"-1..1"``, ``"0..10"`` for CIDEr-D).
        family: a group name for listings (``glue``, ``superglue``, ``vqa``, ``caption``, ``shapes``).
    """

    name: str
    kind: str
    source: str
    headline_metric: str
    loader: Loader = field(repr=False)
    scorer: Scorer = field(repr=False)
    label_words: list[str] | None = None
    balance_field: str | None = None
    has_images: bool = False
    formats: tuple[str, ...] = ("default",)
    role: str | None = None
    description: str = ""
    scale: str = "0..1"
    family: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.balance_field not in (None, "label"):
            raise ValueError(f"task {self.name!r}: balance_field must be 'label' or None, "
                             f"got {self.balance_field!r}")
        if self.role not in ROLES:
            raise ValueError(f"task {self.name!r}: role must be 'source', 'target' or None, "
                             f"got {self.role!r}")
        if not self.formats:
            raise ValueError(f"task {self.name!r}: needs at least one format")

    def resolve_format(self, fmt: str) -> str:
        """``"default"`` -> this task's first format; unknown formats raise ValueError."""
        if fmt == "default":
            return self.formats[0]
        if fmt not in self.formats:
            raise ValueError(f"task {self.name!r} has no format {fmt!r}; "
                             f"choose one of {['default', *self.formats]}")
        return fmt

    def load(self, split: str, data_dir: str | None = None, fmt: str = "default",
             **options: Any) -> list[Example]:
        """Load one split (``train``, ``dev`` or ``test``) as a list of examples.

        Raises:
            ValueError: unknown split or format, missing files under ``data_dir`` (naming the
                path expected), or an option the task does not know.
        """
        if split not in SPLITS:
            raise ValueError(f"task {self.name!r}: unknown split {split!r}; use one of {SPLITS}")
        return self.loader(split, data_dir, self.resolve_format(fmt), **options)

    def evaluate(self, predictions: list[str], examples: list[Example]) -> dict[str, float]:
        """Score predictions (one string per example, same order): every metric plus ``headline``.

        Raises:
            ValueError: when the two lists differ in length or are empty.
        """
        if len(predictions) != len(examples):
            raise ValueError(f"task {self.name!r}: {len(predictions)} predictions for "
                             f"{len(examples)} examples; pass one prediction per example")
        if not examples:
            raise ValueError(f"task {self.name!r}: nothing to evaluate (no examples)")
        scores = {k: float(v) for k, v in self.scorer(list(predictions), list(examples)).items()}
        if "headline" not in scores:  # a scorer may compute a composite headline itself
            scores["headline"] = scores[self.headline_metric]
        return scores

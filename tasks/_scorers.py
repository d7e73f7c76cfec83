"""Scorers that several task definitions share (a file whose name starts with ``_`` registers no task)."""

from __future__ import annotations

from dept_vl.data.example import Example
from dept_vl.data.task import Scorer
from dept_vl.data.text_tasks import TextTaskSpec
from dept_vl.metrics.captions import caption_scores
from dept_vl.metrics.glue import GLUE_HEADLINE, glue_metrics
from dept_vl.metrics.vqa import exact_match


def score_exact_match(predictions: list[str], examples: list[Example]) -> dict[str, float]:
    """Accuracy: exact match after the VQA answer normalisation."""
    hits = [exact_match(p, ex.target_text) for p, ex in zip(predictions, examples)]
    return {"accuracy": sum(hits) / len(hits)}


def score_captions(predictions: list[str], examples: list[Example], meteor: bool | None = None,
                   exact: bool = False, tokenizer: str = "auto") -> dict[str, float]:
    """BLEU-1..4 and CIDEr-D against every reference of each example.

    Args:
        meteor: add METEOR; None means "when java is on PATH", False keeps evaluation fast.
        exact: add ``exact``, the rate of predictions equal to the target (stripped, lower-cased).
        tokenizer: the PTB tokenizer: ``auto`` (the official Java one when java is found), ``java`` or ``python``.
    """
    scores = caption_scores({ex.id: p for p, ex in zip(predictions, examples)},
                            {ex.id: ex.all_references() for ex in examples}, meteor=meteor, tokenizer=tokenizer)
    if exact:
        scores["exact"] = sum(p.strip().lower() == ex.target_text for p, ex in zip(predictions, examples)) / len(examples)
    return scores


def make_glue_scorer(spec: TextTaskSpec) -> Scorer:
    """The GLUE/SuperGLUE scorer of one task: its metrics on label words (``default`` format, dept-vl's rules) or
    label indices (``reference`` format, as the examples' ``meta["format"]`` says, scored by the DePT reference
    code's rules: ``glue_metrics(..., rules="reference")``), so an imported checkpoint is scored as the paper was."""

    def scorer(predictions: list[str], examples: list[Example]) -> dict[str, float]:
        missing = [ex.id for ex in examples if not ex.target_text]
        if missing:
            raise ValueError(f"{spec.name}: examples {missing[:3]} have no target (hidden test "
                             "labels); evaluate on a labelled split")
        fmt = examples[0].meta.get("format", "default")
        labels = None
        if spec.label_words is not None:
            labels = ([str(i) for i in range(len(spec.label_words))] if fmt == "reference"
                      else list(spec.label_words))
        return glue_metrics(spec.name, predictions, [ex.target_text for ex in examples], labels=labels,
                            rules="reference" if fmt == "reference" else "default")

    return scorer


def glue_headline_metric(name: str) -> str:
    """The headline of a GLUE/SuperGLUE task: one metric (``accuracy``) or a mean (``mean(accuracy,f1)``)."""
    parts = GLUE_HEADLINE.get(name, ("accuracy",))
    return parts[0] if len(parts) == 1 else f"mean({','.join(parts)})"

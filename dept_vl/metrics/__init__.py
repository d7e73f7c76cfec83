"""Metrics: plain functions of strings (no torch, no network).

- :func:`vqa_accuracy`: the official VQA v2 accuracy of one answer (0..1).
- :func:`caption_scores`: BLEU-1..4 and CIDEr-D through pycocoevalcap (METEOR with java).
- :func:`glue_metrics`: GLUE/SuperGLUE metrics of generated strings, with a ``headline``.
"""

from dept_vl.metrics.captions import caption_scores, ptb_tokenize
from dept_vl.metrics.glue import (
    GLUE_LABEL_WORDS,
    classification_metrics,
    glue_metrics,
    parse_number,
    regression_metrics,
)
from dept_vl.metrics.vqa import exact_match, normalize_vqa_answer, vqa_accuracy

__all__ = [
    "GLUE_LABEL_WORDS",
    "caption_scores",
    "classification_metrics",
    "exact_match",
    "glue_metrics",
    "normalize_vqa_answer",
    "parse_number",
    "ptb_tokenize",
    "regression_metrics",
    "vqa_accuracy",
]

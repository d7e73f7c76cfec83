"""Metrics: plain functions of strings (no torch, no network). See docs/metrics.md for sources.

- :func:`vqa_accuracy`: VQA v2 accuracy of one answer (0..1); ``rules="official"`` (vqaEval.py,
  default), ``"vl-t5"`` (VL-T5 / VL-Adapter's evaluator) or ``"caseless"``.
- :func:`caption_scores`: BLEU-1..4 and CIDEr-D through pycocoevalcap (METEOR with java) after the
  PTB tokenizer (Java when available; :func:`caption_tokenizer_name` says which).
- :func:`glue_metrics`: GLUE/SuperGLUE metrics of generated strings, with a ``headline``;
  ``rules="default"`` or ``"reference"`` (the DePT code's scoring).
"""

from dept_vl.metrics.captions import (
    caption_scores,
    caption_tokenizer_name,
    ptb_tokenize,
    ptb_tokenize_java,
    tokenize_captions,
)
from dept_vl.metrics.glue import (
    GLUE_LABEL_WORDS,
    GLUE_RULES,
    classification_metrics,
    glue_metrics,
    normalize_label,
    parse_number,
    regression_metrics,
)
from dept_vl.metrics.ptb import ptb_tokenize_lines
from dept_vl.metrics.vqa import VQA_RULES, exact_match, normalize_vqa_answer, vqa_accuracy

__all__ = [
    "GLUE_LABEL_WORDS",
    "GLUE_RULES",
    "VQA_RULES",
    "caption_scores",
    "caption_tokenizer_name",
    "classification_metrics",
    "exact_match",
    "glue_metrics",
    "normalize_label",
    "normalize_vqa_answer",
    "parse_number",
    "ptb_tokenize",
    "ptb_tokenize_java",
    "ptb_tokenize_lines",
    "regression_metrics",
    "tokenize_captions",
    "vqa_accuracy",
]

"""GLUE-style metrics on generated strings: accuracy, F1, Matthews (scikit-learn), Pearson/Spearman (scipy).

Predictions are compared to the label set stripped and case-insensitively. A prediction that is
not a valid label counts as wrong in every metric: in binary tasks it is replaced by the label
opposite to the reference (as the DePT/ATTEMPT reference code does for F1); in multi-class tasks it
matches no class. For regression (STS-B) an unparseable prediction becomes -1.0, outside the
0..5 range, as in the reference code. Correlations of a constant series are reported as 0.
Every number is on its natural scale: accuracy and F1 in 0..1, correlations in -1..1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Label words of our default text-to-text format, in the Hugging Face label-index order.
GLUE_LABEL_WORDS: dict[str, list[str]] = {
    "cola": ["unacceptable", "acceptable"],
    "sst2": ["negative", "positive"],
    "mrpc": ["not_equivalent", "equivalent"],
    "qqp": ["not_duplicate", "duplicate"],
    "mnli": ["entailment", "neutral", "contradiction"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "boolq": ["false", "true"],
    "cb": ["entailment", "contradiction", "neutral"],
}
# Which metrics make up each task's headline (their mean).
GLUE_HEADLINE: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_correlation",),
    "stsb": ("pearson", "spearmanr"),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "cb": ("accuracy", "f1_macro"),
}
INVALID_REGRESSION_VALUE = -1.0


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} references; "
                         "pass one prediction per example")
    if not references:
        raise ValueError("no predictions to score (empty lists)")


def _nan_to_zero(x: float) -> float:
    return 0.0 if x is None or math.isnan(x) else float(x)


def classification_metrics(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str]
) -> dict[str, float]:
    """Accuracy, F1 (binary: of ``labels[1]``; else macro), Matthews correlation and invalid rate.

    Raises:
        ValueError: on length mismatch, or a reference that is not one of ``labels``.
    """
    from sklearn.metrics import f1_score, matthews_corrcoef

    _check_lengths(predictions, references)
    canon = [str(label).strip().lower() for label in labels]
    refs = [str(r).strip().lower() for r in references]
    bad = sorted({r for r in refs if r not in canon})
    if bad:
        raise ValueError(f"references {bad[:5]} are not among the labels {canon}")
    preds = [str(p).strip().lower() for p in predictions]
    invalid = [p not in canon for p in preds]
    if len(canon) == 2:
        # Invalid -> the opposite label: wrong for accuracy, F1 and Matthews alike.
        preds = [canon[1 - canon.index(r)] if bad_p else p for p, r, bad_p in zip(preds, refs, invalid)]
    y_true = [canon.index(r) for r in refs]
    y_pred = [canon.index(p) if p in canon else -1 for p in preds]
    out = {"accuracy": sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)}
    if len(canon) == 2:
        out["f1"] = float(f1_score(y_true, y_pred, pos_label=1, zero_division=0.0))
    else:
        out["f1_macro"] = float(f1_score(y_true, y_pred, labels=list(range(len(canon))),
                                         average="macro", zero_division=0.0))
    out["matthews_correlation"] = _nan_to_zero(matthews_corrcoef(y_true, y_pred))
    out["invalid_rate"] = sum(invalid) / len(invalid)
    return out


def parse_number(text: str, default: float = INVALID_REGRESSION_VALUE) -> float:
    """The float in a generated string, or ``default`` when it is not a number."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return default
    return value if math.isfinite(value) else default


def regression_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Pearson and Spearman correlation of parsed numbers (invalid predictions -> -1.0).

    Raises:
        ValueError: on length mismatch or a reference that is not a number.
    """
    from scipy.stats import pearsonr, spearmanr

    _check_lengths(predictions, references)
    refs = [parse_number(r, default=math.nan) for r in references]
    if any(math.isnan(r) for r in refs):
        bad = [r for r, v in zip(references, refs) if math.isnan(v)][:5]
        raise ValueError(f"references {bad} are not numbers")
    preds = [parse_number(p) for p in predictions]
    n_invalid = sum(math.isnan(parse_number(p, default=math.nan)) for p in predictions)
    constant = len(set(preds)) < 2 or len(set(refs)) < 2
    pearson = 0.0 if constant else _nan_to_zero(pearsonr(refs, preds)[0])
    spearman = 0.0 if constant else _nan_to_zero(spearmanr(refs, preds)[0])
    return {"pearson": pearson, "spearmanr": spearman, "invalid_rate": n_invalid / len(preds)}


def _infer_labels(task: str, references: Sequence[str]) -> list[str]:
    words = GLUE_LABEL_WORDS[task]
    digits = [str(i) for i in range(len(words))]
    refs = {str(r).strip().lower() for r in references}
    for candidate in (words, digits):
        if refs <= set(candidate):
            return list(candidate)
    raise ValueError(f"cannot tell the label set of {task!r} from the references {sorted(refs)[:5]}; "
                     f"expected label words {words} or label indices {digits}, or pass labels=")


def glue_metrics(
    task: str,
    predictions: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str] | None = None,
) -> dict[str, float]:
    """The GLUE/SuperGLUE metrics of one task on generated strings, plus ``headline``.

    Args:
        task: one of ``cola sst2 mrpc qqp stsb mnli qnli rte boolq cb``.
        predictions: generated strings.
        references: target strings (label words, label indices, or numbers for ``stsb``).
        labels: the valid label strings in label-index order; inferred when omitted (our label
            words, or the reference format's digits).

    Returns:
        The task's metrics (cola: matthews_correlation; stsb: pearson, spearmanr; mrpc/qqp:
        accuracy, f1; cb: accuracy, f1_macro; others: accuracy), ``invalid_rate``, and
        ``headline``: the mean of the task's metrics.
    """
    known = sorted([*GLUE_LABEL_WORDS, "stsb"])
    if task not in known:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(known)}")
    if task == "stsb":
        out = regression_metrics(predictions, references)
    else:
        out = classification_metrics(predictions, references,
                                     labels if labels is not None else _infer_labels(task, references))
        if task != "cb":
            out.pop("f1_macro", None)
        if task not in ("mrpc", "qqp"):
            out.pop("f1", None)
    parts = GLUE_HEADLINE.get(task, ("accuracy",))
    out["headline"] = sum(out[p] for p in parts) / len(parts)
    return out

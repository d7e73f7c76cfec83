"""GLUE-style metrics on generated strings: accuracy, F1, Matthews (scikit-learn), Pearson/Spearman (scipy).

Two rule sets, chosen with ``rules=``; every number is on its natural scale (accuracy and F1 in
0..1, correlations in -1..1; the reference code reports x100), and correlations that are
undefined (NaN, e.g. constant predictions) are reported as 0, as the reference code does.

``rules="default"``:
    A prediction matches a label after stripping whitespace, lowercasing and dropping one trailing
    period (``" Acceptable"`` and ``"acceptable."`` are both ``acceptable``). An invalid prediction
    counts as wrong in every metric: in binary tasks it becomes the label opposite to the
    reference (for accuracy, F1 and Matthews alike); in multi-class tasks it matches no class. For
    STS-B, ``float()`` of the stripped text, and anything unparseable or non-finite
    (``nan``, ``inf``, ``Infinity``) becomes -1.0, outside the 0..5 range.

``rules="reference"``: as the DePT code (ZhengxiangShi/DePT, src/metrics.py, after
    src/postprocessors.py strips both strings) scores, to score an imported checkpoint as the
    paper did. Labels are compared as exact strings after ``str.strip()`` (no case folding, no
    period dropping). Accuracy: exact equality. F1 (``f1_score_with_invalid``): an invalid
    prediction becomes the label opposite to the target. Matthews (``matthews_corrcoef``):
    sklearn on the raw strings, so an invalid prediction is an extra class. CB macro-F1
    (``mean_multiclass_f1``): over the 3 classes, invalid matches none. STS-B
    (``string_to_float``): ``float()``, -1.0 only on a ``ValueError``, so ``nan``/``inf`` pass
    through (one ``nan`` makes both correlations 0; ``inf`` makes Pearson 0, Spearman ranks it).

``invalid_rate`` (both rules) is the share of predictions that are not a valid label under the
chosen matching, or, for STS-B, not a finite number.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

GLUE_RULES = ("default", "reference")
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


def _check_rules(rules: str) -> None:
    if rules not in GLUE_RULES:
        raise ValueError(f"rules={rules!r} is not one of {', '.join(map(repr, GLUE_RULES))}")


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions for {len(references)} references; "
                         "pass one prediction per example")
    if not references:
        raise ValueError("no predictions to score (empty lists)")


def _nan_to_zero(x: float) -> float:
    return 0.0 if x is None or math.isnan(x) else float(x)


def normalize_label(text: str, rules: str = "default") -> str:
    """The form in which a generated string is compared with the label strings under ``rules``."""
    _check_rules(rules)
    text = str(text).strip()
    if rules == "reference":
        return text
    text = text.lower()
    return text[:-1].rstrip() if text.endswith(".") else text


def classification_metrics(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str],
    *, rules: str = "default",
) -> dict[str, float]:
    """Accuracy, F1 (binary: of ``labels[1]``; else macro), Matthews correlation and invalid rate.

    Raises:
        ValueError: on length mismatch, unknown ``rules``, or a reference not among ``labels``.
    """
    from sklearn.metrics import f1_score, matthews_corrcoef

    _check_rules(rules)
    _check_lengths(predictions, references)
    canon = [normalize_label(label, rules) for label in labels]
    refs = [normalize_label(r, rules) for r in references]
    bad = sorted({r for r in refs if r not in canon})
    if bad:
        raise ValueError(f"references {bad[:5]} are not among the labels {canon}")
    raw = [normalize_label(p, rules) for p in predictions]
    invalid = [p not in canon for p in raw]
    binary = len(canon) == 2
    # Invalid -> the opposite label (default: every metric; reference: F1 only).
    flipped = [canon[1 - canon.index(r)] if bad_p else p for p, r, bad_p in zip(raw, refs, invalid)]
    preds = flipped if binary and rules == "default" else raw
    y_true = [canon.index(r) for r in refs]
    y_pred = [canon.index(p) if p in canon else -1 for p in preds]
    out = {"accuracy": sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)}
    if binary:
        y_f1 = [canon.index(p) for p in flipped]
        out["f1"] = float(f1_score(y_true, y_f1, pos_label=1, zero_division=0.0))
    else:
        out["f1_macro"] = float(f1_score(y_true, y_pred, labels=list(range(len(canon))),
                                         average="macro", zero_division=0.0))
    if rules == "reference":  # sklearn on the strings themselves: an invalid output is a class
        mcc = matthews_corrcoef(refs, raw)
    else:
        mcc = matthews_corrcoef(y_true, y_pred)
    out["matthews_correlation"] = _nan_to_zero(mcc)
    out["invalid_rate"] = sum(invalid) / len(invalid)
    return out


def parse_number(text: str, default: float = INVALID_REGRESSION_VALUE, *, rules: str = "default") -> float:
    """The float in a generated string, or ``default`` when it is not one.

    ``rules="default"``: non-finite values (``nan``, ``inf``) also give ``default``;
    ``rules="reference"``: only a ``ValueError`` of ``float()`` does (the reference's ``string_to_float``).
    """
    _check_rules(rules)
    try:
        value = float(str(text).strip())
    except ValueError:
        return default
    return value if rules == "reference" or math.isfinite(value) else default


def _correlation(fn, refs: list[float], preds: list[float]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant or nan input: scipy warns and returns nan
        return _nan_to_zero(float(fn(refs, preds)[0]))


def regression_metrics(
    predictions: Sequence[str], references: Sequence[str], *, rules: str = "default"
) -> dict[str, float]:
    """Pearson and Spearman correlation of parsed numbers (invalid predictions -> -1.0).

    Raises:
        ValueError: on length mismatch, unknown ``rules``, or a reference that is not a number.
    """
    from scipy.stats import pearsonr, spearmanr

    _check_rules(rules)
    _check_lengths(predictions, references)
    refs = [parse_number(r, default=math.nan) for r in references]
    if any(math.isnan(r) for r in refs):
        bad = [r for r, v in zip(references, refs) if math.isnan(v)][:5]
        raise ValueError(f"references {bad} are not numbers")
    preds = [parse_number(p, rules=rules) for p in predictions]
    n_invalid = sum(math.isnan(parse_number(p, default=math.nan)) for p in predictions)
    if rules == "default" and (len(set(preds)) < 2 or len(set(refs)) < 2):
        pearson = spearman = 0.0
    else:
        pearson, spearman = _correlation(pearsonr, refs, preds), _correlation(spearmanr, refs, preds)
    return {"pearson": pearson, "spearmanr": spearman, "invalid_rate": n_invalid / len(preds)}


def _infer_labels(task: str, references: Sequence[str], rules: str) -> list[str]:
    words = GLUE_LABEL_WORDS[task]
    digits = [str(i) for i in range(len(words))]
    refs = {normalize_label(r, rules) for r in references}
    for candidate in (words, digits):
        if refs <= {normalize_label(c, rules) for c in candidate}:
            return list(candidate)
    raise ValueError(f"cannot tell the label set of {task!r} from the references {sorted(refs)[:5]}; "
                     f"expected label words {words} or label indices {digits}, or pass labels=")


def glue_metrics(
    task: str,
    predictions: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str] | None = None,
    *,
    rules: str = "default",
) -> dict[str, float]:
    """The GLUE/SuperGLUE metrics of one task on generated strings, plus ``headline``.

    Args:
        task: one of ``cola sst2 mrpc qqp stsb mnli qnli rte boolq cb``.
        predictions: generated strings.
        references: target strings (label words, label indices, or numbers for ``stsb``).
        labels: the valid label strings in label-index order; inferred when omitted (our label
            words, or the reference format's digits).
        rules: ``"default"`` or ``"reference"`` (the DePT code's scoring); see the module docstring.

    Returns:
        The task's metrics (cola: matthews_correlation; stsb: pearson, spearmanr; mrpc/qqp:
        accuracy, f1; cb: accuracy, f1_macro; others: accuracy), ``invalid_rate``, and
        ``headline``: the mean of the task's metrics.
    """
    _check_rules(rules)
    known = sorted([*GLUE_LABEL_WORDS, "stsb"])
    if task not in known:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(known)}")
    if task == "stsb":
        out = regression_metrics(predictions, references, rules=rules)
    else:
        if labels is None:
            labels = _infer_labels(task, references, rules)
        out = classification_metrics(predictions, references, labels, rules=rules)
        if task != "cb":
            out.pop("f1_macro", None)
        if task not in ("mrpc", "qqp"):
            out.pop("f1", None)
    parts = GLUE_HEADLINE.get(task, ("accuracy",))
    out["headline"] = sum(out[p] for p in parts) / len(parts)
    return out

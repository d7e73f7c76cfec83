"""GLUE metrics on generated strings: default rules checked by hand, reference rules against sklearn/scipy."""

import math
import warnings

import numpy as np
import pytest

from dept_vl.metrics import classification_metrics, glue_metrics, regression_metrics


def test_accuracy_and_invalid_outputs():
    refs = ["positive", "negative", "positive", "negative"]
    out = glue_metrics("sst2", ["positive", "negative", "great!", "NEGATIVE "], refs)
    assert out["accuracy"] == 0.75  # "great!" is wrong; case and spaces are ignored
    assert out["invalid_rate"] == 0.25
    assert out["headline"] == out["accuracy"]
    assert "f1" not in out


def test_f1_counts_invalid_as_wrong_in_both_directions():
    refs = ["equivalent", "equivalent", "not_equivalent", "not_equivalent", "equivalent"]
    preds = ["equivalent", "???", "???", "not_equivalent", "not_equivalent"]
    out = glue_metrics("mrpc", preds, refs)
    # invalid on a positive -> false negative; invalid on a negative -> false positive.
    tp, fp, fn = 1, 1, 2
    assert out["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert out["accuracy"] == pytest.approx(2 / 5)
    assert out["headline"] == pytest.approx((out["f1"] + out["accuracy"]) / 2)


def test_matthews_by_hand():
    refs = ["acceptable"] * 3 + ["unacceptable"] * 3
    preds = ["acceptable", "acceptable", "unacceptable", "unacceptable", "unacceptable", "acceptable"]
    tp, tn, fp, fn = 2, 2, 1, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    out = glue_metrics("cola", preds, refs)
    assert out["matthews_correlation"] == pytest.approx(mcc)
    assert out["headline"] == pytest.approx(mcc)


def test_reference_format_digits_are_inferred():
    out = glue_metrics("rte", ["0", "1", "entailment"], ["0", "1", "0"])
    assert out["accuracy"] == pytest.approx(2 / 3)  # a label word is invalid in the digit format


def test_multiclass_macro_f1():
    out = glue_metrics("cb", ["entailment", "neutral", "bad"], ["entailment", "contradiction", "neutral"])
    # per class F1: entailment 1, contradiction 0 (no prediction), neutral 0 -> macro 1/3
    assert out["f1_macro"] == pytest.approx(1 / 3)
    assert out["accuracy"] == pytest.approx(1 / 3)


def test_stsb_parses_numbers_and_penalises_garbage():
    refs = ["0.0", "1.2", "2.4", "3.6", "5.0"]
    preds = ["0.2", "1.0", "2.6", "3.4", "4.8"]
    out = glue_metrics("stsb", preds, refs)
    assert out["pearson"] == pytest.approx(np.corrcoef([0, 1.2, 2.4, 3.6, 5], [0.2, 1, 2.6, 3.4, 4.8])[0, 1])
    assert out["spearmanr"] == pytest.approx(1.0)
    bad = glue_metrics("stsb", ["0.2", "1.0", "x", "3.4", "4.8"], refs)
    expected = np.corrcoef([0, 1.2, 2.4, 3.6, 5], [0.2, 1, -1.0, 3.4, 4.8])[0, 1]
    assert bad["pearson"] == pytest.approx(expected)
    assert bad["invalid_rate"] == pytest.approx(0.2)


def test_constant_predictions_give_zero_correlation():
    assert regression_metrics(["3", "3", "3"], ["1", "2", "3"])["pearson"] == 0.0


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown GLUE task 'colaa'"):
        glue_metrics("colaa", ["a"], ["a"])
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        glue_metrics("sst2", ["positive", "negative"], ["positive"])
    with pytest.raises(ValueError, match="not among the labels"):
        classification_metrics(["yes"], ["maybe"], ["yes", "no"])


# --- rules="reference": the DePT code (ZhengxiangShi/DePT src/metrics.py; src/postprocessors.py strips
# both strings). Each expectation below is computed with sklearn/scipy directly, following that code.

def _string_to_float(s, default=-1.0):  # DePT src/metrics.py string_to_float
    try:
        return float(s)
    except ValueError:
        return default


def test_cola_invalid_output_is_an_extra_class_under_reference_rules():
    from sklearn.metrics import matthews_corrcoef

    targets = ["1", "1", "0", "0", "1", "0"]
    preds = ["1", "maybe", "0", "1", "1", "0"]
    # Reference: matthews_corrcoef(targets, predictions) on the raw strings.
    expected_ref = matthews_corrcoef(targets, preds)
    assert expected_ref == pytest.approx(0.4523, abs=1e-4)
    out = glue_metrics("cola", preds, targets, rules="reference")
    assert out["matthews_correlation"] == pytest.approx(expected_ref)
    assert out["headline"] == pytest.approx(expected_ref)
    # Default: the invalid "maybe" (target 1) becomes the opposite label 0.
    expected_default = matthews_corrcoef([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0])
    assert expected_default == pytest.approx(1 / 3)
    assert glue_metrics("cola", preds, targets)["matthews_correlation"] == pytest.approx(expected_default)


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_stsb_non_finite_predictions(bad):
    from scipy.stats import pearsonr, spearmanr

    refs = ["0.0", "1.2", "2.4", "3.6", "5.0"]
    preds = ["0.2", bad, "2.6", "3.4", "4.8"]
    y = [0.0, 1.2, 2.4, 3.6, 5.0]
    # Reference: string_to_float keeps nan/inf; a nan correlation is reported as 0.
    x_ref = [_string_to_float(p) for p in preds]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on nan/inf input
        p_ref = pearsonr(y, x_ref)[0]
        s_ref = spearmanr(y, x_ref)[0]
    p_ref, s_ref = (0.0 if math.isnan(v) else v for v in (p_ref, s_ref))
    ref = glue_metrics("stsb", preds, refs, rules="reference")
    assert ref["pearson"] == pytest.approx(p_ref) and ref["spearmanr"] == pytest.approx(s_ref)
    assert ref["pearson"] == 0.0  # nan or inf: Pearson is nan -> 0
    if "nan" in bad.lower():
        assert ref["spearmanr"] == 0.0  # one nan: Spearman is nan -> 0 too
    # Default: a non-finite prediction is invalid -> -1.0.
    x_def = [0.2, -1.0, 2.6, 3.4, 4.8]
    out = glue_metrics("stsb", preds, refs)
    assert out["pearson"] == pytest.approx(pearsonr(y, x_def)[0])
    assert out["spearmanr"] == pytest.approx(spearmanr(y, x_def)[0])
    assert out["invalid_rate"] == pytest.approx(0.2) and ref["invalid_rate"] == pytest.approx(0.2)


def test_label_matching_default_vs_reference():
    from sklearn.metrics import matthews_corrcoef

    refs = ["acceptable", "acceptable", "unacceptable", "unacceptable"]
    preds = ["acceptable.", " Acceptable", "unacceptable", "UNACCEPTABLE."]
    # Default: strip, lowercase, drop one trailing period -> all four valid and right.
    out = glue_metrics("cola", preds, refs)
    assert out["invalid_rate"] == 0.0 and out["accuracy"] == 1.0
    assert out["matthews_correlation"] == pytest.approx(1.0)
    # Reference: exact strings after strip(): "acceptable." and "UNACCEPTABLE." are invalid,
    # " Acceptable" -> "Acceptable" is invalid too (case); only "unacceptable" matches.
    ref = glue_metrics("cola", preds, refs, rules="reference")
    stripped = [p.strip() for p in preds]
    assert ref["invalid_rate"] == pytest.approx(3 / 4)
    assert ref["accuracy"] == pytest.approx(np.mean(np.array(stripped) == np.array(refs)))
    assert ref["matthews_correlation"] == pytest.approx(matthews_corrcoef(refs, stripped))


def test_reference_digit_labels_period_and_space():
    # The reference format's targets are label indices; "1." is not "1", " 1" is (strip()).
    targets = ["1", "1", "0", "0"]
    preds = ["1.", " 1", "0", "1"]
    stripped = [p.strip() for p in preds]
    ref = glue_metrics("sst2", preds, targets, rules="reference")
    assert ref["accuracy"] == pytest.approx(np.mean(np.array(stripped) == np.array(targets)))  # 2/4
    assert ref["accuracy"] == pytest.approx(0.5)
    assert glue_metrics("sst2", preds, targets)["accuracy"] == pytest.approx(0.75)  # "1." valid by default


def test_reference_f1_with_invalid():
    from sklearn.metrics import f1_score

    targets = ["1", "1", "0", "0", "1"]
    preds = ["1", "x", "x", "0", "0"]
    # f1_score_with_invalid: an invalid prediction becomes the opposite of its target.
    fixed = [p if p in ("0", "1") else ("0" if t == "1" else "1") for p, t in zip(preds, targets)]
    expected = f1_score(np.asarray(targets).astype(int), np.asarray(fixed).astype(int))
    ref = glue_metrics("mrpc", preds, targets, rules="reference")
    assert ref["f1"] == pytest.approx(expected)
    assert ref["accuracy"] == pytest.approx(np.mean(np.array(preds) == np.array(targets)))


def test_reference_cb_macro_f1():
    from sklearn.metrics import fbeta_score

    targets = ["0", "1", "2", "0"]
    preds = ["0", "x", "2", "1"]
    # mean_multiclass_f1(num_classes=3): fbeta_score(beta=1, labels=range(3), average="macro").
    expected = fbeta_score(targets, preds, beta=1, labels=range(3), average="macro")
    ref = glue_metrics("cb", preds, targets, rules="reference")
    assert ref["f1_macro"] == pytest.approx(expected)
    assert ref["headline"] == pytest.approx((expected + 0.5) / 2)


def test_unknown_rules_raise():
    with pytest.raises(ValueError, match=r"rules='paper' is not one of 'default', 'reference'"):
        glue_metrics("cola", ["1"], ["1"], rules="paper")

"""GLUE metrics on generated strings: invalid outputs count as wrong; values checked by hand."""

import math

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

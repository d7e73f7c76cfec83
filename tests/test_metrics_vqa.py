"""VQA accuracy: hand-computed cases for the leave-one-out formula and every normalisation rule."""

import pytest

from dept_vl.metrics import exact_match, normalize_vqa_answer, vqa_accuracy


def _answers(match: str, n_match: int, other: str = "zzz") -> list[str]:
    return [match] * n_match + [other] * (10 - n_match)


@pytest.mark.parametrize("n_match, expected", [
    (0, 0.0),
    (1, 0.3),   # 9 subsets keep the match: 9 * (1/3) / 10
    (2, 0.6),   # 8 * (2/3) + 2 * (1/3) = 6, / 10
    (3, 0.9),   # 7 * 1 + 3 * (2/3) = 9, / 10
    (4, 1.0),
    (10, 1.0),
])
def test_leave_one_out_formula(n_match, expected):
    assert vqa_accuracy("dog", _answers("dog", n_match)) == pytest.approx(expected)


@pytest.mark.parametrize("prediction, answer, expected_norm", [
    ("two", "2", "2"),                  # number words -> digits
    ("none", "0", "0"),
    ("a dog", "dog", "dog"),            # articles dropped
    ("the red car", "red car", "red car"),
    ("yes!", "yes", "yes"),             # punctuation at a word's end
    ("black/white", "black white", "black white"),  # punctuation inside a word -> space
    ("dog.", "dog", "dog"),             # period not followed by a digit
    ("1,000", "1000", "1000"),          # digit comma: all punctuation deleted
    ("dont", "don't", "don't"),         # contractions map
    ("Yes", "yes", "yes"),              # case
])
def test_each_normalisation_rule(prediction, answer, expected_norm):
    assert normalize_vqa_answer(prediction) == expected_norm
    # Answers that disagree trigger the normalisation, as in the official evaluator.
    assert vqa_accuracy(prediction, _answers(answer, 3)) == pytest.approx(0.9)


def test_decimal_point_kept():
    assert normalize_vqa_answer("3.5") == "3.5"
    assert vqa_accuracy("3.5", _answers("3.5", 3)) == pytest.approx(0.9)
    assert vqa_accuracy("35", _answers("3.5", 3)) == 0.0


def test_unanimous_answers_are_compared_raw_but_case_insensitive():
    # The official evaluator normalises only when the human answers differ.
    assert vqa_accuracy("Yes", ["yes"] * 10) == 1.0
    assert vqa_accuracy("  yes\n", ["yes"] * 10) == 1.0
    assert vqa_accuracy("two", ["2"] * 10) == 0.0
    assert vqa_accuracy("two", ["2"] * 9 + ["3"]) == 1.0


def test_empty_answers_raise():
    with pytest.raises(ValueError, match="at least one"):
        vqa_accuracy("yes", [])


def test_exact_match_normalises_both_sides():
    assert exact_match("Two.", "2") == 1.0
    assert exact_match("a red circle", "red circle") == 1.0
    assert exact_match("red square", "red circle") == 0.0

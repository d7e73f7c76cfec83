"""Collation: dynamic padding, and a warning when inputs are cut to max_input_length."""

from __future__ import annotations

import warnings

import pytest

from dept_vl.data.batching import Collator
from dept_vl.data.example import Example
from dept_vl.models import build_vl_model
import dept_vl.tasks  # noqa: F401  (registers the words of the tiny preset's tokenizer)


@pytest.fixture(scope="module")
def tokenizer():
    return build_vl_model("tiny").tokenizer


def example(i: int, words: int) -> Example:
    return Example(id=f"e{i}", input_text=" ".join(["circle"] * words), target_text="yes")


def test_long_inputs_are_cut_with_one_warning_that_names_the_limit(tokenizer):
    collate = Collator(tokenizer=tokenizer, max_input_length=8)
    real = len(tokenizer(example(0, 12).input_text)["input_ids"])
    assert real > 8
    with pytest.warns(UserWarning, match=rf"max_input_length=8 .*'e0': {real} tokens.*dept.max_length"):
        batch = collate([example(0, 12), example(1, 3), example(2, 20)])
    assert batch["input_ids"].shape[1] == 8 and collate.truncated == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per collator
        collate([example(3, 30)])
    assert collate.truncated == 3


def test_inputs_that_fit_exactly_are_not_reported(tokenizer):
    fits = len(tokenizer(example(0, 6).input_text)["input_ids"])
    collate = Collator(tokenizer=tokenizer, max_input_length=fits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = collate([example(0, 6), example(1, 2)])
    assert batch["input_ids"].shape == (2, fits) and collate.truncated == 0
    assert batch["attention_mask"][1].sum() < fits  # dynamic padding: the short row is padded

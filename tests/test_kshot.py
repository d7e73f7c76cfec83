"""k-shot sampling: balance, determinism, disjoint dev split, clear errors."""

from collections import Counter

import pytest

from dept_vl.data.example import Example
from dept_vl.tasks import kshot_split, sample_k_shot


def pool(counts: dict[str, int]) -> list[Example]:
    out = []
    for label, n in counts.items():
        out += [Example(id=f"{label}-{i}", input_text=f"x {i}", target_text=label, label=label) for i in range(n)]
    return out


def test_balanced_k_per_class_and_deterministic():
    examples = pool({"yes": 30, "no": 50, "maybe": 20})
    sample = sample_k_shot(examples, k=8, seed=3)
    assert Counter(e.label for e in sample) == {"yes": 8, "no": 8, "maybe": 8}
    assert [e.id for e in sample] == [e.id for e in sample_k_shot(examples, k=8, seed=3)]
    assert [e.id for e in sample] != [e.id for e in sample_k_shot(examples, k=8, seed=4)]
    assert [e.id for e in sample] != sorted(e.id for e in sample) or len(sample) < 2  # shuffled


def test_order_of_the_pool_does_not_matter_for_the_draw_per_class():
    examples = pool({"a": 10, "b": 10})
    shuffled = examples[::-1]
    ids = {e.id for e in sample_k_shot(examples, 4, seed=1)}
    assert len(ids) == 8 and len({e.id for e in sample_k_shot(shuffled, 4, seed=1)}) == 8


def test_unlabelled_pool_gives_k_in_total():
    examples = [Example(id=str(i), input_text="q", target_text="a") for i in range(50)]
    sample = sample_k_shot(examples, k=16, seed=0)
    assert len(sample) == 16 and len({e.id for e in sample}) == 16
    labelled = pool({"a": 40, "b": 2})
    assert len(sample_k_shot(labelled, k=16, seed=0, balance=False)) == 16


def test_errors_name_the_class_and_counts():
    with pytest.raises(ValueError, match=r"class 'rare' has only 3 \(class counts: \{'common': 40, 'rare': 3\}\)"):
        sample_k_shot(pool({"common": 40, "rare": 3}), k=4, seed=0)
    with pytest.raises(ValueError, match="pool of 5"):
        sample_k_shot([Example(id=str(i), input_text="", target_text="") for i in range(5)], 6, 0)
    with pytest.raises(ValueError, match="at least 1"):
        sample_k_shot(pool({"a": 3}), 0, 0)


def test_kshot_split_is_disjoint_and_balanced():
    examples = pool({"pos": 20, "neg": 20})
    train, dev = kshot_split(examples, k=4, seed=7)
    assert Counter(e.label for e in train) == Counter(e.label for e in dev) == {"pos": 4, "neg": 4}
    assert {e.id for e in train}.isdisjoint({e.id for e in dev})
    assert [e.id for e in kshot_split(examples, 4, 7)[1]] == [e.id for e in dev]
    _, dev_big = kshot_split(examples, k=4, seed=7, dev_k=16)
    assert Counter(e.label for e in dev_big) == {"pos": 16, "neg": 16}
    with pytest.raises(ValueError, match="dev set.*class 'neg' has only"):
        kshot_split(pool({"pos": 40, "neg": 10}), k=8, seed=0)

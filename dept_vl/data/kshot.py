"""k-shot sampling as in the few-shot transfer literature (MPT, ATTEMPT): k examples per class for
classification, k in total otherwise; a disjoint k-shot dev split for model selection."""

from __future__ import annotations

import random
from collections.abc import Sequence

from dept_vl.data.example import Example


def _should_balance(examples: Sequence[Example], balance: bool | None) -> bool:
    if balance is not None:
        return balance
    return bool(examples) and all(ex.label is not None for ex in examples)


def _by_label(examples: Sequence[Example]) -> dict[str, list[Example]]:
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        if ex.label is None:
            raise ValueError(f"example {ex.id!r} has no label, so classes cannot be balanced; "
                             "pass balance=False to sample k examples in total")
        groups.setdefault(str(ex.label), []).append(ex)
    return dict(sorted(groups.items()))


def sample_k_shot(examples: Sequence[Example], k: int, seed: int,
                  balance: bool | None = None) -> list[Example]:
    """Draw a k-shot training set, deterministically for a given seed and pool order.

    Args:
        examples: the pool (usually a task's train split).
        k: examples per class when balancing, else in total.
        seed: the sampling seed.
        balance: balance on ``Example.label``; ``None`` means "when every example has a label"
            (tasks set labels exactly for classification).

    Returns:
        The sample, shuffled (class order does not leak into training order).

    Raises:
        ValueError: k < 1, or fewer than k examples (in total, or in a class, naming it).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    rng = random.Random(seed)
    if _should_balance(examples, balance):
        groups = _by_label(examples)
        counts = {label: len(group) for label, group in groups.items()}
        for label, n in counts.items():
            if n < k:
                raise ValueError(f"cannot draw k={k} examples per class: class {label!r} has only "
                                 f"{n} (class counts: {counts}); lower k or use a larger pool")
        sample = [ex for group in groups.values() for ex in rng.sample(group, k)]
    else:
        if len(examples) < k:
            raise ValueError(f"cannot draw k={k} examples from a pool of {len(examples)}; "
                             "lower k or use a larger pool")
        sample = rng.sample(list(examples), k)
    rng.shuffle(sample)
    return sample


def kshot_split(examples: Sequence[Example], k: int, seed: int, dev_k: int | None = None,
                balance: bool | None = None) -> tuple[list[Example], list[Example]]:
    """A k-shot train set and a disjoint k-shot dev set (``dev_k`` per class/in total, default k).

    Raises:
        ValueError: as :func:`sample_k_shot`, for either set (the dev set is drawn from what the
            train set left).
    """
    train = sample_k_shot(examples, k, seed, balance=balance)
    taken = {id(ex) for ex in train}
    rest = [ex for ex in examples if id(ex) not in taken]
    try:
        dev = sample_k_shot(rest, dev_k if dev_k is not None else k, seed + 1_000_003,
                            balance=_should_balance(examples, balance))
    except ValueError as err:
        raise ValueError(f"not enough examples left for the k-shot dev set after drawing the "
                         f"train set: {err}") from None
    return train, dev

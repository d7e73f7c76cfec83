"""The parameter budget of DePT against vanilla prompt tuning."""

from __future__ import annotations


def budget(prompt_tokens: int, d_model: int, max_length: int, *, min_tokens: int = 1) -> list[tuple[int, int]]:
    """(m, r) pairs whose DePT parameter count ``m*d + s*r + r*d`` fits the budget of prompt tuning with
    ``prompt_tokens`` tokens (``prompt_tokens * d``), for every rank r >= 1, closest to the budget first.

    For each r the largest m that fits is listed. ``budget(100, 768, 256)`` contains the paper's (60, 30),
    (40, 45) and (80, 15).
    """
    for name, value in (("prompt_tokens", prompt_tokens), ("d_model", d_model), ("max_length", max_length)):
        if value < 1:
            raise ValueError(f"budget: {name}={value} must be >= 1")
    total = prompt_tokens * d_model
    pairs: list[tuple[int, int]] = []
    rank = 1
    while rank * (max_length + d_model) <= total - min_tokens * d_model:
        m = (total - rank * (max_length + d_model)) // d_model
        pairs.append((m, rank))
        rank += 1
    return sorted(pairs, key=lambda mr: (total - mr[0] * d_model - mr[1] * (max_length + d_model), -mr[0]))

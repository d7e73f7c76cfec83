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


def shape_at_budget(num_parameters: int, d_model: int, max_length: int, *, num_virtual_tokens: int | None = None,
                    rank: int | None = None) -> tuple[int, int]:
    """The (m, r) of a DePT adapter with at most ``num_parameters`` parameters (``m*d + s*r + r*d``) given one of
    the two: the largest r for ``num_virtual_tokens``, or the largest m for ``rank``.

    ``shape_at_budget(60 * 768 + 30 * (256 + 768), 768, 256, num_virtual_tokens=40)`` is (40, 45), the paper's.

    Raises:
        ValueError: neither or both given, or the budget leaves nothing (r < 1 or m < 1) for the other.
    """
    if (num_virtual_tokens is None) == (rank is None):
        raise ValueError("shape_at_budget: give num_virtual_tokens or rank (exactly one)")
    if num_virtual_tokens is not None:
        r = (num_parameters - num_virtual_tokens * d_model) // (max_length + d_model)
        if r < 1:
            raise ValueError(f"num_virtual_tokens={num_virtual_tokens} leaves no rank within the budget of {num_parameters:,d} "
                             f"parameters (d={d_model}, s={max_length}); choose fewer than "
                             f"{(num_parameters - max_length - d_model) // d_model + 1} prompt tokens")
        return num_virtual_tokens, int(r)
    assert rank is not None
    m = (num_parameters - rank * (max_length + d_model)) // d_model
    if m < 1:
        raise ValueError(f"rank={rank} leaves no prompt token within the budget of {num_parameters:,d} parameters "
                         f"(d={d_model}, s={max_length}); choose a rank below {(num_parameters - d_model) // (max_length + d_model) + 1}")
    return int(m), rank

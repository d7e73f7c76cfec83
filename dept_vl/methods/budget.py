"""Every input-level method at one parameter budget: the settings of each whose trainable count fits the budget of
prompt tuning with a given number of tokens (``dept-vl budget --methods``), with their exact counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dept_vl.methods.adept import adept_parameters
from dept_vl.methods.attempt import attempt_parameters
from dept_vl.methods.mpt import mpt_parameters
from dept_vl.methods.ulpt import ulpt_parameters


@dataclass(frozen=True)
class BudgetRow:
    """One method's setting: its config overrides and its exact trainable parameter count."""

    method: str
    settings: str
    parameters: int
    note: str = ""


def _largest(total: int, count: Callable[[int, int], int], m: int) -> int:
    """The largest x >= 0 with ``count(m, x) <= total`` (counts grow with x)."""
    x = 0
    while count(m, x + 1) <= total:
        x += 1
    return x


def method_budget(prompt_tokens: int, d_model: int, max_length: int, *, fractions: tuple[float, ...] = (0.8, 0.6, 0.4),
                  mpt_tasks: int = 1) -> list[BudgetRow]:
    """The settings of prompt tuning, DePT, ADePT, ULPT, ATTEMPT and MPT within ``prompt_tokens * d_model`` trainable
    parameters, each with its exact count.

    DePT, ADePT, ATTEMPT and MPT trade prompt tokens for their other part: for m = each of ``fractions`` of
    ``prompt_tokens`` (the DePT paper's 80, 60 and 40 of 100), the largest rank r (ADePT: network width; ATTEMPT:
    attention width, its frozen source prompts of length m not counted; MPT: factor rank q, ``mpt_tasks`` tasks'
    factors) that fits. ULPT: n = ``prompt_tokens`` vectors of the largest dimension r that fits.
    """
    for name, value in (("prompt_tokens", prompt_tokens), ("d_model", d_model), ("max_length", max_length), ("mpt_tasks", mpt_tasks)):
        if value < 1:
            raise ValueError(f"method_budget: {name}={value} must be >= 1")
    d, total = d_model, prompt_tokens * d_model
    lengths = sorted({max(1, round(prompt_tokens * f)) for f in fractions}, reverse=True)
    counts: dict[str, Callable[[int, int], int]] = {
        "dept": lambda m, r: m * d + r * (max_length + d), "adept": lambda m, r: adept_parameters(m, r, d),
        "attempt": lambda m, r: attempt_parameters(m, r, d), "mpt": lambda m, q: mpt_parameters(m, q, d, mpt_tasks)}
    keys = {"dept": f"dept.rank={{}} dept.max_length={max_length}", "adept": "dept.rank={}", "attempt": "dept.rank={}",
            "mpt": "mpt.rank={}"}
    notes = {"attempt": "m: the source prompts' length", "mpt": f"{mpt_tasks} task(s)"}
    rows = [BudgetRow("prompt_tuning", f"dept.num_virtual_tokens={prompt_tokens} dept.rank=0", total)]
    for method, count in counts.items():
        for m in lengths:
            x = _largest(total, count, m)
            if x >= 1:
                rows.append(BudgetRow(method, f"dept.num_virtual_tokens={m} " + keys[method].format(x), count(m, x), notes.get(method, "")))
        if method == "adept":
            r = (total - 2 * d) // prompt_tokens
            if r >= 1:
                rows.append(BudgetRow("ulpt", f"dept.num_virtual_tokens={prompt_tokens} dept.rank={r}", ulpt_parameters(prompt_tokens, r, d)))
    return rows

"""Plain tables for notebooks and reports: lists of dicts rendered as Markdown (no pandas needed)."""

from __future__ import annotations

import math
from typing import Any, Sequence


def format_value(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` decimals (integers stay integers), None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """Rows (dicts) as a Markdown table; ``columns`` picks and orders them (default: keys in first-seen order).

    Display it in a notebook with ``IPython.display.Markdown(markdown_table(rows))``.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if not columns:
        return "(no rows)"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(row.get(c), digits) for c in columns) + " |" for row in rows]
    return "\n".join(lines)

"""Reading run outputs: the results records every adapt run writes, and their summaries."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

RECORD_FIELDS = ("task", "k", "method", "seed", "score", "metric")


def load_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/results.json`` (a JSON list of ``{task, k, method, seed, score, metric}``)."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dept-vl demo` or `dept-vl adapt` first, or point at a run folder")
    records = json.loads(path.read_text())
    for i, record in enumerate(records):
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise ValueError(f"{path}: record {i} lacks {missing}")
    return records


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (task, k, method), sorted by task, k, method."""
    groups: dict[tuple, list[float]] = {}
    metrics: dict[str, str] = {}
    for r in records:
        groups.setdefault((r["task"], int(r["k"]), r["method"]), []).append(float(r["score"]))
        metrics[r["task"]] = r["metric"]
    rows = []
    for (task, k, method), scores in sorted(groups.items()):
        rows.append({"task": task, "k": k, "method": method, "metric": metrics[task], "mean": statistics.fmean(scores),
                     "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "n": len(scores), "scores": scores})
    return rows


def transfer_gains(records: list[dict[str, Any]], k: int, treated: str = "dept-transfer", control: str = "dept-scratch") -> list[dict[str, Any]]:
    """Per task at ``k``: mean of each arm, relative gain of ``treated`` over ``control``, and the gain in
    units of the larger seed standard deviation (the demo's criterion: more than 2)."""
    rows = {(r["task"], r["method"]): r for r in summarize(records) if r["k"] == k}
    out = []
    for task in sorted({t for t, _ in rows}):
        a, b = rows.get((task, treated)), rows.get((task, control))
        if a is None or b is None:
            continue
        spread = max(a["std"], b["std"])
        gain = a["mean"] - b["mean"]
        out.append({
            "task": task, "k": k, "metric": a["metric"], treated: a["mean"], control: b["mean"], "gain": gain,
            "relative_gain": gain / abs(b["mean"]) if b["mean"] else float("inf") if gain > 0 else 0.0,
            "gain_over_std": gain / spread if spread > 0 else (float("inf") if gain > 0 else 0.0),
        })
    return out


def load_json(path: str | Path, default: Any = None) -> Any:
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else default

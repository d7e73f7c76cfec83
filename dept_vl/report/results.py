"""Reading run outputs: the results records every adapt run writes, and their summaries."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

RECORD_FIELDS = ("task", "k", "method", "seed", "score", "metric")
HEADLINE_K = 16  # the k the demo reports


def headline_k(ks: list[int] | set[int]) -> int:
    """The k a report leads with: 16 when the run has it, else the middle of the run's k values."""
    ordered = sorted(ks)
    return HEADLINE_K if HEADLINE_K in ordered else ordered[len(ordered) // 2]


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


SEARCHED = ("lr_prompt", "lr_lowrank", "num_virtual_tokens", "rank")  # record fields of a search (absent outside one)


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (task, k, method) and, in a search (learning rates, shapes), per setting
    (the rows then carry ``lr_prompt`` / ``lr_lowrank``); sorted by task, k, method, setting."""
    groups: dict[tuple, list[float]] = {}
    metrics: dict[str, str] = {}
    for r in records:
        setting = tuple((f, r[f]) for f in SEARCHED if f in r)
        groups.setdefault((r["task"], int(r["k"]), r["method"], setting), []).append(float(r["score"]))
        metrics[r["task"]] = r["metric"]
    rows = []
    for (task, k, method, setting), scores in sorted(groups.items()):
        rows.append({"task": task, "k": k, "method": method, **dict(setting), "metric": metrics[task], "mean": statistics.fmean(scores),
                     "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "n": len(scores), "scores": scores})
    return rows


def select_by_dev(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A search's choice per (task, method, k): the setting with the best mean k-shot dev score over
    seeds (ties: the first in sorted order), with its test mean and std, and every setting's dev and test means."""
    by_setting: dict[tuple, dict[tuple, list[dict[str, Any]]]] = {}
    for r in records:
        setting = tuple((f, r[f]) for f in SEARCHED if f in r)
        by_setting.setdefault((r["task"], r["method"], int(r["k"])), {}).setdefault(setting, []).append(r)
    rows = []
    for (task, method, k), settings in sorted(by_setting.items()):
        table = [{**dict(setting), "dev_mean": statistics.fmean(float(r["dev_score"]) for r in runs),
                  "test_mean": statistics.fmean(float(r["score"]) for r in runs), "seeds": len(runs)}
                 for setting, runs in sorted(settings.items())]
        best = max(range(len(table)), key=lambda i: (table[i]["dev_mean"], -i))
        scores = [float(r["score"]) for r in sorted(settings.items())[best][1]]
        rows.append({"task": task, "method": method, "k": k, "best": {f: table[best][f] for f in SEARCHED if f in table[best]},
                     "dev_mean": table[best]["dev_mean"], "mean": statistics.fmean(scores),
                     "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "seeds": len(scores), "settings": table})
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
    """The JSON content of ``path``, or ``default`` when there is no such file."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else default


# ------------------------------------------------------------------ tables and folders for the notebooks
# the demo's arms first, in the order the issue names them; any other method follows alphabetically
METHOD_ORDER = ("dept-transfer", "dept-scratch", "pt-transfer")
SOURCE_STAGES = ("source_dept", "source_pt")


def ordered_methods(methods: Any) -> list[str]:
    """``methods`` (any iterable of names, repeats allowed) in display order: the demo's arms, then the rest sorted."""
    names = set(methods)
    return [m for m in METHOD_ORDER if m in names] + sorted(names - set(METHOD_ORDER))


def score_table(records: list[dict[str, Any]], digits: int = 3) -> list[dict[str, Any]]:
    """One row per (task, k), one column per method holding ``"mean ± std"`` over seeds (empty when missing).

    Rows carry ``task``, ``metric``, ``k`` and ``seeds`` (the largest seed count of the row's methods).
    """
    rows = summarize(records)
    methods = ordered_methods(r["method"] for r in rows)
    table: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        row = table.setdefault((r["task"], r["k"]), {"task": r["task"], "metric": r["metric"], "k": r["k"], "seeds": 0,
                                                      **{m: "" for m in methods}})
        row[r["method"]] = f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}"
        row["seeds"] = max(row["seeds"], r["n"])
    return [table[key] for key in sorted(table)]


def gains_by_k(records: list[dict[str, Any]], treated: str = "dept-transfer", control: str = "dept-scratch") -> list[dict[str, Any]]:
    """:func:`transfer_gains` at every k of the records, sorted by task then k."""
    ks = sorted({int(r["k"]) for r in records})
    rows = [g for k in ks for g in transfer_gains(records, k, treated, control)]
    return sorted(rows, key=lambda g: (g["task"], g["k"]))


def load_full_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/results_full.json`` (the public fields plus metrics, costs and sizes per run);
    falls back to ``results.json`` when the run wrote no full file."""
    path = Path(run_dir) / "results_full.json"
    return json.loads(path.read_text()) if path.is_file() else load_results(run_dir)


def source_stages(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per source stage of a demo run (``source_dept``, ``source_pt``) from its ``metrics.json``:
    best mean dev headline, its step, steps, trainable parameters, seconds. Missing stages are left out."""
    rows = []
    for label in SOURCE_STAGES:
        m = load_json(Path(run_dir) / label / "metrics.json")
        if m:
            rows.append({"stage": label, "best_dev": m.get("best_score"), "best_step": m.get("best_step"),
                         "steps": m.get("steps"), "trainable_parameters": m.get("trainable_parameters"),
                         "seconds": m.get("seconds")})
    return rows


def source_curves(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Dev score vs step per source stage, from the ``eval`` lines of ``<stage>/log.jsonl``."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for label in SOURCE_STAGES:
        path = Path(run_dir) / label / "log.jsonl"
        if not path.is_file():
            continue
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        points = [(int(x["step"]), float(x["eval"])) for x in lines if "eval" in x and "step" in x]
        if points:
            curves[label] = points
    return curves


def find_project_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) that holds this
    project (``pyproject.toml`` beside a ``dept_vl`` folder), or None."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "dept_vl").is_dir():
            return folder
    return None


def resolve_path(path: str | Path, start: str | Path | None = None) -> Path:
    """Where a path given in a notebook points: absolute as is; relative ones from the working directory
    when they exist there, else from the project root (so ``runs/demo`` works from ``notebooks/`` too)."""
    path = Path(path).expanduser()
    base = Path(start or Path.cwd())
    if path.is_absolute() or (base / path).exists():
        return path if path.is_absolute() else (base / path).resolve()
    root = find_project_root(base)
    return (root / path).resolve() if root is not None else (base / path).resolve()

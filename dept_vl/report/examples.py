"""Predictions of adapt runs next to their examples: image grids (question, prediction, answer; generated vs
reference captions) and metric breakdowns (e.g. VQA accuracy per question type).

A run folder holds ``adapt/<task>/<method>/runs/<label>_k<k>_seed<seed>/predictions.jsonl`` (lines ``{id, input,
prediction, reference, image_id}``) and ``adapt/<task>/<method>/config.yaml``; images are not stored there,
they come back from the task itself (the synthetic world regenerates them deterministically).
"""

from __future__ import annotations

import json
import re
import statistics
import textwrap
import warnings
from pathlib import Path
from typing import Any, Callable

import yaml

from dept_vl.report.plots import _finish, _pyplot
from dept_vl.report.results import headline_k, ordered_methods

RUN_NAME = re.compile(r"^(?:(?P<label>.+)_)?k(\d+)_seed(\d+)$")  # <label>_k<k>_seed<s> (or 0.1's k<k>_seed<s>)


# ------------------------------------------------------------------ finding runs and their examples
def list_runs(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every adapt run with predictions under ``run_dir``: ``{task, method, k, seed, path}``, sorted."""
    runs = []
    for path in Path(run_dir).glob("adapt/*/*/runs/*/predictions.jsonl"):
        match = RUN_NAME.match(path.parent.name)
        if match:
            task, method = path.parents[3].name, path.parents[2].name
            runs.append({"task": task, "method": method, "k": int(match[2]), "seed": int(match[3]), "path": path})
    return sorted(runs, key=lambda r: (r["task"], r["method"], r["k"], r["seed"]))


def run_tasks(run_dir: str | Path, kinds: tuple[str, ...] | None = None) -> list[str]:
    """Tasks with predictions in ``run_dir``, optionally only those of the given kinds (``vqa``, ``caption``...)."""
    from dept_vl.tasks import get_task

    tasks = sorted({r["task"] for r in list_runs(run_dir)})
    return [t for t in tasks if kinds is None or get_task(t).kind in kinds]


def pick_run(run_dir: str | Path, task: str, method: str = "dept-transfer", k: int | None = None,
             seed: int | None = None) -> dict[str, Any]:
    """One run of ``task`` and ``method``: at ``k`` (default: 16 when run, else the middle k) and ``seed``
    (default: the smallest).

    Raises:
        ValueError: no such run, naming what the folder holds.
    """
    runs = [r for r in list_runs(run_dir) if r["task"] == task and r["method"] == method]
    ks = sorted({r["k"] for r in runs})
    if k is None and ks:
        k = headline_k(ks)
    runs = [r for r in runs if r["k"] == k and (seed is None or r["seed"] == seed)]
    if not runs:
        held = sorted({(r["task"], r["method"], r["k"]) for r in list_runs(run_dir)})
        raise ValueError(f"no run of task {task!r}, method {method!r}, k={k}, seed={seed} in {run_dir}; it holds {held}")
    return min(runs, key=lambda r: r["seed"])


def load_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a ``predictions.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def run_settings(run_dir: str | Path, task: str, method: str) -> dict[str, Any]:
    """How an arm's test examples were loaded (from its ``config.yaml``): split, format, data_dir, eval_size."""
    path = Path(run_dir) / "adapt" / task / method / "config.yaml"
    cfg = yaml.safe_load(path.read_text()) if path.is_file() else {}
    data, evaluation = cfg.get("data") or {}, cfg.get("eval") or {}
    return {"split": evaluation.get("split", "test"), "format": data.get("format", "default"),
            "data_dir": data.get("data_dir"), "eval_size": data.get("eval_size")}


def attach_examples(run_dir: str | Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The predictions of ``run`` (a row of :func:`list_runs`), each joined with its task example:
    ``{id, example, image, header, question, prediction, references, correct}``.

    ``question`` is the input without the shifted format's conflicting header (kept in ``header``);
    ``correct`` is None for captions (scored per corpus, not per example).
    """
    from dept_vl.tasks import get_task
    from dept_vl.metrics.vqa import normalize_vqa_answer

    task = get_task(run["task"])
    settings = run_settings(run_dir, run["task"], run["method"])
    fmt = settings["format"] if settings["format"] in task.formats or settings["format"] == "default" else "default"
    size = {"size": settings["eval_size"]} if task.family == "shapes" and settings["eval_size"] else {}
    examples = {e.id: e for e in task.load(settings["split"], data_dir=settings["data_dir"], fmt=fmt, **size)}
    items = []
    for row in load_predictions(run["path"]):
        example = examples.get(row["id"])
        refs = row["reference"] if isinstance(row["reference"], list) else [row["reference"]]
        header = example.meta.get("header", "") if example is not None else ""
        text = row["input"]
        question = text[len(header):].strip() if header and text.startswith(header) else text
        if task.kind == "caption":
            correct = None
        elif task.kind == "vqa":
            correct = normalize_vqa_answer(row["prediction"]) in {normalize_vqa_answer(r) for r in refs}
        else:
            correct = row["prediction"].strip() in {r.strip() for r in refs}
        items.append({"id": row["id"], "example": example, "image": getattr(example, "image", None), "header": header,
                      "question": question, "prediction": row["prediction"], "references": refs, "correct": correct})
    return items


# ------------------------------------------------------------------ breakdowns
def question_type(item: dict[str, Any]) -> str:
    """The question type of an item: its example's ``meta["question_type"]`` when it has one (VQA v2's field; the
    synthetic world's visual questions carry one too), else the question's first two words (VQA v2's convention)."""
    example = item.get("example")
    if example is not None and example.meta.get("question_type"):
        return str(example.meta["question_type"])
    text = item["question"].removeprefix("question:").strip().rstrip("?").strip()
    return " ".join(text.split()[:2])


BREAKDOWNS: dict[str, Callable[[dict[str, Any]], str]] = {
    "question_type": question_type,
    "answer": lambda item: item["references"][0],
    "header_type": lambda item: str(item["example"].meta.get("header_type", "none")) if item.get("example") else "none",
}


def breakdown(task: str, items: list[dict[str, Any]], by: str | Callable[[dict[str, Any]], str] = "question_type") -> list[dict[str, Any]]:
    """The task's headline metric per group of items, sorted by group, then ``(all)`` over every item; items
    without an example are left out. ``by``: a name of :data:`BREAKDOWNS` (the rows' group column is named after
    it) or a function of an item (the column is ``group``)."""
    from dept_vl.tasks import get_task

    spec = get_task(task)
    key = BREAKDOWNS[by] if isinstance(by, str) else by
    name = by if isinstance(by, str) else "group"
    items = [i for i in items if i.get("example") is not None]
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    groups = {**dict(sorted(groups.items())), "(all)": items} if items else {}
    rows = []
    with warnings.catch_warnings():  # a group often holds one label only, which sklearn warns about
        warnings.simplefilter("ignore", UserWarning)
        for group, members in groups.items():
            scores = spec.evaluate([m["prediction"] for m in members], [m["example"] for m in members])
            rows.append({name: group, "n": len(members), "metric": spec.headline_metric, "score": scores["headline"]})
    return rows


def method_breakdown(run_dir: str | Path, task: str, by: str = "question_type", k: int | None = None) -> list[dict[str, Any]]:
    """:func:`breakdown` for every method of ``task`` at ``k`` (default as :func:`pick_run`), each the mean over
    its seeds: one row per group, one column per method."""
    runs = [r for r in list_runs(run_dir) if r["task"] == task]
    if k is None:
        k = pick_run(run_dir, task, runs[0]["method"])["k"] if runs else None
    scores: dict[str, dict[str, list[float]]] = {}
    sizes: dict[str, int] = {}
    for run in (r for r in runs if r["k"] == k):
        for row in breakdown(task, attach_examples(run_dir, run), by):
            scores.setdefault(row[by], {}).setdefault(run["method"], []).append(row["score"])
            sizes[row[by]] = row["n"]
    methods = ordered_methods(r["method"] for r in runs)
    return [{by: group, "n": sizes[group], "k": k,
             **{m: statistics.fmean(per[m]) if m in per else None for m in methods}} for group, per in scores.items()]


# ------------------------------------------------------------------ showing examples
def examples_table(items: list[dict[str, Any]], n: int = 8) -> list[dict[str, Any]]:
    """The first ``n`` items as table rows: header, question (or input), prediction, reference, correct."""
    return [{"id": i["id"], "header": i["header"], "input": i["question"], "prediction": i["prediction"],
             "reference": " / ".join(i["references"][:2]), "correct": i["correct"]} for i in items[:n]]


def plot_examples_grid(items: list[dict[str, Any]], n: int = 8, cols: int = 4, width: int = 30, path: str | Path | None = None):
    """The first ``n`` items with images: the image, its question, the prediction and the answer (green when
    right, red when wrong; black for captions, shown as generated vs reference)."""
    plt = _pyplot()
    shown = [i for i in items if i.get("image") is not None][:n]
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, shown):
        ax.imshow(item["image"], interpolation="nearest")
        caption = item["correct"] is None
        lines = ([] if caption else textwrap.wrap(item["question"], width))
        lines += textwrap.wrap(("generated: " if caption else "prediction: ") + item["prediction"], width)
        lines += textwrap.wrap(("reference: " if caption else "answer: ") + " / ".join(item["references"][:2]), width)
        color = "black" if caption else ("tab:green" if item["correct"] else "tab:red")
        ax.set_title("\n".join(lines), fontsize=7, color=color, loc="left")
    if not shown:
        axes[0][0].text(0.5, 0.5, "no examples with images", ha="center", va="center")
    fig.tight_layout()
    return _finish(plt, fig, path)

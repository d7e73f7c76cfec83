"""The demo's method comparison (``dept-vl demo --methods``): the DePT family and the few-shot transfer baselines
side by side on the synthetic world's targets, at one parameter budget, with the same seeds, source tasks and
target protocol as the demo's three arms.

Every method spends DePT's budget (``m*d + r*(s + d)``, 1,152 parameters on the shipped backbone) as
:func:`dept_vl.methods.budget.method_budget` lays it out at DePT's m (ULPT: n = the budget's tokens), and trains
at the demo recipes' learning rates (no per-method tuning). ADePT, ULPT and MPT get a source stage on the demo's
source mixture, as DePT does, and transfer its adapter; ATTEMPT (whose transfer is its frozen source prompts)
gets one prompt-tuning source prompt per source task, each trained on that task alone for a third of the source
steps, and trains its target prompt and attention on the target. SPoT is the demo's ``pt-transfer``.
Writes ``methods.json`` (every record) and ``methods.md`` (the table).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from dept_vl.config import RunConfig, load_config, recipe_path
from dept_vl.io import write_json_atomic, write_text_atomic

# arm name -> (method, how it transfers); the demo's own arms come first, from its results.json
DEMO_ARMS = ("dept-transfer", "dept-scratch", "pt-transfer")
FAMILY_ARMS = {"adept-transfer": "adept", "ulpt-transfer": "ulpt", "mpt-transfer": "mpt", "attempt-transfer": "attempt"}


def _recipe(name: str, overrides: list[str]) -> RunConfig:
    return load_config(recipe_path(name), overrides)


def budget_overrides(recipe: Any, d_model: int) -> dict[str, list[str]]:
    """Each family method's ``key=value`` settings at the budget of the recipe's DePT (m, r, s)."""
    from dept_vl.methods.budget import method_budget

    dept = recipe.dept
    tokens = dept.num_parameters(d_model) // d_model
    rows = method_budget(tokens, d_model, dept.max_length, fractions=(dept.num_virtual_tokens / tokens,),
                         mpt_tasks=len(recipe.data.tasks))
    chosen = {}
    for row in rows:
        if row.method in FAMILY_ARMS.values() and row.method not in chosen:
            chosen[row.method] = row.settings.split()
    return chosen


def run_methods(settings: Any, out: Path, common: list[str], backbone: Path) -> dict[str, Any]:
    """Source stages and target sweeps of the family arms on ``backbone``; returns their records and timings,
    writes the table with the demo's own arms (read from ``out/results_full.json``)."""
    from dept_vl.models.backbone import load_backbone
    from dept_vl.recipes.adapt import run_adapt
    from dept_vl.recipes.pretrain import run_pretrain

    recipe = _recipe("shapes_pretrain", common)
    d_model = int(load_backbone(backbone).text_model.config.d_model)
    chosen = budget_overrides(recipe, d_model)
    source_common = common + [
        f"train.max_steps={settings.source_steps}", f"data.train_size={settings.source_train_size}",
        f"data.eval_size={settings.source_eval_size}", f"train.eval_every={max(1, settings.source_steps // 3)}",
        f"train.save_every={max(1, settings.source_steps // 3)}", f"train.warmup_steps={min(100, settings.source_steps // 10)}"]
    timings: dict[str, float] = {}
    sources: dict[str, Path] = {}
    for method in ("adept", "ulpt", "mpt"):
        t = time.perf_counter()
        print(f"[methods] source stage: {method} on the source tasks ({' '.join(chosen[method])})")
        folder = out / "methods" / f"source_{method}"
        run_pretrain(_recipe("shapes_pretrain", source_common + [f"method={method}", f"output_dir={folder}", *chosen[method]]),
                     overwrite=True, show_progress=False)
        sources[method] = folder / "adapter"
        timings[f"source_{method}"] = time.perf_counter() - t
    prompts = []
    m = recipe.dept.num_virtual_tokens
    for task in recipe.data.tasks:  # ATTEMPT's source prompts: prompt tuning of length m, one per source task
        t = time.perf_counter()
        steps = max(1, settings.source_steps // 3)
        print(f"[methods] ATTEMPT's source prompt: prompt tuning (m={m}) on {task} alone, {steps} steps")
        folder = out / "methods" / f"prompt_{task}"
        run_pretrain(_recipe("shapes_pretrain", source_common + [
            "method=prompt_tuning", f"output_dir={folder}", f"data.tasks=[{task}]", f"dept.num_virtual_tokens={m}", "dept.rank=0",
            f"train.max_steps={steps}", f"train.eval_every={max(1, steps // 3)}", f"train.save_every={max(1, steps // 3)}"]),
            overwrite=True, show_progress=False)
        prompts.append(str(folder / "adapter"))
        timings[f"prompt_{task}"] = time.perf_counter() - t

    records: list[dict[str, Any]] = []
    for task in settings.targets:
        for arm, method in FAMILY_ARMS.items():
            t = time.perf_counter()
            print(f"[methods] {task}: {arm}, k={settings.k}, seeds={settings.seeds}")
            transfer = ([f"attempt.sources=[{','.join(prompts)}]", "adapt.source=none"] if method == "attempt"
                        else [f"adapt.source={sources[method]}"])
            cfg = _recipe("shapes_adapt", common + [
                f"method={method}", *chosen[method], *transfer, f"output_dir={out / 'methods' / 'adapt' / task / arm}",
                f"adapt.task={task}", f"adapt.k={settings.k}", f"adapt.seeds={settings.seeds}",
                f"train.max_steps={settings.target_steps}", f"train.eval_every={max(1, settings.target_steps // 4)}",
                f"train.warmup_steps={max(1, settings.target_steps // 10)}", f"data.eval_size={settings.target_eval_size}",
                f"data.train_size={settings.target_pool_size}"])
            result = run_adapt(cfg, overwrite=True, show_progress=False)
            for r in result["records"]:
                r["method"] = arm
            records += result["records"]
            timings[f"adapt/{task}/{arm}"] = time.perf_counter() - t
    demo = [r for r in json.loads((out / "results_full.json").read_text()) if r["method"] in DEMO_ARMS]
    every = demo + records
    write_json_atomic(out / "methods.json", every)
    table = methods_table(every)
    write_text_atomic(out / "methods.md", table)
    print(table)
    return {"records": records, "timings": timings, "table": table, "settings": chosen}


def methods_table(records: list[dict[str, Any]]) -> str:
    """Markdown: one row per (target, k), one column per arm (mean ± std over seeds, the row's best in bold), and
    a first row of each arm's trainable parameters (its target runs')."""
    arms = [a for a in (*DEMO_ARMS, *FAMILY_ARMS) if any(r["method"] == a for r in records)]
    params = {a: next(r.get("trainable_parameters") for r in records if r["method"] == a) for a in arms}
    cells: dict[tuple[str, int], dict[str, list[float]]] = {}
    for r in records:
        cells.setdefault((r["task"], int(r["k"])), {}).setdefault(r["method"], []).append(float(r["score"]))
    lines = ["| target | k | " + " | ".join(arms) + " |", "|---|---|" + "---|" * len(arms),
             "| trainable parameters | | " + " | ".join(f"{params[a]:,}" if params[a] else "?" for a in arms) + " |"]
    for (task, k), by_arm in sorted(cells.items()):
        means = {a: statistics.fmean(v) for a, v in by_arm.items()}
        best = max(means.values())
        row = []
        for a in arms:
            if a not in by_arm:
                row.append("–")
                continue
            std = statistics.stdev(by_arm[a]) if len(by_arm[a]) > 1 else 0.0
            text = f"{means[a]:.3f} ± {std:.3f}"
            row.append(f"**{text}**" if means[a] == best else text)
        lines.append(f"| {task} | {k} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"

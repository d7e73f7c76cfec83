"""The demo's report: runs/demo/report.md with the results table, the transfer gains, plots and samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dept_vl.io import write_text_atomic
from dept_vl.report import plot_costs, plot_score_vs_k, summarize, transfer_gains
from dept_vl.report.results import headline_k


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def write_report(out: Path, records: list[dict], costs: dict, sources: dict, timings: dict, backbone: Path,
                 test_size: int = 1000, zero_shot: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    plot_score_vs_k(records, plots / "score_vs_k.png")
    arm_costs = {k: v for k, v in costs.items() if v}
    if arm_costs:
        plot_costs(arm_costs, plots / "costs.png")
    rows = summarize(records)
    ks = sorted({r["k"] for r in rows})
    k_head = headline_k(ks)
    gains = transfer_gains(records, k_head)
    mean_rel = sum(g["relative_gain"] for g in gains) / len(gains) if gains else 0.0
    beyond = sum(1 for g in gains if g["gain_over_std"] > 2)
    headline = (f"at k={k_head}, DePT from the source adapter vs from scratch: mean relative gain {100 * mean_rel:+.1f}% "
                f"over {len(gains)} target tasks; gain > 2 std on {beyond} of {len(gains)}")

    lines = ["# dept-vl demo report", "", f"Backbone: `{backbone.name}` (frozen). {headline}.", "",
             "## Scores (mean ± std over seeds)", "", "| task | metric | k | method | mean | std | seeds |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['metric']} | {r['k']} | {r['method']} | {_fmt(r['mean'])} | {_fmt(r['std'])} | {r['n']} |" for r in rows]
    lines += ["", f"## Transfer vs scratch at k={k_head}", "",
              "| task | dept-transfer | dept-scratch | gain | relative gain | gain / std |", "|---|---|---|---|---|---|"]
    lines += [f"| {g['task']} | {_fmt(g['dept-transfer'])} | {_fmt(g['dept-scratch'])} | {_fmt(g['gain'])} | "
              f"{100 * g['relative_gain']:+.1f}% | {g['gain_over_std']:.1f} |" for g in gains]
    lines += ["", "Relative gain: the gain over the scratch mean. Gain / std: the gain over the larger of the two arms' "
              "standard deviations over seeds."]
    if zero_shot:
        columns = list(next(iter(zero_shot.values())))
        lines += ["", "## Zero-shot (no target training): what the format shift costs, what the source adapter carries", "",
                  "| task | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        lines += [f"| {task} | " + " | ".join(_fmt(scores[c]) for c in columns) + " |" for task, scores in sorted(zero_shot.items())]
    lines += ["", "![score vs k](plots/score_vs_k.png)", "", "## Source stage", "",
              "| adapter | mean dev headline (best) | best step | steps | trainable parameters | seconds |", "|---|---|---|---|---|---|"]
    for label, s in sources.items():
        lines.append(f"| {label} | {_fmt(s['best_score'])} | {s['best_step']} | {s['steps']} | {s['trainable_parameters']} | {s['seconds']:.1f} |")
    if arm_costs:
        lines += ["", "## Cost per method (target stage, median over runs)", "",
                  "| method | trainable parameters | step time (ms) | examples/s | peak memory (MB) |", "|---|---|---|---|---|"]
        lines += [f"| {m} | {c['trainable_parameters']} | {c['step_time_ms']:.1f} | {c['examples_per_s']:.0f} | {c['peak_memory_mb']:.0f} |"
                  for m, c in arm_costs.items()]
        lines += ["", "![costs](plots/costs.png)"]
    lines += ["", "## Time per stage (seconds)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items() if "/" not in k]
    lines += ["", "## Sample predictions", ""] + _samples(out, records, test_size)
    write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
    return {"headline": headline, "gains": gains, "k": k_head}


def _samples(out: Path, records: list[dict], test_size: int, per_task: int = 3) -> list[str]:
    """A few test examples per target task, from the dept-transfer run at the middle k and seed 0."""
    from dept_vl.tasks import get_task

    lines: list[str] = []
    samples_dir = out / "samples"
    for task in sorted({r["task"] for r in records}):
        ks = sorted({r["k"] for r in records if r["task"] == task})
        k = headline_k(ks)
        seed = min(r["seed"] for r in records if r["task"] == task)
        path = out / "adapt" / task / "dept-transfer" / "runs" / f"dept-transfer_k{k}_seed{seed}" / "predictions.jsonl"
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines()[:per_task]]
        lines += [f"**{task}** (dept-transfer, k={k}, seed {seed})", "", "| image | input | prediction | reference |", "|---|---|---|---|"]
        images = {}
        if get_task(task).has_images:
            examples = {e.id: e for e in get_task(task).load("test", fmt="shifted", size=test_size)}
            samples_dir.mkdir(exist_ok=True)
            for row in rows:
                example = examples.get(row["id"])
                if example is not None and example.image is not None:
                    name = f"{task}_{row['id'].replace('/', '_')}.png"
                    example.image.resize((96, 96)).save(samples_dir / name)
                    images[row["id"]] = f"![](samples/{name})"
        for row in rows:
            ref = row["reference"] if isinstance(row["reference"], str) else " / ".join(row["reference"][:2])
            lines.append(f"| {images.get(row['id'], '')} | {row['input']} | {row['prediction']} | {ref} |")
        lines.append("")
    return lines

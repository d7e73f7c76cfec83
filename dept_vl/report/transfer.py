"""The source-task transfer matrix: each target's k-shot score from each source adapter against from scratch.

Cells are built from the k-shot sweeps' records (``results.json`` of each sweep): per (target, k, source), the
mean and standard deviation over seeds, the gain over the same target's scratch runs, and the gain in units of
the larger seed standard deviation (the demo's criterion: more than 2).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

SCRATCH = "scratch"


def matrix_rows(sweeps: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One row per (target, k, source) from ``sweeps[target][source or "scratch"] = records``; sorted by target,
    k, then source (scratch first). Each row: ``mean``, ``std``, ``seeds`` and, for a source,
    ``gain`` / ``gain_over_std`` against scratch (None without scratch runs)."""
    rows = []
    for target in sorted(sweeps):
        by_k: dict[int, dict[str, list[float]]] = {}
        metric = {}
        for source, records in sweeps[target].items():
            for r in records:
                by_k.setdefault(int(r["k"]), {}).setdefault(source, []).append(float(r["score"]))
                metric[source] = r["metric"]
        for k in sorted(by_k):
            base = by_k[k].get(SCRATCH)
            for source in sorted(by_k[k], key=lambda s: (s != SCRATCH, s)):
                scores = by_k[k][source]
                row = {"target": target, "k": k, "source": source, "metric": metric[source], "mean": statistics.fmean(scores),
                       "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "seeds": len(scores)}
                if source != SCRATCH:
                    gain = row["mean"] - statistics.fmean(base) if base else None
                    spread = max(row["std"], statistics.stdev(base) if base and len(base) > 1 else 0.0)
                    row["gain"] = gain
                    row["gain_over_std"] = None if gain is None else (gain / spread if spread > 0 else
                                                                     (float("inf") if gain > 0 else 0.0))
                rows.append(row)
    return rows


def matrix_markdown(rows: list[dict[str, Any]]) -> str:
    """Per k, a table: sources down, targets across, ``mean ± std (gain)``."""
    lines = []
    for k in sorted({r["k"] for r in rows}):
        targets = sorted({r["target"] for r in rows if r["k"] == k})
        sources = sorted({r["source"] for r in rows if r["k"] == k}, key=lambda s: (s != SCRATCH, s))
        cell = {(r["source"], r["target"]): r for r in rows if r["k"] == k}
        lines += [f"### k = {k}", "", "| source | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
        for source in sources:
            cells = []
            for target in targets:
                r = cell.get((source, target))
                if r is None:
                    cells.append("–")
                    continue
                gain = f" ({r['gain']:+.4f})" if r.get("gain") is not None else ""
                cells.append(f"{r['mean']:.4f} ± {r['std']:.4f}{gain}")
            lines.append(f"| {source} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_transfer_matrix(rows: list[dict[str, Any]], path: str | Path | None = None):
    """One heatmap per k: sources down, targets across, colour = gain over scratch, cell text = mean score."""
    from dept_vl.report.plots import _pyplot

    plt = _pyplot()
    ks = sorted({r["k"] for r in rows})
    targets = sorted({r["target"] for r in rows})
    sources = sorted({r["source"] for r in rows if r["source"] != SCRATCH})
    fig, axes = plt.subplots(1, len(ks), figsize=(1.6 + 1.4 * len(targets) * len(ks), 1.2 + 0.5 * len(sources)), squeeze=False)
    limit = max([abs(r["gain"]) for r in rows if r.get("gain") is not None] + [1e-9])
    for ax, k in zip(axes[0], ks):
        cell = {(r["source"], r["target"]): r for r in rows if r["k"] == k}
        grid = [[(cell[(s, t)].get("gain") if (s, t) in cell and cell[(s, t)].get("gain") is not None else float("nan"))
                 for t in targets] for s in sources]
        image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        for i, s in enumerate(sources):
            for j, t in enumerate(targets):
                if (s, t) in cell:
                    ax.text(j, i, f"{cell[(s, t)]['mean']:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(sources)), sources, fontsize=8)
        ax.set_title(f"k = {k}: gain over scratch", fontsize=9)
    fig.colorbar(image, ax=list(axes[0]), shrink=0.8)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig

"""Plots of run results (matplotlib, headless): score vs k per task, and cost per method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dept_vl.report.results import summarize


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_score_vs_k(records: list[dict[str, Any]], path: str | Path | None = None):
    """One panel per task: mean score vs k per method, with the seed standard deviation as error bars."""
    plt = _pyplot()
    rows = summarize(records)
    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in sorted({r["method"] for r in rows if r["task"] == task}):
            line = [r for r in rows if r["task"] == task and r["method"] == method]
            ax.errorbar([r["k"] for r in line], [r["mean"] for r in line], yerr=[r["std"] for r in line],
                        marker="o", capsize=3, label=method)
        ax.set_xscale("log", base=2)
        ax.set_title(task)
        ax.set_xlabel("k")
        ax.set_ylabel(line[0]["metric"] if line else "score")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_costs(costs: dict[str, dict[str, float]], path: str | Path | None = None):
    """Bars per method: median step time, peak memory and trainable parameters."""
    plt = _pyplot()
    methods = list(costs)
    keys = [("step_time_ms", "step time (ms)"), ("peak_memory_mb", "peak memory (MB)"), ("trainable_parameters", "trainable parameters")]
    fig, axes = plt.subplots(1, len(keys), figsize=(11, 3))
    for ax, (key, title) in zip(axes, keys):
        ax.bar(methods, [costs[m].get(key, 0.0) for m in methods], color="tab:blue")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig

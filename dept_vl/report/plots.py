"""Plots of run results (matplotlib, headless): score vs k per task, and cost per method."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from dept_vl.report.results import summarize


def _pyplot():
    import matplotlib

    # headless unless a backend was chosen (MPLBACKEND, or pyplot already set up: Jupyter's inline backend)
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
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


def plot_gains(gains: list[dict[str, Any]], path: str | Path | None = None):
    """Relative gain (%) of the treated arm over the control vs k, one line per task (rows of ``gains_by_k``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for task in sorted({g["task"] for g in gains}):
        line = sorted((g for g in gains if g["task"] == task), key=lambda g: g["k"])
        ax.plot([g["k"] for g in line], [100 * g["relative_gain"] for g in line], marker="o", label=task)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ks = sorted({g["k"] for g in gains})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("relative gain (%)")
    ax.set_title("transfer vs scratch")
    ax.grid(alpha=0.3)
    if gains:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(plt, fig, path)


def plot_source_curves(curves: dict[str, list[tuple[int, float]]], path: str | Path | None = None):
    """Mean dev headline vs step of each source stage (the output of ``source_curves``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for label, points in curves.items():
        ax.plot([s for s, _ in points], [v for _, v in points], marker=".", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("mean dev headline")
    ax.set_title("source stage")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _finish(plt, fig, path)


def show_figure(fig) -> None:
    """Show a figure now in a notebook (e.g. inside a loop, between tables) and close it, so that the inline
    backend does not show it a second time at the end of the cell."""
    from IPython.display import display

    display(fig)
    _pyplot().close(fig)


def _finish(plt, fig, path: str | Path | None):
    """Save to ``path`` (and close) when given; return the figure either way."""
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig

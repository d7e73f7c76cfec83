"""Cost per method: the demo's own measurements (``costs.json``, ``results_full.json``) and, where a run of
``benchmarks/train_step.py`` left its JSON, the benchmark's rows (DePT, prompt tuning, LoRA, full fine-tuning).

Everything here reads files that may be missing: absent inputs give None or empty tables, never errors.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from dept_vl.report.plots import _finish, _pyplot
from dept_vl.report.results import load_full_results, load_json, ordered_methods

BENCH_SCHEMA = "dept-vl-bench/1"
COST_KEYS = ("trainable_parameters", "step_time_ms", "examples_per_s", "peak_memory_mb")
# the benchmark's row names, for humans; a ``_biased`` suffix adds " + biased attention"
VARIANT_LABELS = {
    "reference": "DePT, reference setting (pad 256, fp32, eager)",
    "dept_fast": "DePT (fast path)",
    "dept_eager": "DePT (fast path, not compiled)",
    "pt100_fast": "prompt tuning, 100 tokens (fast path)",
    "peft_pt100": "prompt tuning, 100 tokens (HF peft)",
    "peft_lora": "LoRA r=8 on q, v (HF peft)",
    "full_ft": "full fine-tuning",
}


# ------------------------------------------------------------------ the demo's costs
def demo_costs(run_dir: str | Path) -> dict[str, dict[str, float]]:
    """``costs.json`` of a run, without the empty entries (the source stages have none); {} when absent."""
    costs = load_json(Path(run_dir) / "costs.json", default={}) or {}
    return {method: c for method, c in costs.items() if c}


def cost_table(costs: dict[str, dict[str, float]], baseline: str | None = None) -> list[dict[str, Any]]:
    """One row per method: trainable parameters, step time, examples/s, peak memory; with ``baseline``
    (a method name in ``costs``), also step time and trainable parameters relative to it."""
    if baseline is not None and baseline not in costs:
        raise ValueError(f"baseline {baseline!r} is not among the methods {sorted(costs)}")
    rows = []
    for method in ordered_methods(costs):
        c = costs[method]
        row: dict[str, Any] = {"method": method, **{key: c.get(key) for key in COST_KEYS}}
        if baseline is not None:
            base = costs[baseline]
            row["step_time_vs_" + baseline] = _ratio(c.get("step_time_ms"), base.get("step_time_ms"))
            row["parameters_vs_" + baseline] = _ratio(c.get("trainable_parameters"), base.get("trainable_parameters"))
        rows.append(row)
    return rows


def demo_length_costs(run_dir: str | Path) -> list[dict[str, Any]]:
    """Input length vs cost in a demo run: per (task, method), the mean input length in words of the test
    inputs (from a ``predictions.jsonl``) and the median step time and examples/s over the method's runs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in load_full_results(run_dir):
        if "step_time_ms" in r:
            groups.setdefault((r["task"], r["method"]), []).append(r)
    rows = []
    for (task, method), runs in sorted(groups.items()):
        words = _mean_input_words(Path(run_dir) / "adapt" / task / method / "runs")
        rows.append({"task": task, "method": method, "input_words": words, "runs": len(runs),
                     "step_time_ms": statistics.median(r["step_time_ms"] for r in runs),
                     "examples_per_s": statistics.median(r["examples_per_s"] for r in runs if "examples_per_s" in r)
                     if any("examples_per_s" in r for r in runs) else None})
    return rows


def _mean_input_words(runs_dir: Path) -> float | None:
    for path in sorted(runs_dir.glob("*/predictions.jsonl")):
        inputs = [json.loads(line)["input"] for line in path.read_text().splitlines() if line.strip()]
        if inputs:
            return statistics.fmean(len(text.split()) for text in inputs)
    return None


# ------------------------------------------------------------------ the benchmark's JSON
def find_benchmark(path: str | Path | None) -> Path | None:
    """The benchmark JSON at ``path``: the file itself, or in a folder the newest ``*.json`` of the benchmark's
    schema; None when there is none (the notebooks then show the demo's costs only)."""
    if not path:
        return None
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        return None
    candidates = [p for p in path.glob("*.json") if _schema(p) == BENCH_SCHEMA]
    return max(candidates, key=lambda p: (p.stat().st_mtime, p.name)) if candidates else None


def _schema(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data.get("schema") if isinstance(data, dict) else None


def load_benchmark(path: str | Path | None) -> dict[str, Any] | None:
    """The benchmark's output (see ``benchmarks/train_step.py``) found by :func:`find_benchmark`, or None.

    Raises:
        ValueError: the file exists but is not the benchmark's schema.
    """
    found = find_benchmark(path)
    if found is None:
        return None
    data = json.loads(found.read_text())
    if not isinstance(data, dict) or data.get("schema") != BENCH_SCHEMA or "results" not in data:
        raise ValueError(f"{found} is not a benchmark result (expected schema {BENCH_SCHEMA!r} with 'results'); "
                         "write one with `python benchmarks/train_step.py --out FILE`")
    data["path"] = str(found)
    return data


def benchmark_environment(bench: dict[str, Any]) -> str:
    """One line: the device, software and model size a benchmark ran with."""
    env, config = bench.get("env", {}), bench.get("config", {})
    device = env.get("device_name") or env.get("device", "?")
    smoke = " (CPU smoke run: the figures check the script, they are not measurements)" if config.get("smoke") else ""
    return (f"{device} | torch {env.get('torch', '?')} | transformers {env.get('transformers', '?')} | "
            f"T5-{config.get('size', '?')} | batch {config.get('batch', '?')}{smoke}")


def variant_label(variant: str) -> str:
    """A benchmark row name (``dept_fast``, ``peft_lora_biased``...) in words."""
    base = variant.removesuffix("_biased")
    label = VARIANT_LABELS.get(base, base)
    return label + " + biased attention" if variant.endswith("_biased") else label


def trainable_parameters(variant: str, config: dict[str, Any]) -> int | None:
    """Trainable parameters of a benchmark row, from its config (``m``, ``r``, ``s``, ``pt_tokens``,
    ``lora_r`` and the T5 shape in ``model``); None for an unknown row.

    DePT: m d + r (s + d). Prompt tuning on the fast path: pt_tokens d; HF peft keeps a second copy for the
    decoder of an encoder-decoder (``num_transformer_submodules=2``), so its optimizer holds 2 pt_tokens d.
    LoRA on q and v of every attention (encoder self, decoder self and cross): 3 L x 2 x r (d + heads d_kv).
    Full fine-tuning: every T5 weight (tied input and output embedding counted once).
    """
    model = config.get("model", {})
    d, layers = int(model.get("d_model", 0)), int(model.get("num_layers", 0))
    inner = int(model.get("num_heads", 0)) * int(model.get("d_kv", 0))
    base = variant.removesuffix("_biased")
    if base in ("reference", "dept_fast", "dept_eager"):
        return int(config["m"]) * d + int(config["r"]) * (int(config["s"]) + d)
    if base == "pt100_fast":
        return int(config["pt_tokens"]) * d
    if base == "peft_pt100":
        return 2 * int(config["pt_tokens"]) * d
    if base == "peft_lora":
        return 3 * layers * 2 * int(config["lora_r"]) * (d + inner)
    if base == "full_ft":
        d_ff, heads, vocab = int(model["d_ff"]), int(model["num_heads"]), int(model["vocab_size"])
        encoder = layers * (4 * d * inner + 2 * d * d_ff + 2 * d) + 32 * heads + d  # 32 relative-position buckets
        decoder = layers * (8 * d * inner + 2 * d * d_ff + 3 * d) + 32 * heads + d
        return vocab * d + encoder + decoder
    return None


def benchmark_table(bench: dict[str, Any], workload: str = "glue", baseline: str = "reference") -> list[dict[str, Any]]:
    """One row per benchmark variant measured on ``workload``, in run order: trainable parameters (the row's
    own count when it has one, else :func:`trainable_parameters`), median step time, examples/s, peak memory
    (MB, reserved; GPU runs only), MFU, and examples/s relative to ``baseline`` when it ran that workload."""
    rows = [r for r in bench.get("results", []) if r.get("workload") == workload]
    base = next((r for r in rows if r["variant"] == baseline), None)
    out = []
    for r in rows:
        peak = r.get("peak_reserved_gb")
        out.append({
            "variant": r["variant"], "method": variant_label(r["variant"]),
            "trainable_parameters": r.get("trainable_parameters", trainable_parameters(r["variant"], bench.get("config", {}))),
            "step_time_ms": r.get("step_ms_median"), "examples_per_s": r.get("examples_per_s"),
            "peak_memory_mb": peak * 1024 if peak is not None else None, "mfu": r.get("mfu"),
            "speedup_vs_" + baseline: _ratio(r.get("examples_per_s"), base.get("examples_per_s")) if base else None,
        })
    return out


def length_sweep(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """The benchmark's fixed-length workloads (``len32`` ... ``len256``): step time and examples/s per
    (variant, input length), sorted by variant then length."""
    rows = []
    for r in bench.get("results", []):
        workload = str(r.get("workload", ""))
        if workload.startswith("len") and workload[3:].isdigit():
            rows.append({"variant": r["variant"], "method": variant_label(r["variant"]), "input_length": int(workload[3:]),
                         "step_time_ms": r.get("step_ms_median"), "examples_per_s": r.get("examples_per_s")})
    return sorted(rows, key=lambda x: (x["variant"], x["input_length"]))


def plot_length_vs_cost(rows: list[dict[str, Any]], x: str = "input_length", y: str = "step_time_ms", by: str = "method",
                        path: str | Path | None = None):
    """``y`` vs ``x``, one line per value of ``by`` (rows of :func:`length_sweep` or :func:`demo_length_costs`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    for group in dict.fromkeys(r[by] for r in rows):
        line = sorted((r for r in rows if r[by] == group and r.get(x) is not None and r.get(y) is not None), key=lambda r: r[x])
        ax.plot([r[x] for r in line], [r[y] for r in line], marker="o", label=str(group))
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _finish(plt, fig, path)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def plot_benchmark(rows: list[dict[str, Any]], path: str | Path | None = None):
    """Bars per benchmark variant (rows of :func:`benchmark_table`): trainable parameters (log scale),
    examples/s and, when measured, peak memory."""
    plt = _pyplot()
    keys = [("trainable_parameters", "trainable parameters", True), ("examples_per_s", "examples/s", False)]
    if any(r.get("peak_memory_mb") for r in rows):
        keys.append(("peak_memory_mb", "peak memory (MB)", False))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.8 * len(keys), 3.4), squeeze=False)
    names = [r["variant"] for r in rows]
    for ax, (key, title, log) in zip(axes[0], keys):
        ax.bar(names, [r.get(key) or 0.0 for r in rows], color="tab:blue")
        if log and any(r.get(key) for r in rows):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45, labelsize=7)
    fig.tight_layout()
    return _finish(plt, fig, path)

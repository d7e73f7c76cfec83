"""Efficiency tables from a run's costs and from the benchmark's JSON, on hand-made files; trainable-parameter
counts of the benchmark's rows checked against real (tiny) models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dept_vl.report import (benchmark_table, cost_table, demo_costs, demo_length_costs, find_benchmark, length_sweep,
                            load_benchmark, plot_benchmark, plot_length_vs_cost)
from dept_vl.report.efficiency import BENCH_SCHEMA, benchmark_environment, trainable_parameters, variant_label

ROOT = Path(__file__).resolve().parents[1]
COSTS = {
    "dept-transfer": {"trainable_parameters": 1024, "step_time_ms": 10.0, "peak_memory_mb": 100.0, "examples_per_s": 320.0},
    "pt-transfer": {"trainable_parameters": 2048, "step_time_ms": 40.0, "peak_memory_mb": 120.0, "examples_per_s": 80.0},
}


def bench_row(variant, workload, ms, **extra):
    return {"variant": variant, "workload": workload, "step_ms_median": ms, "examples_per_s": 32 / ms * 1e3, "mfu": 0.1, **extra}


def bench(rows, **config):
    return {"schema": BENCH_SCHEMA, "env": {"device_name": "GPU X", "torch": "2.x", "transformers": "5.x"},
            "config": {"size": "base", "batch": 32, "m": 60, "r": 30, "s": 256, "pt_tokens": 100, "lora_r": 8,
                       "model": {"d_model": 768, "d_ff": 3072, "num_layers": 12, "num_heads": 12, "d_kv": 64, "vocab_size": 32128},
                       **config}, "results": rows}


def test_cost_table_rows_and_ratios_to_the_baseline():
    rows = cost_table(COSTS, baseline="pt-transfer")
    assert [r["method"] for r in rows] == ["dept-transfer", "pt-transfer"]
    assert rows[0]["step_time_vs_pt-transfer"] == 0.25 and rows[0]["parameters_vs_pt-transfer"] == 0.5
    assert rows[1]["step_time_vs_pt-transfer"] == 1.0
    assert rows[0]["examples_per_s"] == 320.0 and rows[0]["peak_memory_mb"] == 100.0
    assert "step_time_vs_pt-transfer" not in cost_table(COSTS)[0]
    with pytest.raises(ValueError, match="baseline 'lora'"):
        cost_table(COSTS, baseline="lora")


def test_demo_costs_drop_empty_entries_and_missing_files(tmp_path):
    (tmp_path / "costs.json").write_text(json.dumps({**COSTS, "source_dept": {}}))
    assert demo_costs(tmp_path) == COSTS
    assert demo_costs(tmp_path / "absent") == {}


def test_demo_length_costs_pairs_input_words_with_the_median_step(tmp_path):
    full = [{"task": "t", "k": 4, "method": "m", "seed": s, "score": 0.5, "metric": "accuracy", "step_time_ms": ms,
             "examples_per_s": eps} for s, ms, eps in [(0, 10.0, 100.0), (1, 30.0, 50.0)]]
    (tmp_path / "results_full.json").write_text(json.dumps(full))
    runs = tmp_path / "adapt" / "t" / "m" / "runs" / "k4_seed0"
    runs.mkdir(parents=True)
    (runs / "predictions.jsonl").write_text("".join(json.dumps({"id": str(i), "input": text}) + "\n" for i, text in enumerate(["a b c", "a b c d e"])))
    assert demo_length_costs(tmp_path) == [{"task": "t", "method": "m", "input_words": 4.0, "runs": 2,
                                            "step_time_ms": 20.0, "examples_per_s": 75.0}]


def test_find_and_load_benchmark(tmp_path):
    assert find_benchmark(None) is None and find_benchmark(tmp_path / "absent") is None and find_benchmark(tmp_path) is None
    assert load_benchmark(tmp_path) is None
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something else"}))
    (tmp_path / "broken.json").write_text("{not json")
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(bench([bench_row("dept_fast", "glue", 10.0)])))
    new.write_text(json.dumps(bench([bench_row("dept_fast", "glue", 20.0)])))
    os.utime(old, (1_000_000, 1_000_000))
    assert find_benchmark(tmp_path) == new and find_benchmark(old) == old
    loaded = load_benchmark(tmp_path)
    assert loaded["results"][0]["step_ms_median"] == 20.0 and loaded["path"] == str(new)
    with pytest.raises(ValueError, match="not a benchmark result"):
        load_benchmark(tmp_path / "other.json")


def test_benchmark_table_at_one_workload():
    data = bench([bench_row("reference", "glue", 40.0, peak_reserved_gb=2.0), bench_row("dept_fast", "glue", 10.0, peak_reserved_gb=1.5),
                  bench_row("dept_fast", "full256", 30.0), bench_row("peft_lora", "glue", 80.0, trainable_parameters=123)])
    rows = benchmark_table(data, workload="glue")
    assert [r["variant"] for r in rows] == ["reference", "dept_fast", "peft_lora"]
    ref, fast, lora = rows
    assert fast["speedup_vs_reference"] == pytest.approx(4.0) and lora["speedup_vs_reference"] == pytest.approx(0.5)
    assert fast["peak_memory_mb"] == 1536.0 and lora["peak_memory_mb"] is None
    assert fast["trainable_parameters"] == 60 * 768 + 30 * (256 + 768) and lora["trainable_parameters"] == 123
    assert fast["step_time_ms"] == 10.0 and fast["method"] == "DePT (fast path)"
    assert benchmark_table(data, workload="full256")[0]["speedup_vs_reference"] is None  # no reference row there
    assert "GPU X" in benchmark_environment(data) and "T5-base" in benchmark_environment(data)
    assert "smoke" in benchmark_environment(bench([], smoke=True))


def test_length_sweep_reads_the_fixed_length_workloads():
    data = bench([bench_row("dept_fast", "len64", 12.0), bench_row("dept_fast", "len32", 10.0),
                  bench_row("dept_fast", "glue", 11.0), bench_row("pt100_fast_biased", "len32", 14.0)])
    rows = length_sweep(data)
    assert [(r["variant"], r["input_length"], r["step_time_ms"]) for r in rows] == [
        ("dept_fast", 32, 10.0), ("dept_fast", 64, 12.0), ("pt100_fast_biased", 32, 14.0)]
    assert rows[2]["method"] == "prompt tuning, 100 tokens (fast path) + biased attention"
    assert variant_label("something_new") == "something_new"


def test_trainable_parameters_match_the_models_the_benchmark_builds():
    """The formulas against real models of one tiny T5 shape: DePT, fast-path prompt tuning, peft PT and LoRA, full."""
    from dept_vl import DePTConfig, DePTModel
    from tests.conftest import tiny_t5

    config = {"m": 6, "r": 3, "s": 32, "pt_tokens": 10, "lora_r": 4,
              "model": {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_heads": 4, "d_kv": 16, "vocab_size": 120}}

    def count(model):
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    dept = DePTModel(tiny_t5(), DePTConfig(num_virtual_tokens=6, rank=3, max_length=32, init="random"))
    pt = DePTModel(tiny_t5(), DePTConfig(num_virtual_tokens=10, rank=0, max_length=32, init="random"))
    assert trainable_parameters("dept_fast", config) == trainable_parameters("reference", config) == count(dept)
    assert trainable_parameters("pt100_fast", config) == count(pt)
    assert trainable_parameters("full_ft", config) == count(tiny_t5())
    assert trainable_parameters("unknown", config) is None
    peft = pytest.importorskip("peft")
    lora = peft.get_peft_model(tiny_t5(), peft.LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=16, target_modules=["q", "v"]))
    prompt = peft.get_peft_model(tiny_t5(), peft.PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=10))
    assert trainable_parameters("peft_lora", config) == count(lora)
    assert trainable_parameters("peft_pt100", config) == count(prompt)


def test_the_committed_benchmark_json_reads(tmp_path):
    path = ROOT / "benchmarks" / "results" / "t5-base.json"
    if not path.is_file():
        pytest.skip("no committed benchmark JSON")
    data = load_benchmark(path)
    rows = benchmark_table(data)
    assert rows and all(r["trainable_parameters"] for r in rows)
    fast = next(r for r in rows if r["variant"] == "dept_fast")
    expected = data["summary"]["dept_fast"]["speedup_vs_reference_glue"]
    assert fast["speedup_vs_reference"] == pytest.approx(expected)
    plot_benchmark(rows, tmp_path / "bench.png")
    plot_length_vs_cost(length_sweep(data), path=tmp_path / "sweep.png")
    assert (tmp_path / "bench.png").stat().st_size > 0 and (tmp_path / "sweep.png").stat().st_size > 0

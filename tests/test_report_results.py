"""Score tables, transfer gains, source-stage summaries, Markdown tables and notebook paths, on hand-made records."""

from __future__ import annotations

import json
import math

import pytest

from dept_vl.report import (gains_by_k, load_full_results, markdown_table, resolve_path, score_table, source_curves,
                            source_stages)
from dept_vl.report.results import find_project_root, ordered_methods


def rec(task, k, method, seed, score, metric="accuracy"):
    return {"task": task, "k": k, "method": method, "seed": seed, "score": score, "metric": metric}


RECORDS = [
    rec("a", 4, "dept-transfer", 0, 0.6), rec("a", 4, "dept-transfer", 1, 0.8),
    rec("a", 4, "dept-scratch", 0, 0.5), rec("a", 4, "dept-scratch", 1, 0.5),
    rec("a", 8, "dept-transfer", 0, 0.9), rec("a", 8, "dept-scratch", 0, 0.6),
    rec("b", 4, "zeta", 0, 2.0, "cider"),
]


def test_ordered_methods_puts_the_demo_arms_first():
    assert ordered_methods(["zeta", "pt-transfer", "alpha", "dept-transfer", "zeta"]) == ["dept-transfer", "pt-transfer", "alpha", "zeta"]


def test_score_table_has_one_row_per_task_and_k_and_one_column_per_method():
    rows = score_table(RECORDS)
    assert [(r["task"], r["k"]) for r in rows] == [("a", 4), ("a", 8), ("b", 4)]
    first = rows[0]
    # mean 0.7, sample std of (0.6, 0.8) = 0.1414...
    assert first["dept-transfer"] == "0.700 ± 0.141" and first["dept-scratch"] == "0.500 ± 0.000"
    assert first["zeta"] == "" and first["seeds"] == 2 and first["metric"] == "accuracy"
    assert rows[1]["dept-transfer"] == "0.900 ± 0.000" and rows[1]["seeds"] == 1
    assert rows[2]["zeta"] == "2.000 ± 0.000" and rows[2]["metric"] == "cider"
    assert list(first)[:4] == ["task", "metric", "k", "seeds"] and list(first)[4:] == ["dept-transfer", "dept-scratch", "zeta"]


def test_gains_by_k_covers_every_k_with_hand_computed_gains():
    gains = gains_by_k(RECORDS)
    assert [(g["task"], g["k"]) for g in gains] == [("a", 4), ("a", 8)]  # task b has neither arm
    g4, g8 = gains
    assert g4["gain"] == pytest.approx(0.2) and g4["relative_gain"] == pytest.approx(0.4)
    assert g4["gain_over_std"] == pytest.approx(0.2 / math.sqrt(0.02))
    assert g8["gain"] == pytest.approx(0.3) and g8["relative_gain"] == pytest.approx(0.5) and g8["gain_over_std"] == math.inf
    assert gains_by_k(RECORDS, treated="dept-transfer", control="pt-transfer") == []


def test_markdown_table_formats_cells():
    rows = [{"name": "x|y", "n": 12345, "small": 7, "score": 0.12345, "none": None, "flag": True},
            {"name": "z", "score": float("inf")}]
    assert markdown_table(rows, digits=2) == (
        "| name | n | small | score | none | flag |\n|---|---|---|---|---|---|\n"
        "| x\\|y | 12,345 | 7 | 0.12 |  | True |\n| z |  |  | inf |  |  |")
    assert markdown_table(rows, ["score", "name"]).splitlines()[2] == "| 0.123 | x\\|y |"
    assert markdown_table([]) == "(no rows)"


def test_source_stages_and_curves_read_the_stage_folders(tmp_path):
    stage = tmp_path / "source_dept"
    stage.mkdir()
    (stage / "metrics.json").write_text(json.dumps({"best_score": 0.8, "best_step": 20, "steps": 30,
                                                    "trainable_parameters": 1024, "seconds": 3.5}))
    (stage / "log.jsonl").write_text('{"step": 10, "eval": 0.5}\n{"step": 15, "loss": 1.0}\n{"step": 20, "eval": 0.8}\n')
    assert source_stages(tmp_path) == [{"stage": "source_dept", "best_dev": 0.8, "best_step": 20, "steps": 30,
                                        "trainable_parameters": 1024, "seconds": 3.5}]
    assert source_curves(tmp_path) == {"source_dept": [(10, 0.5), (20, 0.8)]}
    assert source_stages(tmp_path / "nothing") == [] and source_curves(tmp_path / "nothing") == {}


def test_load_full_results_falls_back_to_results_json(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(RECORDS[:1]))
    assert load_full_results(tmp_path) == RECORDS[:1]
    (tmp_path / "results_full.json").write_text(json.dumps([{**RECORDS[0], "step_time_ms": 3.0}]))
    assert load_full_results(tmp_path)[0]["step_time_ms"] == 3.0


def test_resolve_path_finds_the_project_root_from_a_subfolder(tmp_path):
    root = tmp_path / "project"
    (root / "dept_vl").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "notebooks").mkdir()
    (root / "runs" / "demo").mkdir(parents=True)
    assert find_project_root(root / "notebooks") == root.resolve()
    assert resolve_path("runs/demo", start=root / "notebooks") == (root / "runs" / "demo").resolve()
    # a missing path inside the project points at the root (so the error names the expected place)
    assert resolve_path("runs/other", start=root / "notebooks") == (root / "runs" / "other").resolve()
    # a path that exists from the working directory wins; absolute paths stay as they are
    (root / "notebooks" / "runs" / "demo").mkdir(parents=True)
    assert resolve_path("runs/demo", start=root / "notebooks") == (root / "notebooks" / "runs" / "demo").resolve()
    assert resolve_path(tmp_path / "elsewhere", start=root) == tmp_path / "elsewhere"
    # outside any project: relative to the start folder, even when missing
    (tmp_path / "outside").mkdir()
    assert find_project_root(tmp_path / "outside") is None
    assert resolve_path("missing", start=tmp_path / "outside") == (tmp_path / "outside" / "missing").resolve()

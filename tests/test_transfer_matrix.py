"""dept-vl transfer-matrix: one source adapter per source task, each target's k-shot sweep from each source and
from scratch; every cell is the mean of the right sweep's runs, each sweep starts from the right source, a
source equal to the target gets no cell, and --resume trains nothing that finished (shipped backbone, CPU)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dept_vl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "dept_vl" / "assets" / "backbone-tiny"
BASE = [f"model.backbone={SHIPPED}", "data.format=shifted", "dept.num_virtual_tokens=4", "dept.rank=2", "dept.max_length=96",
        "dept.lr_prompt=0.1", "dept.lr_lowrank=0.01", "train.batch_size=4", "train.warmup_steps=1", "train.max_steps=3",
        "train.eval_every=3", "train.save_every=0", "eval.batch_size=8", "eval.max_new_tokens=8", "data.eval_size=8",
        "data.train_size=24", "adapt.k=[2]", "adapt.seeds=[0,1]", "data.feature_cache=true"]
SOURCES, TARGETS = ["shapes_color", "shapes_exist"], ["shapes_count", "shapes_color"]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    from dept_vl.recipes.transfer_matrix import run_transfer_matrix

    out = tmp_path_factory.mktemp("matrix")
    rows = run_transfer_matrix(load_config(None, BASE + [f"output_dir={out}"]), SOURCES, TARGETS, show_progress=False)
    return out, rows


def test_each_cell_is_the_mean_of_its_sweep_started_from_its_source(matrix):
    out, rows = matrix
    cells = {(r["target"], r["source"]): r for r in rows}
    # every source for each target, except the target itself (its adapter saw the target's training data)
    assert sorted(cells) == [("shapes_color", "scratch"), ("shapes_color", "shapes_exist"), ("shapes_count", "scratch"),
                             ("shapes_count", "shapes_color"), ("shapes_count", "shapes_exist")]
    for (target, source), row in cells.items():
        arm = "scratch" if source == "scratch" else f"from-{source}"
        records = json.loads((out / "targets" / target / arm / "results.json").read_text())
        scores = [r["score"] for r in records]
        assert {r["task"] for r in records} == {target} and len(scores) == 2
        assert row["mean"] == statistics.fmean(scores) and row["std"] == statistics.stdev(scores)
        scratch = json.loads((out / "targets" / target / "scratch" / "results.json").read_text())
        if source != "scratch":
            assert row["gain"] == row["mean"] - statistics.fmean(r["score"] for r in scratch)
            saved = load_config(out / "targets" / target / arm / "config.yaml")
            assert Path(saved.adapt.source) == out / "sources" / source / "adapter"  # the right source adapter


def test_the_source_adapters_differ_and_each_was_trained_on_its_task_alone(matrix):
    out, _ = matrix
    tensors = {s: load_file(str(out / "sources" / s / "adapter" / "adapter_model.safetensors")) for s in SOURCES}
    assert any(not torch.equal(tensors[SOURCES[0]][k], tensors[SOURCES[1]][k]) for k in tensors[SOURCES[0]])
    for source in SOURCES:
        assert load_config(out / "sources" / source / "config.yaml").data.tasks == [source]
        assert json.loads((out / "sources" / source / "metrics.json").read_text())["complete"] is True


def test_the_report_files_hold_the_rows(matrix):
    out, rows = matrix
    assert json.loads((out / "matrix.json").read_text()) == json.loads(json.dumps(rows))
    assert len((out / "matrix.csv").read_text().splitlines()) == len(rows) + 1
    table = (out / "matrix.md").read_text()
    assert "| source | shapes_color | shapes_count |" in table and "| scratch |" in table
    assert (out / "plots" / "transfer_matrix.png").stat().st_size > 1000


def test_resume_trains_nothing_that_finished(matrix, monkeypatch):
    import dept_vl.recipes.adapt as adapt
    import dept_vl.recipes.pretrain as pretrain
    from dept_vl.recipes.transfer_matrix import run_transfer_matrix

    out, rows = matrix
    monkeypatch.setattr(pretrain, "_pretrain", lambda *a, **k: pytest.fail("a finished source was pretrained again"))
    monkeypatch.setattr(adapt, "_train", lambda *a, **k: pytest.fail("a finished k-shot run was trained again"))
    again = run_transfer_matrix(load_config(None, BASE + [f"output_dir={out}"]), SOURCES, TARGETS, resume=True, show_progress=False)
    assert again == rows

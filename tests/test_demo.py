"""The offline demo: the --fast version end to end, its report's structure, and the shipped backbone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dept_vl.demo.backbone import SHIPPED, BackboneSettings
from dept_vl.demo.run import ARMS, DemoSettings
from dept_vl.report import summarize, transfer_gains

ROUND = 5e-4 + 1e-9  # the report prints 3 decimals


@pytest.fixture
def fast_run(fast_demo_run) -> Path:
    return fast_demo_run


def test_results_json_has_one_record_per_task_k_method_seed(fast_run):
    settings = DemoSettings.fast(str(fast_run))
    records = json.loads((fast_run / "results.json").read_text())
    assert len(records) == len(settings.targets) * len(settings.k) * len(settings.seeds) * len(ARMS)
    assert {r["method"] for r in records} == {"dept-transfer", "dept-scratch", "pt-transfer"}
    for r in records:
        assert set(r) == {"task", "k", "method", "seed", "score", "metric"}
        assert isinstance(r["score"], float) and r["task"] in settings.targets


def test_every_number_in_the_report_comes_from_the_run(fast_run):
    report = (fast_run / "report.md").read_text()
    records = json.loads((fast_run / "results.json").read_text())
    table = re.findall(r"^\| (shapes_\w+) \| (\w+) \| (\d+) \| ([\w-]+) \| ([-\d.]+) \| ([-\d.]+) \| (\d+) \|$", report, re.M)
    rows = summarize(records)
    assert len(table) == len(rows)
    for (task, metric, k, method, mean, std, n), row in zip(table, rows):
        assert (task, metric, int(k), method, int(n)) == (row["task"], row["metric"], row["k"], row["method"], row["n"])
        assert float(mean) == pytest.approx(row["mean"], abs=ROUND) and float(std) == pytest.approx(row["std"], abs=ROUND)
    k_head = int(re.search(r"## Transfer vs scratch at k=(\d+)", report).group(1))
    gains = re.findall(r"^\| (shapes_\w+) \| ([-\d.]+) \| ([-\d.]+) \| ([-\d.]+) \| ([-+\d.]+)% \|", report, re.M)
    expected = {g["task"]: g for g in transfer_gains(records, k_head)}
    assert {g[0] for g in gains} == set(expected)
    for task, treated, control, gain, relative in gains:
        assert float(treated) == pytest.approx(expected[task]["dept-transfer"], abs=ROUND)
        assert float(control) == pytest.approx(expected[task]["dept-scratch"], abs=ROUND)
        assert float(relative) == pytest.approx(100 * expected[task]["relative_gain"], abs=0.05)
    zero_shot = json.loads((fast_run / "zero_shot.json").read_text())
    rows = re.findall(r"^\| (shapes_\w+) \| ([-\d.]+) \| ([-\d.]+) \| ([-\d.]+) \|$", report, re.M)
    assert {r[0] for r in rows} == set(zero_shot)
    for task, *values in rows:
        assert [float(v) for v in values] == pytest.approx(list(zero_shot[task].values()), abs=ROUND)
    for name in ("score_vs_k.png", "costs.png"):
        assert (fast_run / "plots" / name).stat().st_size > 1000
    timings = json.loads((fast_run / "timings.json").read_text())
    assert {"world", "backbone", "source_dept", "source_pt", "adapt", "report", "total"} <= set(timings)
    assert "## Sample predictions" in report and "](samples/" in report


def test_shipped_backbone_loads_into_the_config_the_script_names():
    if not (SHIPPED / "backbone.safetensors").is_file():
        pytest.skip("no shipped backbone in this checkout")
    from dept_vl.models.backbone import load_backbone, read_backbone_spec
    from dept_vl.models.presets import get_preset

    spec, meta = read_backbone_spec(SHIPPED)
    settings = BackboneSettings(**meta["extra"]["settings"])
    named = get_preset(settings.preset)
    as_json = lambda value: json.loads(json.dumps(value))  # noqa: E731 (tuples were saved as lists)
    assert spec.image_encoder_kwargs == as_json(named.image_encoder_kwargs) and spec.image_encoder == named.image_encoder
    for key in ("d_model", "d_ff", "num_layers", "num_decoder_layers", "num_heads", "d_kv"):
        assert spec.text_config[key] == named.text_config[key], key
    assert meta["extra"]["made_by"].startswith("python -m dept_vl.demo.backbone")
    model = load_backbone(SHIPPED)  # strict: every weight has its place
    assert model.freeze_image_encoder and not any(p.requires_grad for p in model.image_encoder.parameters())
    assert SHIPPED.joinpath("backbone.safetensors").stat().st_size < 8 * 2**20

"""`dept-vl demo --methods`: ADePT, ULPT, MPT and ATTEMPT next to the demo's three arms, on the same targets, k and
seeds, at DePT's parameter budget; each arm transfers what it should; the table's numbers come from the runs."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from pathlib import Path

import pytest

from dept_vl.config import load_config
from dept_vl.demo.methods import DEMO_ARMS, FAMILY_ARMS
from dept_vl.demo.run import DemoSettings

D, M, R, S = 64, 8, 4, 96  # the shipped backbone's width; the demo recipes' DePT: 8*64 + 4*(96+64) = 1,152
SOURCE_TASKS = ["shapes_caption", "shapes_color", "shapes_exist", "shapes_nli"]
# each method's trainable count at that budget, by its paper's formula (written out here, not read from the code):
# ADePT m*d + r*(2d+1) + d with the largest r: 512 + 129r + 64 <= 1152 -> r = 4; ULPT n = 1152 // 64 = 18 vectors of
# r dims + scale and shift: 18r + 128 <= 1152 -> r = 56; MPT m*d + tasks*q*(m+d) for the 4 source tasks: 512 + 288q
# -> q = 2 (the target run keeps its one task's factors: 512 + 2*72); ATTEMPT m*d + 2*d*r: 512 + 128r -> r = 5
SOURCE_COUNTS = {"adept": 512 + 129 * 4 + 64, "ulpt": 18 * 56 + 128, "mpt": 512 + 4 * 2 * 72}
TARGET_COUNTS = {"adept-transfer": 1092, "ulpt-transfer": 1136, "mpt-transfer": 512 + 2 * 72, "attempt-transfer": 512 + 128 * 5}


@pytest.fixture(scope="module")
def methods_run(fast_demo_run, tmp_path_factory) -> tuple[Path, dict]:
    from dept_vl.demo.backbone import SHIPPED
    from dept_vl.demo.methods import run_methods

    out = tmp_path_factory.mktemp("methods") / "demo"
    shutil.copytree(fast_demo_run, out)
    result = run_methods(DemoSettings.fast(str(out)), out, ["model.backbone=shipped:backbone-tiny"], SHIPPED)
    return out, result


def test_every_family_arm_runs_the_demo_protocol_at_the_budget(methods_run):
    out, result = methods_run
    settings = DemoSettings.fast(str(out))
    records = json.loads((out / "methods.json").read_text())
    for arm in FAMILY_ARMS:
        mine = [r for r in records if r["method"] == arm]
        assert sorted((r["task"], r["k"], r["seed"]) for r in mine) == \
            sorted((t, k, s) for t in settings.targets for k in settings.k for s in settings.seeds)
        assert {r["trainable_parameters"] for r in mine} == {TARGET_COUNTS[arm]}
        assert TARGET_COUNTS[arm] <= M * D + R * (S + D)
    for method, count in SOURCE_COUNTS.items():
        metrics = json.loads((out / "methods" / f"source_{method}" / "metrics.json").read_text())
        assert metrics["trainable_parameters"] == count and metrics["complete"]
    assert {r["method"] for r in records} == {*DEMO_ARMS, *FAMILY_ARMS}  # the demo's arms are in the same table


def test_each_arm_transfers_what_it_should(methods_run):
    out, _ = methods_run
    for arm, method in FAMILY_ARMS.items():
        for task in DemoSettings.fast(str(out)).targets:
            config = load_config(out / "methods" / "adapt" / task / arm / "config.yaml")
            assert config.method == method
            if method == "attempt":  # its transfer: one frozen prompt per source task, each trained on that task alone
                assert config.adapt.source in (None, "none")
                assert [Path(p).parent.name for p in config.attempt.sources] == [f"prompt_{t}" for t in SOURCE_TASKS]
                for folder in config.attempt.sources:
                    assert load_config(Path(folder).parent / "config.yaml").data.tasks == [Path(folder).parent.name[7:]]
            else:  # its own source stage on the demo's source mixture
                assert Path(config.adapt.source) == out / "methods" / f"source_{method}" / "adapter"
                assert load_config(Path(config.adapt.source).parent / "config.yaml").data.tasks == SOURCE_TASKS


def test_every_number_in_the_methods_table_comes_from_the_runs(methods_run):
    out, result = methods_run
    records = json.loads((out / "methods.json").read_text())
    table = (out / "methods.md").read_text()
    header = table.splitlines()[0].strip("| ").split(" | ")
    arms = header[2:]
    assert arms == [*DEMO_ARMS, *FAMILY_ARMS]
    rows = re.findall(r"^\| (shapes_\w+) \| (\d+) \| (.+) \|$", table, re.M)
    assert len(rows) == len({(r["task"], r["k"]) for r in records})
    for task, k, cells in rows:
        values = cells.split(" | ")
        means = {}
        for arm, cell in zip(arms, values):
            mean, std = (float(x) for x in re.findall(r"[-\d.]+", cell.replace("±", " "))[:2])
            scores = [r["score"] for r in records if r["method"] == arm and r["task"] == task and r["k"] == int(k)]
            assert mean == pytest.approx(statistics.fmean(scores), abs=5e-4 + 1e-9)  # 3 decimals printed
            assert std == pytest.approx(statistics.stdev(scores), abs=5e-4 + 1e-9)
            means[arm] = statistics.fmean(scores)
        bold = [arm for arm, cell in zip(arms, values) if cell.startswith("**")]
        assert bold and all(means[a] == max(means.values()) for a in bold)

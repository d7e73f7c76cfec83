"""`dept-vl demo`: the whole mission offline — world, frozen backbone, source stage, k-shot transfer, report."""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

from dept_vl.config import RunConfig, load_config, recipe_path
from dept_vl.io import write_json_atomic

# (a), (b), (c) of the demo: DePT from the source adapter, DePT from scratch, prompt tuning from its own source;
# each arm is named as its results are (``<method label>-transfer`` / ``-scratch``)
ARM_DESIGN = (("dept", "source_dept"), ("dept", None), ("prompt_tuning", "source_pt"))
SOURCES = {"source_dept": "dept", "source_pt": "prompt_tuning"}


def _arm_name(method: str, source: str | None) -> str:
    from dept_vl.methods import get_method

    return get_method(method).results_label(transfer=source is not None)


ARMS = {_arm_name(method, source): (method, source) for method, source in ARM_DESIGN}
# one target of each family by default; --full runs every target task
DEFAULT_TARGETS = ["shapes_count", "shapes_caption_short", "shapes_para"]


@dataclasses.dataclass
class DemoSettings:
    out: str = "runs/demo"
    targets: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_TARGETS))
    k: list[int] = dataclasses.field(default_factory=lambda: [4, 16, 32])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0, 1, 2])
    source_steps: int = 3000
    target_steps: int = 100
    source_train_size: int = 4000
    source_eval_size: int = 300
    target_eval_size: int = 1000
    target_pool_size: int = 2000
    rebuild_backbone: bool = False
    overwrite: bool = False  # replace a previous demo run in ``out`` (refused otherwise)

    @classmethod
    def fast(cls, out: str) -> "DemoSettings":
        """A smoke version for tests: every stage, tiny sizes."""
        return cls(out=out, targets=["shapes_count", "shapes_para"], k=[4, 8], seeds=[0, 1], source_steps=12,
                   target_steps=6, source_train_size=200, source_eval_size=24, target_eval_size=40, target_pool_size=120)


def _recipe(name: str, overrides: list[str]) -> RunConfig:
    return load_config(recipe_path(name), overrides)


def run_demo(settings: DemoSettings, full: bool = False, methods: bool = False) -> dict[str, Any]:
    from dept_vl.demo.backbone import SHIPPED, resolve_backbone
    from dept_vl.demo.report import write_report
    from dept_vl.recipes.adapt import run_adapt
    from dept_vl.recipes.pretrain import run_pretrain
    from dept_vl.report.results import RECORD_FIELDS
    from dept_vl.tasks import get_task, list_tasks

    from dept_vl.train.outdir import claim_output_dir

    out = Path(settings.out)
    folder = claim_output_dir(out, overwrite=settings.overwrite)  # a previous demo in ``out`` is kept unless --overwrite
    timings: dict[str, float] = {}
    targets = [n for n in list_tasks() if get_task(n).family == "shapes" and get_task(n).role == "target"] if full else settings.targets

    t = time.perf_counter()
    print("[1/5] the synthetic world")
    for name in targets + ["shapes_color", "shapes_exist"]:
        get_task(name).load("test", fmt="shifted", size=8)
    timings["world"] = time.perf_counter() - t

    t = time.perf_counter()
    print("[2/5] the frozen backbone")
    backbone = resolve_backbone(settings.rebuild_backbone)
    timings["backbone"] = time.perf_counter() - t
    # the shipped backbone by its portable name, so saved run configs work in any checkout or install
    common = [f"model.backbone={'shipped:' + backbone.name if backbone == SHIPPED else backbone}"]

    sources = {}
    for label, method in SOURCES.items():
        t = time.perf_counter()
        print(f"[3/5] source stage: {method} on the source tasks")
        cfg = _recipe("shapes_pretrain", common + [
            f"method={method}", f"output_dir={out / label}", f"train.max_steps={settings.source_steps}",
            f"data.train_size={settings.source_train_size}", f"data.eval_size={settings.source_eval_size}",
            f"train.eval_every={max(1, settings.source_steps // 3)}", f"train.save_every={max(1, settings.source_steps // 3)}",
            f"train.warmup_steps={min(100, settings.source_steps // 10)}",
        ])
        sources[label] = run_pretrain(cfg, show_progress=True)
        timings[label] = time.perf_counter() - t

    print("[4/5] zero-shot: the frozen backbone on the shifted targets, with no adapter and with the source adapter")
    zero_shot = {task: zero_shot_scores(task, backbone, out / "source_dept" / "adapter", settings) for task in targets}

    records: list[dict[str, Any]] = []
    costs: dict[str, dict[str, float]] = {}
    for task in targets:
        for arm, (method, source) in ARMS.items():
            t = time.perf_counter()
            print(f"[4/5] {task}: {arm}, k={settings.k}, seeds={settings.seeds}")
            cfg = _recipe("shapes_adapt", common + [
                f"method={method}", f"output_dir={out / 'adapt' / task / arm}", f"adapt.task={task}",
                f"adapt.k={settings.k}", f"adapt.seeds={settings.seeds}",
                f"adapt.source={out / source / 'adapter' if source else 'none'}",
                f"train.max_steps={settings.target_steps}", f"train.eval_every={max(1, settings.target_steps // 4)}",
                f"train.warmup_steps={max(1, settings.target_steps // 10)}",
                f"data.eval_size={settings.target_eval_size}", f"data.train_size={settings.target_pool_size}",
                "adapt.pack=on",  # the arm's k x seed runs in one pass of the backbone: 1.3x faster here, same results
            ])
            result = run_adapt(cfg, overwrite=True, show_progress=False)
            for r in result["records"]:
                r["method"] = arm
            records += result["records"]
            timings[f"adapt/{task}/{arm}"] = time.perf_counter() - t
    timings["adapt"] = sum(v for k, v in timings.items() if k.startswith("adapt/"))

    for arm in ARMS:  # medians over every run of the arm (all tasks, k and seeds)
        runs = [r for r in records if r["method"] == arm]
        costs[arm] = {
            "trainable_parameters": runs[0]["trainable_parameters"],
            "step_time_ms": statistics.median(r["step_time_ms"] for r in runs),
            "peak_memory_mb": max(r["peak_memory_mb"] for r in runs),
            "examples_per_s": statistics.median(r["examples_per_s"] for r in runs),
        }

    print("[5/5] report")
    t = time.perf_counter()
    public = [{f: r[f] for f in RECORD_FIELDS} for r in records]
    write_json_atomic(out / "results.json", public)
    write_json_atomic(out / "results_full.json", records)
    for label, summary in sources.items():
        costs.setdefault(label, {})
    write_json_atomic(out / "costs.json", costs)
    write_json_atomic(out / "zero_shot.json", zero_shot)
    report = write_report(out, public, costs, sources, timings, backbone, settings.target_eval_size, zero_shot)
    timings["report"] = time.perf_counter() - t
    timings["total"] = sum(v for k, v in timings.items() if "/" not in k and k != "total")
    write_json_atomic(out / "timings.json", timings)
    print(report["headline"])
    print(f"report: {out / 'report.md'}   results: {out / 'results.json'}   plots: {out / 'plots'}")
    compared = None
    if methods:  # the DePT family and the few-shot baselines next to the three arms (dept_vl.demo.methods)
        from dept_vl.demo.methods import run_methods

        t = time.perf_counter()
        compared = run_methods(settings, out, common, backbone)
        timings.update({f"methods/{k}": v for k, v in compared["timings"].items()})
        timings["methods"] = time.perf_counter() - t
        write_json_atomic(out / "timings.json", timings)
        print(f"methods: {out / 'methods.md'}")
    folder.release()
    return {"records": public, "timings": timings, "report": report, "methods": compared}


def zero_shot_scores(task_name: str, backbone: Path, source_adapter: Path, settings: DemoSettings) -> dict[str, float]:
    """A target's test score with no training: the frozen backbone alone (plain and shifted input) and
    with the source adapter. Shows what the format shift costs and what the source adapter carries."""
    from dept_vl.recipes.evaluate import run_evaluate

    scores = {}
    for label, fmt, adapter in (("plain, no adapter", "plain", None), ("shifted, no adapter", "shifted", None),
                                ("shifted, source adapter", "shifted", source_adapter)):
        config = _recipe("shapes_adapt", [f"model.backbone={backbone}", f"data.format={fmt}"])
        scores[label] = run_evaluate(config, adapter, task_name, "test", size=settings.target_eval_size)["metrics"]["headline"]
    return scores

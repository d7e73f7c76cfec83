"""Recipe: a search over source pretraining settings, one adapter per setting on the whole mixture.

``pretrain.lr_prompt`` / ``pretrain.lr_lowrank`` (learning rates) and ``pretrain.num_virtual_tokens`` /
``pretrain.rank`` (DePT shapes at one parameter budget) span a grid; each point is a pretraining run of its own
in ``search/<setting>/`` (``adapter/``, ``last/``, ``log.jsonl``, ``metrics.json``, ``config.yaml``), all on the
same data in the same order. ``selection.json`` ranks the settings by their best mean dev score and the best
setting's adapter is copied to ``adapter/``, so a target stage can start from ``<output_dir>/adapter``.

With ``pretrain.pack`` (auto: on a GPU) the settings train together in packs that share each pass of the frozen
base (:mod:`dept_vl.train.packed`), each computing what it computes alone. Packed settings keep no step
checkpoints: ``--resume`` keeps the finished settings and trains the others again from the start; settings run one
after another are ordinary ``pretrain`` runs and resume from their own checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

from dept_vl.adapter import read_adapter, write_adapter
from dept_vl.config import PretrainConfig, RunConfig
from dept_vl.io import write_json_atomic
from dept_vl.methods import get_method
from dept_vl.methods.dept import DePT
from dept_vl.recipes.sweep import (check_shape_search, measures_memory, memory_pack_size, pack_size, search_settings,
                                   searched_dept, setting_tags)
from dept_vl.report.results import load_json
from dept_vl.train.hooks import BestAdapter
from dept_vl.train.loader import TrainBatches, mixture_plan
from dept_vl.train.outdir import claim_output_dir, holds_a_run
from dept_vl.train.packed import PackedRun, fit_packed, score_packed
from dept_vl.train.run import Run, dev_task_names, trainable_count


@dataclasses.dataclass
class Setting:
    """One point of the grid: what is searched, its folder and its run config."""

    searched: dict[str, Any]
    folder: Path
    config: RunConfig

    @property
    def name(self) -> str:
        return self.folder.name


def run_pretrain_search(config: RunConfig, pretrain_one: Callable[..., dict[str, Any]], resume: bool = False,
                        overwrite: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Pretrain one adapter per searched setting; returns ``selection.json``'s content.

    Args:
        pretrain_one: ``pretrain_one(config, resume=..., overwrite=..., show_progress=...)``, one pretraining run
            (``dept_vl.recipes.pretrain.run_pretrain``), for settings trained one after another.

    Raises:
        ValueError: a method without DePT's learning rates, a shape search that cannot keep the budget, or a
            folder that holds a run while neither ``resume`` nor ``overwrite`` is set.
    """
    method = get_method(config.method)
    if not isinstance(method, DePT):
        raise ValueError(f"pretrain.lr_prompt / lr_lowrank / num_virtual_tokens / rank search DePT's and prompt tuning's "
                         f"settings; method {config.method!r} has its own (set them in its section) or use method=dept")
    check_shape_search(config.pretrain, "pretrain", method)
    out = Path(config.output_dir).expanduser()
    main = int(os.environ.get("RANK", "0")) == 0
    claim = claim_output_dir(out, resume=resume, overwrite=overwrite, main_process=main)
    try:
        return _search(config, out, main, resume, show_progress, pretrain_one)
    finally:
        claim.release()


def finished(setting: Setting) -> bool:
    """A setting whose run completed (its ``metrics.json`` says so) with the same settings (its ``config.yaml``)."""
    from dept_vl.config import load_config

    metrics, saved = load_json(setting.folder / "metrics.json", {}), setting.folder / "config.yaml"
    return bool(metrics.get("complete")) and saved.is_file() and load_config(saved).to_dict() == setting.config.to_dict()


def _search(config: RunConfig, out: Path, main: bool, resume: bool, show_progress: bool,
            pretrain_one: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    run = Run.setup(config, config.data.tasks, scored=dev_task_names(config))
    d_model = int(run.base.get_input_embeddings().weight.shape[1])
    settings = []
    for point in search_settings(config.pretrain):
        folder = out / "search" / ("_".join(setting_tags(point)) or "default")
        settings.append(Setting(point, folder, dataclasses.replace(
            config, output_dir=str(folder), pretrain=PretrainConfig(), dept=searched_dept(point, config.dept, d_model))))
    if main:
        config.save(out / "config.yaml")
    todo = [s for s in settings if not (resume and finished(s))]
    size = pack_size(config.pretrain, "pretrain", config, run, len(todo))
    if size > 1:
        _train_packed(run, config, todo, size, main, show_progress)
    else:
        import gc

        del run  # each setting's run loads its own base: hold one at a time
        gc.collect()
        for setting in todo:
            pretrain_one(setting.config, resume=resume and holds_a_run(setting.folder), overwrite=not resume,
                         show_progress=show_progress)
    return _select(out, settings, main)


def _train_packed(run: Run, config: RunConfig, todo: list[Setting], size: int, main: bool, show_progress: bool) -> None:
    train_sets = run.load_splits("train", config.data.train_size)
    dev_sets = {name: run.load(name, "dev", config.data.eval_size) for name in dev_task_names(config)}
    collate = run.collator([*train_sets.values(), *dev_sets.values()])
    acc = run.accelerator
    plan, rates = mixture_plan(train_sets, config.data, config.train, acc.process_index, acc.num_processes)

    def dev_scores(models: list[Any]) -> list[dict[str, Any]]:
        """Each model's ``run.evaluate`` result, generated together task by task."""
        results: list[dict[str, Any]] = [{} for _ in models]
        for task, examples in dev_sets.items():
            for result, (metrics, _) in zip(results, score_packed(run, task, [(m, examples) for m in models], collate)):
                result[task] = metrics
        for result in results:
            result["mean_headline"] = sum(result[t]["headline"] for t in dev_sets) / max(1, len(dev_sets))
        return results

    queue, measure = list(todo), measures_memory(acc.device) and not config.pretrain.pack_size
    while queue:
        pack = queue[:size]
        models = []
        for setting in pack:
            claim = claim_output_dir(setting.folder, overwrite=True, main_process=main)
            claim.release()
            models.append(run.new_model(config=setting.config))
        if measure:  # the first pack measures what fits in the GPU's memory; later packs take that size
            batches = TrainBatches(plan, train_sets, collate)
            measure, size = False, memory_pack_size(models, [batches[0].tensors] * len(models), acc.device)
            pack, models = pack[:size], models[:size]
        queue = queue[len(pack):]

        def save_best(setting: Setting) -> Any:
            def on_best(model: Any, score: float, step: int) -> None:
                if main:
                    model.save_pretrained(setting.folder / "adapter")
                    setting.config.save(setting.folder / "adapter" / "run_config.yaml")
            return on_best

        runs = [PackedRun(m, TrainBatches(plan, train_sets, collate), BestAdapter(lambda m: None, on_best=save_best(s)),
                          s.folder / "log.jsonl") for m, s in zip(models, pack)]
        if main:
            for setting in pack:
                setting.config.save(setting.folder / "config.yaml")
        results, stopped = fit_packed(runs, config.train, acc,
                                      lambda indices: [r["mean_headline"] for r in dev_scores([models[i] for i in indices])])
        done = [i for i in range(len(pack)) if i not in stopped]
        finals = dev_scores([models[i] for i in done])
        for i, final in zip(done, finals):
            setting, result, model = pack[i], results[i], models[i]
            summary = {
                "output_dir": str(setting.folder), "adapter": str(setting.folder / "adapter"), "method": run.method.name,
                "steps": result.steps, "complete": True, "stopped_early": result.stopped_early, "best_score": result.best_score, "best_step": result.best_step,
                "final_dev": final, "seconds": result.seconds, "step_time_ms": result.step_time_ms,
                "examples_per_s": result.examples_per_s, "peak_memory_mb": result.peak_memory_mb,
                "trainable_parameters": trainable_count(model), "mixture_rates": rates, "processes": acc.num_processes,
                "pack_size": len(pack),
            }
            if main:
                model.save_pretrained(setting.folder / "last")
                write_json_atomic(setting.folder / "metrics.json", summary)
        for i, why in stopped.items():
            if main:
                write_json_atomic(pack[i].folder / "metrics.json", {"complete": False, "stopped": why})


def _select(out: Path, settings: list[Setting], main: bool) -> dict[str, Any]:
    """``selection.json``: every setting's best dev score, the best setting, and its adapter copied to ``adapter/``."""
    rows = []
    for setting in settings:
        metrics = load_json(setting.folder / "metrics.json", {})
        rows.append({**setting.searched, "folder": str(setting.folder.relative_to(out)), "complete": bool(metrics.get("complete")),
                     "dev_score": metrics.get("best_score"), "best_step": metrics.get("best_step"),
                     "dept_shape": [setting.config.dept.num_virtual_tokens, setting.config.dept.rank],
                     "trainable_parameters": metrics.get("trainable_parameters")})
    scored = [i for i, r in enumerate(rows) if r["complete"] and r["dev_score"] is not None]
    if not scored:
        raise RuntimeError(f"no setting of the search in {out} finished (see search/*/metrics.json)")
    best = max(scored, key=lambda i: (rows[i]["dev_score"], -i))  # ties: the first in grid order
    selection = {"best": rows[best], "settings": rows}
    if main:
        adapter = read_adapter(out / rows[best]["folder"] / "adapter")
        write_adapter(out / "adapter", method=adapter.method, settings=adapter.settings, tensors=adapter.tensors,
                      base_model=adapter.base_model, peft_config=adapter.peft_config, extra=adapter.extra)
        write_json_atomic(out / "selection.json", selection)
        print(f"best setting {rows[best]['folder']} (mean dev {rows[best]['dev_score']:.4f}); its adapter: {out / 'adapter'}", flush=True)
    return selection

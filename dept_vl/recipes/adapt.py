"""Recipe: k-shot adaptation on a target task, from a source adapter or from scratch, for several k and seeds.

Every (k, seed) run draws its own k-shot train and dev sets, trains, keeps its best adapter by the dev
score, restores it, and is scored on the test split. Writes ``runs/<label>_k<k>_seed<s>/`` (``result.json``,
``predictions.jsonl``, ``log.jsonl``, ``config.yaml``, ``adapter/``), ``results.json``, ``summary.json`` and
``summary.csv``; ``<label>`` is the method's results label (``dept-transfer``, ``pt-scratch``, ...).

With ``adapt.pack`` (auto: on a GPU) the runs train and predict together in packs that share each pass of the
frozen base (:mod:`dept_vl.train.packed`), each run computing what it computes alone. ``adapt.lr_prompt`` /
``adapt.lr_lowrank`` turn the sweep into a learning-rate search: one run per (k, seed, rates);
``adapt.num_virtual_tokens`` or ``adapt.rank`` into a shape search at DePT's parameter budget (m traded against
r, runs of different shapes share a pack); ``selection.json`` names the setting with the best mean k-shot dev
score.

The folder accumulates: with ``resume`` a finished run (its ``result.json`` written, same task, label, k, seed
and settings) is kept and skipped, and ``results.json``/``summary.*`` are rewritten from every finished run
of the folder after each run, so a killed sweep keeps what it finished and ``--resume`` runs only the rest.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from dept_vl.adapter import Adapter, read_adapter
from dept_vl.config import RunConfig
from dept_vl.data.example import Example
from dept_vl.data.kshot import kshot_split
from dept_vl.io import write_json_atomic, write_text_atomic
from dept_vl.methods import get_method
from dept_vl.methods.dept import DePT
from dept_vl.recipes.sweep import (check_shape_search, measures_memory, memory_pack_size, pack_size, search_settings,
                                   searched_dept, setting_tags)
from dept_vl.report.results import SEARCHED, select_by_dev, summarize
from dept_vl.train.hooks import BestAdapter
from dept_vl.train.loader import TrainBatches, single_task_plan
from dept_vl.train.loop import NonFiniteLoss
from dept_vl.train.outdir import claim_output_dir
from dept_vl.train.packed import PackedRun, can_pack, fit_packed, score_packed
from dept_vl.train.predict import write_predictions
from dept_vl.train.run import Run, seed_everything, trainable_count

SUMMARY_FIELDS = ["task", "method", "k", "metric", "mean", "std", "seeds"]
# settings that do not change what a run computes: left out of its fingerprint
UNFINGERPRINTED = ("output_dir", "adapt.k", "adapt.seeds", "adapt.lr_prompt", "adapt.lr_lowrank", "adapt.num_virtual_tokens",
                   "adapt.rank", "adapt.save_adapters",
                   "adapt.pack", "adapt.pack_size", "adapt.pack_rows", "eval.batch_size", "eval.pack_rows", "eval.cache")
PRIVATE_FIELDS = ("settings",)  # kept in a run's result.json, left out of the records and results.json


def is_scratch(config: RunConfig) -> bool:
    return config.adapt.source in (None, "", "none", "None")


def is_search(config: RunConfig) -> bool:
    """Whether the sweep searches learning rates or shapes (then ``selection.json`` picks by k-shot dev score)."""
    return config.adapt.searches()


def source_adapter(config: RunConfig) -> Adapter | None:
    """The source adapter named by ``adapt.source`` (None or ``"none"``: train from scratch)."""
    return None if is_scratch(config) else read_adapter(config.adapt.source)


@dataclass(frozen=True)
class RunKey:
    """What tells the runs of a sweep apart: k, seed and, in a search, the run's learning rates or DePT shape."""

    k: int
    seed: int
    lr_prompt: float | None = None  # set only by a search over adapt.lr_prompt
    lr_lowrank: float | None = None  # set only by a search over adapt.lr_lowrank
    num_virtual_tokens: int | None = None  # set only by a shape search over adapt.num_virtual_tokens
    rank: int | None = None  # set only by a shape search over adapt.rank

    def folder(self, label: str) -> str:
        """The run's folder under ``runs/``: ``<label>_k<k>_seed<seed>[_lrp<lr>][_lrl<lr>][_m<m>][_r<r>]``."""
        return f"{label}_k{self.k}_seed{self.seed}" + "".join(f"_{tag}" for tag in setting_tags(self.searched()))

    def searched(self) -> dict[str, float]:
        """The searched settings of this run (none outside a search)."""
        return {k: v for k in SEARCHED if (v := getattr(self, k)) is not None}

    def matches(self, record: dict[str, Any]) -> bool:
        return (int(record["k"]), int(record["seed"]), *(record.get(f) for f in SEARCHED)) == \
            (self.k, self.seed, *(getattr(self, f) for f in SEARCHED))


def run_keys(config: RunConfig) -> list[RunKey]:
    """Every run of the sweep: k x seeds, times the learning rates searched (``adapt.lr_prompt``,
    ``adapt.lr_lowrank``), times the shapes searched (``adapt.num_virtual_tokens`` or ``adapt.rank``)."""
    a = config.adapt
    keys = [RunKey(k, s, **point) for k in a.k for s in a.seeds for point in search_settings(a)]
    return list(dict.fromkeys(keys))  # a value given twice runs once


def run_name(label: str, k: int, seed: int) -> str:
    """The folder of a (k, seed) run outside a search: ``<label>_k<k>_seed<seed>``."""
    return RunKey(k, seed).folder(label)


def run_settings(config: RunConfig) -> dict[str, Any]:
    """The settings that decide what a run of ``config`` computes, flat (``section.key``), JSON values."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif prefix not in UNFINGERPRINTED and not prefix.startswith("pretrain."):  # pretrain's searches
            flat[prefix] = value

    walk("", config.to_dict())
    if not is_scratch(config):
        flat["adapt.source"] = str(Path(config.adapt.source).expanduser().resolve())
    return json.loads(json.dumps(flat, sort_keys=True, default=str))


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def finished_runs(out: Path) -> dict[str, dict[str, Any]]:
    """Every finished run of ``out`` (``runs/*/result.json``), by run folder name; unreadable files are skipped
    (their run counts as not finished)."""
    found = {}
    for path in sorted((out / "runs").glob("*/result.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and {"task", "method", "k", "seed", "score", "metric"} <= set(record):
            found[path.parent.name] = record
    return found


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in PRIVATE_FIELDS}


def check_settings(done: dict[str, dict[str, Any]], task: str, label: str, settings: dict[str, Any], out: Path) -> None:
    """Refuse a sweep whose settings differ from those of the finished runs of the same task and method in the
    folder: their records would be mixed in one ``results.json``."""
    mine = fingerprint(settings)
    for name, record in done.items():
        if record["task"] != task or record["method"] != label or record.get("fingerprint") == mine:
            continue
        theirs = record.get("settings") or {}
        changed = sorted(k for k in set(theirs) | set(settings) if theirs.get(k, "<unset>") != settings.get(k, "<unset>"))
        shown = ", ".join(f"{k}={theirs.get(k, '<unset>')!r} -> {settings.get(k, '<unset>')!r}" for k in changed[:6])
        raise ValueError(f"output_dir={str(out)!r} holds {task} {label} runs made with other settings (runs/{name}: "
                         f"{shown or 'older run without a fingerprint'}); run with the same settings to continue it, "
                         f"--overwrite to replace it, or choose another output_dir")


def run_adapt(config: RunConfig, resume: bool = False, overwrite: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Train and test one adapter per (k, seed); returns the sweep's records and the summary of every finished
    run in the folder.

    Args:
        resume: continue a folder that holds runs: finished runs of the same settings are kept and skipped.
        overwrite: empty the folder first.
    Raises:
        ValueError: a bad config; the folder holds runs and neither ``resume`` nor ``overwrite`` is set; it holds
            runs of this task and method made with other settings.
        KeyboardInterrupt: interrupted; the finished runs are kept (and in ``results.json``).
    """
    if config.train.stop_at:
        raise ValueError(f"train.stop_at={config.train.stop_at} needs a checkpoint folder to stop into; k-shot runs keep "
                         f"none (each is short), so drop train.stop_at")
    out, task = Path(config.output_dir).expanduser(), config.adapt.task
    main = int(os.environ.get("RANK", "0")) == 0
    folder = claim_output_dir(out, resume=resume, overwrite=overwrite, main_process=main)
    try:
        return _sweep(config, out, task, main, show_progress)
    finally:
        folder.release()


def _sweep(config: RunConfig, out: Path, task: str, main: bool, show_progress: bool) -> dict[str, Any]:
    method = get_method(config.method)
    if (config.adapt.lr_prompt or config.adapt.lr_lowrank) and not isinstance(method, DePT):
        raise ValueError(f"adapt.lr_prompt / adapt.lr_lowrank search DePT's and prompt tuning's learning rates; method "
                         f"{config.method!r} has its own (set them in its section) or use method=dept / prompt_tuning")
    check_shape_search(config.adapt, "adapt", method, None if is_scratch(config) else config.adapt.source)
    label = method.results_label(transfer=not is_scratch(config))
    settings = run_settings(config)
    mark = fingerprint(settings)
    done = finished_runs(out)
    check_settings(done, task, label, settings, out)
    wanted = run_keys(config)
    kept = {key: done[key.folder(label)] for key in wanted
            if key.folder(label) in done and _matches(done[key.folder(label)], task, label, key, mark)}
    todo = [key for key in wanted if key not in kept]
    every = {name: public(record) for name, record in done.items()}  # all finished runs of the folder, new ones added
    records = {key: public(record) for key, record in kept.items()}

    bar = tqdm(total=len(wanted), initial=len(kept), desc=f"{task} {label}", unit="run",
               disable=not (show_progress and main), dynamic_ncols=True)
    try:
        if todo:
            _train(config, out, task, label, mark, settings, todo, records, every, main, bar)
        elif main:
            _write_results(out, every)
    except KeyboardInterrupt as interrupt:
        finished = sum(key in records for key in wanted)
        message = (f"interrupted: {finished} of {len(wanted)} runs finished and kept in {out}; continue with --resume")
        if main:
            bar.close()
            print(message, file=sys.stderr, flush=True)
        raise KeyboardInterrupt(message) from interrupt
    finally:
        bar.close()
    ordered = [records[key] for key in wanted]
    result = {"records": ordered, "summary": summary_rows(list(every.values())), "output_dir": str(out), "skipped": len(kept)}
    if is_search(config):
        result["selection"] = select_by_dev(list(every.values()))
    return result


def _matches(record: dict[str, Any], task: str, label: str, key: RunKey, mark: str) -> bool:
    return record["task"] == task and record["method"] == label and key.matches(record) and record.get("fingerprint") == mark


@dataclass
class KShotRun:
    """One run of a sweep: its key, data, folder, config, model and best adapter."""

    key: RunKey
    train: list[Example]
    dev: list[Example]
    folder: Path
    config: RunConfig
    model: Any = None
    best: BestAdapter | None = None


def _train(config: RunConfig, out: Path, task: str, label: str, mark: str, settings: dict[str, Any],
           todo: list[RunKey], records: dict, every: dict, main: bool, bar: Any) -> None:
    # setup: everything that can fail does so before the first run trains
    source = source_adapter(config)  # read (and refused, when it cannot serve) before anything is loaded
    train_config = get_method(config.method).with_source(config, source) if source is not None else config
    run = Run.setup(config, [task])
    if source is not None:
        run.method.check_base(source, run.base)
    seed_everything(0)
    d_model = int(run.base.get_input_embeddings().weight.shape[1])
    pool = run.load(task, "train", config.data.train_size)
    test = run.load(task, config.eval.split, config.data.eval_size)
    plans = []
    for key in todo:
        train, dev = kshot_split(pool, key.k, key.seed, config.adapt.dev_k)
        run_config = dataclasses.replace(train_config, train=dataclasses.replace(train_config.train, seed=key.seed),
                                         dept=searched_dept(key.searched(), train_config.dept, d_model))
        plans.append(KShotRun(key, train, dev, out / "runs" / key.folder(label), run_config))
    collate = run.collator([test, *(p.train + p.dev for p in plans)], train_config)  # only the images the runs use
    if main:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.yaml")

    def new_model(plan: KShotRun) -> None:
        if main:
            if plan.folder.exists():  # an unfinished (or outdated) run: start it again from nothing
                shutil.rmtree(plan.folder)
            plan.folder.mkdir(parents=True)
        plan.model = run.new_model(plan.key.seed, plan.config)
        if source is not None:
            plan.model.load_adapter_state(source.tensors, parts=config.adapt.transfer)

    def batches(plan: KShotRun) -> TrainBatches:
        return TrainBatches(single_task_plan(plan.train, plan.config.train, plan.key.seed, task), {task: plan.train}, collate)

    def finish(plan: KShotRun, result: Any, metrics: dict[str, Any], predictions: list[str], pack: int) -> None:
        record = {
            "task": task, "k": plan.key.k, "method": label, "seed": plan.key.seed, **plan.key.searched(), "score": metrics["headline"],
            "metric": run.tasks[task].headline_metric, "metrics": metrics, "best_step": result.best_step,
            "steps": result.steps, "stopped_early": result.stopped_early,
            "dev_score": result.best_score, "train_size": len(plan.train), "dev_size": len(plan.dev), "test_size": len(test),
            "train_seconds": result.seconds, "step_time_ms": result.step_time_ms,
            "examples_per_s": result.examples_per_s, "peak_memory_mb": result.peak_memory_mb,
            "trainable_parameters": trainable_count(plan.model), "fingerprint": mark, "pack_size": pack,
            "dept_shape": [plan.model.dept_config.num_virtual_tokens, plan.model.dept_config.rank] if hasattr(plan.model, "dept_config") else None,
        }
        record = json.loads(json.dumps(record))  # as it reads back from result.json, so kept and new runs compare equal
        records[plan.key] = every[plan.folder.name] = record
        if main:
            if config.adapt.save_adapters:
                plan.model.save_pretrained(plan.folder / "adapter")
            write_predictions(plan.folder / "predictions.jsonl", test, predictions)
            plan.config.save(plan.folder / "config.yaml")
            write_json_atomic(plan.folder / "result.json", {**record, "settings": settings})  # last: marks the run finished
            _write_results(out, every)
            searched = "".join(f" {k}={v:g}" for k, v in plan.key.searched().items())
            bar.write(f"{task} k={plan.key.k} seed={plan.key.seed}{searched} {label}: {record['metric']} {record['score']:.4f}")
        bar.update(1)
        bar.set_postfix(k=plan.key.k, seed=plan.key.seed, score=f"{record['score']:.4f}")

    size = pack_size(config.adapt, "adapt", config, run, len(plans))
    if size > 1:
        failed: list[str] = []
        queue, measure = list(plans), measures_memory(run.accelerator.device) and not config.adapt.pack_size
        while queue:
            pack = queue[:size]
            for plan in pack:
                new_model(plan)
                plan.best = BestAdapter(lambda m: None, keep_in_memory=True)
            why = can_pack([p.model for p in pack])
            if why:
                raise ValueError(f"adapt.pack={config.adapt.pack}: {why}; set adapt.pack=off")
            if measure:  # the first pack measures what fits in the GPU's memory; later packs take that size
                measure, size = False, memory_pack_size([p.model for p in pack], [batches(p)[0].tensors for p in pack], run.accelerator.device)
                if size < len(pack):
                    if main:
                        bar.write(f"adapt.pack: {size} runs a pack fit in the GPU's memory (of {len(pack)} asked by adapt.pack_rows)")
                    for plan in pack[size:]:
                        plan.model = plan.best = None
                    pack = pack[:size]
            queue = queue[len(pack):]

            def evaluate(indices: list[int], pack: list[KShotRun] = pack) -> list[float]:
                scored = score_packed(run, task, [(pack[i].model, pack[i].dev) for i in indices], collate)
                return [metrics["headline"] for metrics, _ in scored]

            results, stopped = fit_packed([PackedRun(p.model, batches(p), p.best, p.folder / "log.jsonl") for p in pack],
                                          pack[0].config.train, run.accelerator, evaluate)
            done = [i for i in range(len(pack)) if i not in stopped]
            for i in done:
                pack[i].best.restore(pack[i].model)
            scored = score_packed(run, task, [(pack[i].model, test) for i in done], collate)
            for i, (metrics, predictions) in zip(done, scored):
                finish(pack[i], results[i], metrics, predictions, len(pack))
            failed += [f"{pack[i].folder.name}: {why}" for i, why in stopped.items()]
            for plan in pack:
                plan.model = plan.best = None  # free the pack's adapters before the next one
        if failed:
            raise NonFiniteLoss(f"{len(failed)} run(s) stopped early and were not recorded ({'; '.join(failed)}); the other "
                                f"runs are finished and kept in {out}")
        return

    for plan in plans:
        new_model(plan)
        best = BestAdapter(lambda m, dev=plan.dev: run.score(m, task, dev, collate)[0]["headline"], keep_in_memory=True)
        result = run.fit(plan.model, batches(plan), best, config=plan.config, show_progress=False, log_file=plan.folder / "log.jsonl")
        best.restore(plan.model)
        metrics, predictions = run.score(plan.model, task, test, collate)
        finish(plan, result, metrics, predictions, 1)


def _write_results(out: Path, every: dict[str, dict[str, Any]]) -> None:
    """``results.json``, ``summary.json``, ``summary.csv`` from every finished run of the folder."""
    records = sorted(every.values(), key=lambda r: (r["task"], r["method"], int(r["k"]), int(r["seed"]),
                                                    r.get("lr_prompt") or 0.0, r.get("lr_lowrank") or 0.0))
    summary = summary_rows(records)
    write_json_atomic(out / "results.json", records)
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "summary.csv", summary_csv(summary))
    if any(f in r for r in records for f in SEARCHED):
        write_json_atomic(out / "selection.json", select_by_dev(records))


def summary_rows(records: list[dict]) -> list[dict]:
    """Mean and std over seeds per task, method, k (and searched setting), in the fields of ``summary.csv``."""
    return [{**{f: row[f] for f in SUMMARY_FIELDS if f in row}, **{f: row[f] for f in SEARCHED if f in row}, "seeds": row["n"]}
            for row in summarize(records)]


def summary_csv(summary: list[dict]) -> str:
    buffer = io.StringIO()
    searched = [f for f in SEARCHED if any(f in row for row in summary)]
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS[:3] + searched + SUMMARY_FIELDS[3:])
    writer.writeheader()
    writer.writerows(summary)
    return buffer.getvalue()

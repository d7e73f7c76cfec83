"""Recipe: k-shot adaptation on a target task, from a source adapter or from scratch, for several k and seeds.

Every (k, seed) run draws its own k-shot train and dev sets, trains, keeps its best adapter by the dev
score, restores it, and is scored on the test split. Writes ``runs/k<k>_seed<s>/`` (``result.json``,
``predictions.jsonl``, ``adapter/``), ``results.json``, ``summary.json`` and ``summary.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import Any

from dept_vl.adapter import Adapter, read_adapter
from dept_vl.config import RunConfig
from dept_vl.data.kshot import kshot_split
from dept_vl.io import write_json_atomic, write_text_atomic
from dept_vl.methods import get_method
from dept_vl.report.results import summarize
from dept_vl.train.hooks import BestAdapter
from dept_vl.train.loader import TrainBatches, single_task_plan
from dept_vl.train.outdir import claim_output_dir
from dept_vl.train.predict import write_predictions
from dept_vl.train.run import Run, seed_everything, trainable_count

SUMMARY_FIELDS = ["task", "method", "k", "metric", "mean", "std", "seeds"]


def source_adapter(config: RunConfig) -> Adapter | None:
    """The source adapter named by ``adapt.source`` (None or ``"none"``: train from scratch)."""
    src = config.adapt.source
    return None if src in (None, "", "none", "None") else read_adapter(src)


def run_adapt(config: RunConfig, show_progress: bool = True, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train and test one adapter per (k, seed); returns the records and their summary. A folder that holds
    another sweep is refused unless ``resume`` (write into it) or ``overwrite`` (replace it)."""
    if config.train.stop_at:
        raise ValueError(f"train.stop_at={config.train.stop_at} needs a checkpoint folder to stop into; k-shot runs keep "
                         f"none (each is short), so drop train.stop_at")
    out, task = Path(config.output_dir).expanduser(), config.adapt.task
    folder = claim_output_dir(out, resume=resume, overwrite=overwrite, main_process=int(os.environ.get("RANK", "0")) == 0)
    # setup: everything that can fail does so before the first run trains
    source = source_adapter(config)  # read (and refused, when it cannot serve) before anything is loaded
    train_config = get_method(config.method).with_source(config, source) if source is not None else config
    run = Run.setup(config, [task])
    if source is not None:
        run.method.check_base(source, run.base)
    label = run.method.results_label(transfer=source is not None)
    seed_everything(0)
    pool = run.load(task, "train", config.data.train_size)
    test = run.load(task, config.eval.split, config.data.eval_size)
    splits = {(k, s): kshot_split(pool, k, s, config.adapt.dev_k) for k in config.adapt.k for s in config.adapt.seeds}
    collate = run.collator([test, pool], train_config)
    if run.accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.yaml")

    records = []
    for (k, seed), (train, dev) in splits.items():
        run_config = dataclasses.replace(train_config, train=dataclasses.replace(train_config.train, seed=seed))
        model = run.new_model(seed, run_config)
        if source is not None:
            model.load_adapter_state(source.tensors, parts=config.adapt.transfer)
        best = BestAdapter(lambda m: run.score(m, task, dev, collate)[0]["headline"], keep_in_memory=True)
        result = run.fit(model, TrainBatches(single_task_plan(train, run_config.train, seed, task), {task: train}, collate),
                         best, config=run_config, show_progress=False)
        best.restore(model)
        metrics, predictions = run.score(model, task, test, collate)
        record = {
            "task": task, "k": k, "method": label, "seed": seed, "score": metrics["headline"],
            "metric": run.tasks[task].headline_metric, "metrics": metrics, "best_step": result.best_step,
            "dev_score": result.best_score, "train_size": len(train), "dev_size": len(dev), "test_size": len(test),
            "train_seconds": result.seconds, "step_time_ms": result.step_time_ms,
            "examples_per_s": result.examples_per_s, "peak_memory_mb": result.peak_memory_mb,
            "trainable_parameters": trainable_count(model),
        }
        records.append(record)
        if run.accelerator.is_main_process:
            run_dir = out / "runs" / f"k{k}_seed{seed}"
            if config.adapt.save_adapters:
                model.save_pretrained(run_dir / "adapter")
            write_predictions(run_dir / "predictions.jsonl", test, predictions)
            write_json_atomic(run_dir / "result.json", record)
            run.accelerator.print(f"{task} k={k} seed={seed} {label}: {record['metric']} {record['score']:.4f}")

    summary = [{**{f: row[f] for f in SUMMARY_FIELDS if f in row}, "seeds": row["n"]} for row in summarize(records)]
    if run.accelerator.is_main_process:
        write_json_atomic(out / "results.json", records)
        write_json_atomic(out / "summary.json", summary)
        write_text_atomic(out / "summary.csv", summary_csv(summary))
    folder.release()
    return {"records": records, "summary": summary, "output_dir": str(out)}


def summary_csv(summary: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    writer.writerows(summary)
    return buffer.getvalue()

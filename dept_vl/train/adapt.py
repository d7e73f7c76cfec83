"""Recipe: k-shot adaptation on a target task from a source adapter (or from scratch), for several k and seeds."""

from __future__ import annotations

import csv
import dataclasses
import io
import statistics
from pathlib import Path
from typing import Any

from dept_vl.config import RunConfig
from dept_vl.data.batching import plan_batches
from dept_vl.data.kshot import kshot_split
from dept_vl.io import write_json_atomic, write_text_atomic
from dept_vl.train import components as C
from dept_vl.train.loop import make_accelerator, may_skip_parameters, train_loop
from dept_vl.train.methods import build_method
from dept_vl.train.predict import predict, write_predictions

METHOD_SHORT = {"dept": "dept", "prompt_tuning": "pt", "lora": "lora", "full": "full"}
RESULT_FIELDS = ("task", "k", "method", "seed", "score", "metric")


def run_label(config: RunConfig) -> str:
    """``dept-transfer``, ``dept-scratch``, ``pt-transfer``, ... as results files name methods."""
    origin = "scratch" if _source(config) is None else "transfer"
    return f"{METHOD_SHORT[config.method]}-{origin}"


def _source(config: RunConfig) -> str | None:
    src = config.adapt.source
    return None if src in (None, "", "none", "None") else src


def source_dept_config(config: RunConfig, base: Any) -> tuple[RunConfig, dict | None]:
    """Read and check the source adapter before any training: its shapes replace the run's, its
    learning rates do not (the target stage sets its own)."""
    source = _source(config)
    if source is None:
        return config, None
    from dept_vl.dept.config import DePTConfig
    from dept_vl.dept.model import check_base_model, read_adapter

    meta, state = read_adapter(source)
    check_base_model(meta.get("base_model", {}), base, source)
    if config.method not in ("dept", "prompt_tuning") or "dept" not in meta:
        raise ValueError(f"adapt.source={source!r}: transfer is supported for dept and prompt_tuning adapters (method={config.method!r})")
    src = DePTConfig.from_dict(meta["dept"])
    shapes = {f: getattr(src, f) for f in ("num_virtual_tokens", "rank", "max_length", "alpha", "trainable_modules")}
    # the source already fixes prompt tuning's length: train it as rank-0 DePT with those shapes
    new = dataclasses.replace(config, method="dept" if config.method == "prompt_tuning" else config.method,
                              dept=dataclasses.replace(config.dept, **shapes))
    return new, state


def run_adapt(config: RunConfig, show_progress: bool = True) -> dict[str, Any]:
    """Train and test one adapter per (k, seed); writes per-run JSON, ``results.json`` and a summary."""
    out = Path(config.output_dir)
    if config.train.stop_at:
        raise ValueError(f"train.stop_at={config.train.stop_at} needs a checkpoint folder to stop into; k-shot runs keep "
                         f"none (each is short), so drop train.stop_at")
    accelerator = make_accelerator(find_unused_parameters=may_skip_parameters(config))
    task = C.load_tasks([config.adapt.task])[config.adapt.task]
    label = run_label(config)
    C.seed_everything(0)
    pool = C.load_split(task, "train", config.data, config.data.train_size)
    test = C.load_split(task, config.eval.split, config.data, config.data.eval_size)
    splits = {(k, s): kshot_split(pool, k, s, config.adapt.dev_k) for k in config.adapt.k for s in config.adapt.seeds}
    base = C.load_base_model(config.model, accelerator.device, config.method, config.train.seed)
    train_config, source_state = source_dept_config(config, base)
    features = None
    if config.data.feature_cache and task.has_images:
        features = C.Features.compute(base, [test, pool])
    collate = C.make_collator(base, config.data, train_config.dept.max_length, features)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.yaml")

    records = []
    for (k, seed), (train, dev) in splits.items():
        run_base = base if config.method in ("dept", "prompt_tuning") else C.load_base_model(config.model, accelerator.device, config.method, config.train.seed)
        C.seed_everything(seed)
        model = build_method(dataclasses.replace(train_config, dept=dataclasses.replace(train_config.dept, seed=seed)), run_base, run_base.tokenizer)
        if source_state is not None:
            model.load_adapter_state(source_state, parts=config.adapt.transfer)
        record = _one_run(model, task, train, dev, test, collate, train_config, accelerator, k, seed, label, out, show_progress)
        records.append(record)
        if accelerator.is_main_process:
            accelerator.print(f"{task.name} k={k} seed={seed} {label}: {record['metric']} {record['score']:.4f}")
    summary = summarise(records)
    if accelerator.is_main_process:
        write_json_atomic(out / "results.json", records)
        write_json_atomic(out / "summary.json", summary)
        write_text_atomic(out / "summary.csv", summary_csv(summary))
    return {"records": records, "summary": summary, "output_dir": str(out)}


def _one_run(model, task, train, dev, test, collate, config: RunConfig, accelerator, k, seed, label, out: Path, show_progress: bool) -> dict:
    cfg = dataclasses.replace(config.train, batch_size=min(config.train.batch_size, len(train)), seed=seed)
    plan = plan_batches({"t": [C.text_length(e) for e in train]}, {"t": 1.0}, cfg.max_steps * cfg.grad_accum, cfg.batch_size, seed, False)
    batches = [[i for _, i in b] for b in plan]
    length = C.generation_length(task, config)

    def evaluate(m) -> float:
        return task.evaluate(predict(m, dev, collate, m.base_model.tokenizer, config.eval, accelerator, length), dev)["headline"]

    result = train_loop(model, batches, lambda idx: collate([train[i] for i in idx]), cfg, accelerator,
                        evaluate=evaluate, keep_best_in_memory=True, show_progress=False)
    if result.best_state is not None:
        model.load_adapter_state(result.best_state, parts=("prompt", "lowrank", "modules"))
    predictions = predict(model, test, collate, model.base_model.tokenizer, config.eval, accelerator, length)
    metrics = task.evaluate(predictions, test)
    run_dir = out / "runs" / f"k{k}_seed{seed}"
    record = {
        "task": task.name, "k": k, "method": label, "seed": seed, "score": metrics["headline"],
        "metric": task.headline_metric, "metrics": metrics, "best_step": result.best_step,
        "dev_score": result.best_score, "train_size": len(train), "dev_size": len(dev), "test_size": len(test),
        "train_seconds": result.seconds, "step_time_ms": result.step_time_ms,
        "examples_per_s": result.examples_per_s, "peak_memory_mb": result.peak_memory_mb,
        "trainable_parameters": sum(p.numel() for p in model.trainable_parameters().values()),
    }
    if accelerator.is_main_process:
        if config.adapt.save_adapters:
            model.save_pretrained(run_dir / "adapter")
        write_predictions(run_dir / "predictions.jsonl", test, predictions)
        write_json_atomic(run_dir / "result.json", record)
    return record


def summarise(records: list[dict]) -> list[dict]:
    """Mean and standard deviation of the score over seeds, per (task, method, k)."""
    groups: dict[tuple, list[float]] = {}
    for r in records:
        groups.setdefault((r["task"], r["method"], r["k"], r["metric"]), []).append(r["score"])
    return [
        {"task": t, "method": m, "k": k, "metric": metric, "mean": statistics.fmean(v),
         "std": statistics.stdev(v) if len(v) > 1 else 0.0, "seeds": len(v)}
        for (t, m, k, metric), v in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2]))
    ]


def summary_csv(summary: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["task", "method", "k", "metric", "mean", "std", "seeds"])
    writer.writeheader()
    writer.writerows(summary)
    return buffer.getvalue()

"""Recipe: train one adapter on a mixture of source tasks, keeping the best by the mean dev headline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dept_vl.config import RunConfig
from dept_vl.data.batching import mixture_rates, plan_batches
from dept_vl.io import write_json_atomic
from dept_vl.train import components as C
from dept_vl.train.loop import make_accelerator, may_skip_parameters, train_loop
from dept_vl.train.methods import build_method
from dept_vl.train.predict import predict


def evaluate_tasks(model: Any, tasks: dict[str, Any], splits: dict[str, list], collate: Any, config: RunConfig, accelerator: Any) -> dict[str, dict[str, float]]:
    """Every task's metrics on its split (``{"task": {...}}``), plus ``mean_headline``."""
    results: dict[str, Any] = {}
    for name, examples in splits.items():
        predictions = predict(model, examples, collate, model_tokenizer(model), config.eval, accelerator,
                              max_new_tokens=C.generation_length(tasks[name], config))
        results[name] = tasks[name].evaluate(predictions, examples)
    results["mean_headline"] = sum(r["headline"] for r in results.values()) / max(1, len(splits))
    return results


def model_tokenizer(model: Any) -> Any:
    base = getattr(model, "base_model", model)
    return base.tokenizer


def run_pretrain(config: RunConfig, resume: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Train on ``config.data.tasks``; writes ``adapter/`` (best), ``last/``, logs and metrics under output_dir."""
    out = Path(config.output_dir)
    accelerator = make_accelerator(mixed_precision=_precision(config), find_unused_parameters=may_skip_parameters(config))
    tasks = C.load_tasks(config.data.tasks)
    C.seed_everything(config.train.seed)
    train_sets = {n: C.load_split(t, "train", config.data, config.data.train_size) for n, t in tasks.items()}
    dev_sets = {n: C.load_split(t, "dev", config.data, config.data.eval_size) for n, t in tasks.items()}
    base = C.load_base_model(config.model, accelerator.device, config.method, config.train.seed)
    model = build_method(config, base, base.tokenizer)
    features = None
    if config.data.feature_cache and any(t.has_images for t in tasks.values()):
        features = C.Features.compute(base, list(train_sets.values()) + list(dev_sets.values()))
    collate = C.make_collator(base, config.data, config.dept.max_length, features)

    world, rank = accelerator.num_processes, accelerator.process_index
    rates = mixture_rates({n: len(s) for n, s in train_sets.items()}, config.data.mixing, config.data.mixing_cap, config.data.temperature)
    pools = {n: [C.text_length(e) for e in s] for n, s in train_sets.items()}
    plan = plan_batches(pools, rates, config.train.max_steps * config.train.grad_accum,
                        config.train.batch_size * world, config.train.seed, config.data.length_grouping)
    batches = [(b[0][0], [i for _, i in b[rank::world]]) for b in plan]

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.yaml")
        accelerator.print(f"pretrain on {', '.join(f'{n} ({rates[n]:.0%})' for n in tasks)}; "
                          f"{sum(p.numel() for p in model.trainable_parameters().values()):,d} trainable parameters")

    def evaluate(m: Any) -> float:
        return evaluate_tasks(m, tasks, dev_sets, collate, config, accelerator)["mean_headline"]

    def on_best(m: Any, score: float, step: int) -> None:
        if accelerator.is_main_process:
            m.save_pretrained(out / "adapter")
            config.save(out / "adapter" / "run_config.yaml")

    result = train_loop(
        model, batches, lambda spec: collate([train_sets[spec[0]][i] for i in spec[1]]), config.train, accelerator,
        checkpoint_dir=out / "checkpoints", evaluate=evaluate, on_best=on_best, resume=resume,
        log_file=out / "log.jsonl", batch_task=lambda spec: spec[0], show_progress=show_progress,
    )
    complete = result.steps >= config.train.max_steps
    # a job stopped by train.stop_at skips the final evaluation: --resume finishes it
    final = evaluate_tasks(model, tasks, dev_sets, collate, config, accelerator) if complete else None
    summary = {
        "output_dir": str(out), "adapter": str(out / "adapter"), "steps": result.steps, "complete": complete,
        "best_score": result.best_score, "best_step": result.best_step, "final_dev": final,
        "seconds": result.seconds, "step_time_ms": result.step_time_ms, "examples_per_s": result.examples_per_s,
        "peak_memory_mb": result.peak_memory_mb, "trainable_parameters": sum(p.numel() for p in model.trainable_parameters().values()),
        "mixture_rates": rates, "processes": world,
    }
    if accelerator.is_main_process:
        model.save_pretrained(out / "last")
        write_json_atomic(out / "metrics.json", summary)
        if not complete:
            accelerator.print(f"stopped at step {result.steps} of {config.train.max_steps}; continue with --resume")
        elif result.best_score is not None:
            accelerator.print(f"best adapter (mean dev {result.best_score:.4f} at step {result.best_step}): {out / 'adapter'}")
    return summary


def _precision(config: RunConfig) -> str:
    import torch

    if config.train.mixed_precision != "auto":
        return config.train.mixed_precision
    # frozen-base methods run the base in bf16 directly (model.dtype); full fine-tuning uses autocast
    return "bf16" if (torch.cuda.is_available() and config.method == "full") else "no"

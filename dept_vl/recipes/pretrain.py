"""Recipe: one adapter trained on a mixture of source tasks, keeping the best by the mean dev headline.

Writes into ``output_dir``: ``config.yaml``, ``log.jsonl``, ``checkpoints/``, ``adapter/`` (the best),
``last/`` and ``metrics.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dept_vl.config import RunConfig
from dept_vl.io import write_json_atomic
from dept_vl.train.hooks import BestAdapter
from dept_vl.train.loader import TrainBatches, mixture_plan
from dept_vl.train.outdir import claim_output_dir
from dept_vl.train.run import Run, trainable_count


def run_pretrain(config: RunConfig, resume: bool = False, show_progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Train on ``config.data.tasks``; returns the summary also written to ``metrics.json``. A folder that holds
    another run is refused unless ``resume`` (continue it) or ``overwrite`` (replace it)."""
    out = Path(config.output_dir).expanduser()
    # setup: the output folder is claimed (checked, locked) before anything is loaded
    folder = claim_output_dir(out, resume=resume, overwrite=overwrite, main_process=int(os.environ.get("RANK", "0")) == 0)
    run = Run.setup(config, config.data.tasks)
    train_sets = run.load_splits("train", config.data.train_size)
    dev_sets = run.load_splits("dev", config.data.eval_size)
    model = run.new_model()
    collate = run.collator([*train_sets.values(), *dev_sets.values()])
    acc = run.accelerator
    plan, rates = mixture_plan(train_sets, config.data, config.train, acc.process_index, acc.num_processes)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.yaml")
        acc.print(f"pretrain on {', '.join(f'{n} ({rates[n]:.0%})' for n in train_sets)}; "
                  f"{trainable_count(model):,d} trainable parameters")

    # train, keeping the best adapter on disk
    def save_best(m: Any, score: float, step: int) -> None:
        if acc.is_main_process:
            m.save_pretrained(out / "adapter")
            config.save(out / "adapter" / "run_config.yaml")

    best = BestAdapter(lambda m: run.evaluate(m, dev_sets, collate)["mean_headline"], on_best=save_best)
    result = run.fit(model, TrainBatches(plan, train_sets, collate), best, checkpoint_dir=out / "checkpoints",
                     resume=resume, log_file=out / "log.jsonl", show_progress=show_progress)

    # save; a job stopped by train.stop_at skips the final evaluation: --resume finishes it
    complete = result.steps >= config.train.max_steps
    final = run.evaluate(model, dev_sets, collate) if complete else None
    summary = {
        "output_dir": str(out), "adapter": str(out / "adapter"), "method": run.method.name, "steps": result.steps,
        "complete": complete, "best_score": result.best_score, "best_step": result.best_step, "final_dev": final,
        "seconds": result.seconds, "step_time_ms": result.step_time_ms, "examples_per_s": result.examples_per_s,
        "peak_memory_mb": result.peak_memory_mb, "trainable_parameters": trainable_count(model),
        "mixture_rates": rates, "processes": acc.num_processes,
    }
    if acc.is_main_process:
        model.save_pretrained(out / "last")
        write_json_atomic(out / "metrics.json", summary)
        if not complete:
            acc.print(f"stopped at step {result.steps} of {config.train.max_steps}; continue with --resume")
        elif result.best_score is not None:
            acc.print(f"best adapter (mean dev {result.best_score:.4f} at step {result.best_step}): {out / 'adapter'}")
    folder.release()
    return summary

"""Recipe: one adapter trained on a mixture of source tasks, keeping the best by the mean dev headline.

Writes into ``output_dir``: ``config.yaml``, ``log.jsonl``, ``checkpoints/``, ``adapter/`` (the best),
``last/`` and ``metrics.json``. The folder is claimed before anything is loaded: one that holds a run is
refused unless ``resume`` (continue it) or ``overwrite`` (replace it) is set, and one that another run is
writing into is refused (a lock held for the run's lifetime).

What happens on kill, Ctrl-C, SIGTERM and crash: checkpoints are written every ``train.save_every`` steps
through a temporary folder renamed into place, and ``checkpoints/latest`` moves only once the new one is
complete, so a kill at any moment (even ``kill -9`` or a power cut) leaves the last complete checkpoint to
``--resume`` from; a resumed run checks every file of a checkpoint and falls back to the next newest
complete one, saying which and why. Ctrl-C, SIGTERM and SIGHUP save a checkpoint at the current step first,
then stop with a message (exit code 130). A step's checkpoint is written before its evaluation, so an error
in evaluation loses no training: ``--resume`` runs just that evaluation and goes on. The best adapter
(``adapter/``) and the checkpoint's record of the best move together; a resumed run rewrites ``adapter/`` from
the checkpoint when an interruption left them apart, and drops ``log.jsonl`` lines after the checkpoint's
step. ``--resume`` refuses settings that change results (the method, model, adapter, data and optimisation
keys of :data:`RESULT_KEYS`); results are bit-exact only at the same thread count and process count. A NaN or
infinite loss stops the run and keeps the last good checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dept_vl.config import RunConfig
from dept_vl.io import write_json_atomic
from dept_vl.train.checkpoint import clean_leftovers
from dept_vl.train.hooks import BestAdapter
from dept_vl.train.loader import TrainBatches, mixture_plan
from dept_vl.train.outdir import claim_output_dir
from dept_vl.train.run import Run, dev_task_names, trainable_count

# the settings a resumed run must share with the run it continues ("section." : the whole section)
RESULT_KEYS = ("method", "model.", "dept.", "lora.", "full.", "ulpt.", "attempt.", "mpt.", "data.tasks", "data.dev_tasks", "data.format", "data.train_size", "data.mixing",
               "data.temperature", "train.max_steps", "train.batch_size", "train.grad_accum", "train.seed",
               "train.warmup_steps", "train.max_grad_norm", "train.patience")


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _matters(key: str) -> bool:
    """Whether ``key`` changes results (``data.mixing`` covers ``data.mixing_cap`` too)."""
    return any(key.startswith(k) if k.endswith(".") or k == "data.mixing" else key == k for k in RESULT_KEYS)


def check_resumable(config: RunConfig, saved_file: Path) -> None:
    """Raise ValueError when ``config`` differs from the run saved in ``saved_file`` on a key that changes results."""
    from dept_vl.config import load_config

    if not saved_file.is_file():
        return
    old, new = _flat(load_config(saved_file).to_dict()), _flat(config.to_dict())
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
               if _matters(k) and old.get(k) != new.get(k)]
    if changed:
        raise ValueError(f"--resume: the run in {saved_file.parent} was started with other settings that change results "
                         f"({'; '.join(changed)}); resume with its settings, or start a new output_dir or pass --overwrite")


def run_pretrain(config: RunConfig, resume: bool = False, overwrite: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Train on ``config.data.tasks``; returns the summary also written to ``metrics.json``.

    ``resume``: continue the run in ``output_dir`` from its newest complete checkpoint; ``overwrite``:
    replace the run in ``output_dir``. Without either, an ``output_dir`` that holds a run is refused.
    With ``pretrain.*`` searches set, one run per setting (:mod:`dept_vl.recipes.pretrain_search`)."""
    if config.pretrain.searches():
        from dept_vl.recipes.pretrain_search import run_pretrain_search

        return run_pretrain_search(config, run_pretrain, resume=resume, overwrite=overwrite, show_progress=show_progress)
    out = Path(config.output_dir)
    main = int(os.environ.get("RANK", "0")) == 0  # before the accelerator exists
    claim = claim_output_dir(out, resume=resume, overwrite=overwrite, main_process=main)
    try:
        if resume:
            check_resumable(config, out / "config.yaml")
            if main:
                clean_leftovers(out / "checkpoints", (out / "adapter", out / "last"))
        return _pretrain(config, out, resume, show_progress)
    finally:
        claim.release()


def _pretrain(config: RunConfig, out: Path, resume: bool, show_progress: bool) -> dict[str, Any]:
    # setup
    scored = dev_task_names(config)
    run = Run.setup(config, config.data.tasks, scored=scored)
    train_sets = run.load_splits("train", config.data.train_size)
    dev_sets = {name: run.load(name, "dev", config.data.eval_size) for name in scored}
    model = run.new_model()
    collate = run.collator([*train_sets.values(), *dev_sets.values()])
    acc = run.accelerator
    plan, rates = mixture_plan(train_sets, config.data, config.train, acc.process_index, acc.num_processes)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.yaml")
        acc.print(f"pretrain on {', '.join(f'{n} ({rates[n]:.0%})' for n in train_sets)}; "
                  f"{trainable_count(model):,d} trainable parameters")

    # train, keeping the best adapter on disk (the checkpoint keeps it too, and records which step it is)
    def save_best(m: Any, score: float, step: int) -> None:
        if acc.is_main_process:
            m.save_pretrained(out / "adapter")
            config.save(out / "adapter" / "run_config.yaml")

    def saved_best() -> Any:
        from dept_vl.adapter import read_adapter

        try:
            return read_adapter(out / "adapter").tensors
        except Exception:  # noqa: BLE001 - missing or damaged: rewritten from the checkpoint
            return None

    best = BestAdapter(lambda m: run.evaluate(m, dev_sets, collate)["mean_headline"], on_best=save_best, saved=saved_best)
    result = run.fit(model, TrainBatches(plan, train_sets, collate), best, checkpoint_dir=out / "checkpoints",
                     resume=resume, log_file=out / "log.jsonl", show_progress=show_progress)

    # save (before the final evaluation: an error there loses nothing); a job stopped by train.stop_at skips
    # the final evaluation: --resume finishes it
    if acc.is_main_process:
        model.save_pretrained(out / "last")
    complete = result.steps >= config.train.max_steps or result.stopped_early
    final = run.evaluate(model, dev_sets, collate) if complete else None
    summary = {
        "output_dir": str(out), "adapter": str(out / "adapter"), "method": run.method.name, "steps": result.steps,
        "complete": complete, "stopped_early": result.stopped_early, "best_score": result.best_score, "best_step": result.best_step, "final_dev": final,
        "seconds": result.seconds, "step_time_ms": result.step_time_ms, "examples_per_s": result.examples_per_s,
        "peak_memory_mb": result.peak_memory_mb, "trainable_parameters": trainable_count(model),
        "mixture_rates": rates, "processes": acc.num_processes,
    }
    if acc.is_main_process:
        write_json_atomic(out / "metrics.json", summary)
        if not complete:
            acc.print(f"stopped at step {result.steps} of {config.train.max_steps}; continue with --resume")
        elif result.best_score is not None:
            acc.print(f"best adapter (mean dev {result.best_score:.4f} at step {result.best_step}): {out / 'adapter'}")
    return summary

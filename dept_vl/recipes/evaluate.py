"""Recipe: an adapter (or the bare backbone) on one task split, writing predictions (JSONL) and metrics (JSON)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dept_vl.adapter import read_adapter
from dept_vl.config import RunConfig
from dept_vl.io import write_json_atomic
from dept_vl.methods import get_method
from dept_vl.train.outdir import claim_output_dir
from dept_vl.train.predict import write_predictions
from dept_vl.train.run import Run


def run_evaluate(config: RunConfig, adapter: str | Path | None, task: str, split: str, out: str | Path | None = None,
                 size: int | None = None, overwrite: bool = False, score: bool = True) -> dict[str, Any]:
    """Score ``adapter`` (its method is read from the folder; None: the frozen backbone alone) on ``task``'s
    ``split``, every example unless ``size`` asks for a fixed random subset; with ``out`` (checked and locked
    first: a folder holding another run is refused unless ``overwrite``), write ``predictions.jsonl`` and
    ``metrics.json`` there. ``score=False`` writes the predictions with empty metrics, to be scored elsewhere (caption
    metrics on a machine without pycocoevalcap)."""
    if size is not None and size < 1:
        raise ValueError(f"size={size}: must be >= 1 (or left out to score the whole split)")
    folder = claim_output_dir(out, overwrite=overwrite, main_process=int(os.environ.get("RANK", "0")) == 0) if out is not None else None
    saved = read_adapter(adapter) if adapter is not None else None
    if saved is not None:
        config = get_method(saved.method).for_adapter(config, saved)
    run = Run.setup(config, [task], method=saved.method if saved is not None else None, scored=None if score else [])
    examples = run.load(task, split, size)
    total = len(run.load(task, split, None)) if size is not None else len(examples)
    model = run.load_adapter(saved) if saved is not None else run.base
    collate = run.collator([examples])
    metrics, predictions = run.score(model, task, examples, collate) if score else ({}, run.predict(model, task, examples, collate))
    result = {"task": task, "split": split, "adapter": str(adapter) if adapter is not None else None,
              "method": saved.method if saved is not None else None, "examples": len(examples), "split_size": total,
              "metrics": metrics}
    if score and run.tasks[task].kind == "caption":  # which PTB tokenizer the caption scores used (a scorer may fix one)
        from dept_vl.metrics import caption_tokenizer_name

        chosen = getattr(run.tasks[task].scorer, "keywords", {}).get("tokenizer", "auto")
        result["caption_tokenizer"] = caption_tokenizer_name(chosen)
    if out is not None and run.accelerator.is_main_process:
        out = Path(out)
        write_predictions(out / "predictions.jsonl", examples, predictions)
        write_json_atomic(out / "metrics.json", result)
        scored = f"{run.tasks[task].headline_metric} {metrics['headline']:.4f} (scored" if score else "(not scored:"
        run.accelerator.print(f"{task} {split}: {scored} {len(examples)} of {total} examples) -> {out}")
    if folder is not None:
        folder.release()
    return result

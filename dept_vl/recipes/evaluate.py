"""Recipe: an adapter (or the bare backbone) on one task split, writing predictions (JSONL) and metrics (JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dept_vl.adapter import read_adapter
from dept_vl.config import RunConfig
from dept_vl.io import write_json_atomic
from dept_vl.methods import get_method
from dept_vl.train.predict import write_predictions
from dept_vl.train.run import Run


def run_evaluate(config: RunConfig, adapter: str | Path | None, task: str, split: str, out: str | Path | None = None) -> dict[str, Any]:
    """Score ``adapter`` (its method is read from the folder; None: the frozen backbone alone) on ``task``'s
    ``split``; with ``out``, write ``predictions.jsonl`` and ``metrics.json`` there."""
    saved = read_adapter(adapter) if adapter is not None else None
    if saved is not None:
        config = get_method(saved.method).for_adapter(config, saved)
    run = Run.setup(config, [task], method=saved.method if saved is not None else None)
    examples = run.load(task, split, config.data.eval_size)
    model = run.load_adapter(saved) if saved is not None else run.base
    collate = run.collator([examples])
    metrics, predictions = run.score(model, task, examples, collate)
    result = {"task": task, "split": split, "adapter": str(adapter) if adapter is not None else None,
              "method": saved.method if saved is not None else None, "examples": len(examples), "metrics": metrics}
    if run.tasks[task].kind == "caption":  # which PTB tokenizer the caption scores used (a scorer may fix one)
        from dept_vl.metrics import caption_tokenizer_name

        chosen = getattr(run.tasks[task].scorer, "keywords", {}).get("tokenizer", "auto")
        result["caption_tokenizer"] = caption_tokenizer_name(chosen)
    if out is not None and run.accelerator.is_main_process:
        out = Path(out)
        write_predictions(out / "predictions.jsonl", examples, predictions)
        write_json_atomic(out / "metrics.json", result)
        run.accelerator.print(f"{task} {split}: {run.tasks[task].headline_metric} {metrics['headline']:.4f} "
                              f"({len(examples)} examples) -> {out}")
    return result

"""Recipe: an adapter on one task split, writing predictions (JSONL) and metrics (JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dept_vl.config import RunConfig
from dept_vl.io import write_json_atomic
from dept_vl.train import components as C
from dept_vl.train.loop import make_accelerator
from dept_vl.train.predict import predict, write_predictions


def load_adapter_model(adapter: str | Path, base: Any) -> Any:
    """Any saved adapter (DePT, prompt tuning, LoRA, full) on ``base``, frozen for inference."""
    from dept_vl.dept.model import DePTModel, check_base_model, read_adapter
    from dept_vl.train.methods import FullFineTuneModel, LoRAModel

    meta, state = read_adapter(adapter)
    method = meta.get("method", "dept")
    if method == "dept":
        return DePTModel.from_pretrained(base, adapter)
    check_base_model(meta.get("base_model", {}), base, adapter)
    from dept_vl.config import FullConfig, LoRAConfig

    model = LoRAModel(base, LoRAConfig(**meta["lora"])) if method == "lora" else FullFineTuneModel(base, FullConfig(**meta["full"]))
    model.load_adapter_state(state)
    return model.eval()


def run_evaluate(config: RunConfig, adapter: str | Path, task_name: str, split: str, out: str | Path) -> dict[str, Any]:
    """Evaluate ``adapter`` on ``task_name``'s ``split``; writes ``predictions.jsonl`` and ``metrics.json`` into ``out``."""
    out = Path(out)
    accelerator = make_accelerator()
    task = C.load_tasks([task_name])[task_name]
    examples = C.load_split(task, split, config.data, config.data.eval_size)
    base = C.load_base_model(config.model, accelerator.device, "dept", config.train.seed)
    model = load_adapter_model(adapter, base)
    features = C.Features.compute(base, [examples]) if (config.data.feature_cache and task.has_images) else None
    collate = C.make_collator(base, config.data, getattr(model, "dept_config", config.dept).max_length, features)
    predictions = predict(model, examples, collate, base.tokenizer, config.eval, accelerator, C.generation_length(task, config))
    metrics = task.evaluate(predictions, examples)
    result = {"task": task_name, "split": split, "adapter": str(adapter), "examples": len(examples), "metrics": metrics}
    if accelerator.is_main_process:
        write_predictions(out / "predictions.jsonl", examples, predictions)
        write_json_atomic(out / "metrics.json", result)
        accelerator.print(f"{task_name} {split}: {task.headline_metric} {metrics['headline']:.4f} ({len(examples)} examples) -> {out}")
    return result

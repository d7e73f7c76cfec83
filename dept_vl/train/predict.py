"""Generation over a split, sharded over processes and gathered so that every example counts exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from dept_vl.config import EvalConfig
from dept_vl.data.batching import Collator
from dept_vl.data.example import Example
from dept_vl.io import write_text_atomic


@torch.no_grad()
def predict(
    model: Any, examples: Sequence[Example], collate: Collator, tokenizer: Any, cfg: EvalConfig,
    accelerator: Any = None, max_new_tokens: int | None = None,
) -> list[str]:
    """Generated text for every example, in order. The examples are sorted by length (little padding) and
    cut into batches of ``cfg.batch_size``; process ``rank`` generates batches ``rank, rank + world, ...``.
    Every batch is the one a single process would run, so the numbers do not depend on the process count.
    The results are gathered and put back in the examples' order."""
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_text))
    batches = [order[start : start + cfg.batch_size] for start in range(0, len(order), cfg.batch_size)]
    was_training = model.training
    model.eval()
    pairs: list[tuple[int, str]] = []
    for indices in batches[rank::world]:
        batch = collate([examples[i] for i in indices], with_labels=False)
        batch = {k: v.to(device) for k, v in batch.items()}
        output = model.generate(
            **batch, max_new_tokens=max_new_tokens or cfg.max_new_tokens, num_beams=cfg.num_beams,
            length_penalty=cfg.length_penalty, do_sample=False,
        )
        texts = tokenizer.batch_decode(output, skip_special_tokens=True)
        pairs += list(zip(indices, (t.strip() for t in texts)))
    model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        pairs = gather_object(pairs)
    ordered = dict(pairs)
    if len(ordered) != len(examples):
        raise RuntimeError(f"gathered {len(ordered)} predictions for {len(examples)} examples")
    return [ordered[i] for i in range(len(examples))]


def write_predictions(path: str | Path, examples: Sequence[Example], predictions: Sequence[str]) -> None:
    """One JSON line per example: id, input, prediction, reference (all references when several)."""
    lines = []
    for example, prediction in zip(examples, predictions):
        refs = example.all_references()
        lines.append(json.dumps({
            "id": example.id, "input": example.input_text, "prediction": prediction,
            "reference": refs[0] if len(refs) == 1 else refs, "image_id": example.image_id,
        }))
    write_text_atomic(path, "\n".join(lines) + "\n")

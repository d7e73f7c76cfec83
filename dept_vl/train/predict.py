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
from dept_vl.train.decoding import beam_decoding


def generation_options(cfg: EvalConfig, max_new_tokens: int | None = None) -> dict[str, Any]:
    """The ``generate`` options of every evaluation: deterministic (greedy or beam search), ``cfg``'s beams, length
    penalty and decoder cache (``eval.cache=static`` or ``compiled``: a preallocated cache; with ``compiled`` and
    beams, :func:`~dept_vl.train.decoding.beam_decoding` compiles the model, so transformers' own compilation is off; greedy decoding
    keeps transformers' compiled static-cache step, which it runs on a GPU)."""
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens or cfg.max_new_tokens, "num_beams": cfg.num_beams,
                               "length_penalty": cfg.length_penalty, "do_sample": False}
    if cfg.cache in ("static", "compiled"):
        options["cache_implementation"] = "static"
    if cfg.cache == "compiled" and cfg.num_beams > 1:
        options["disable_compile"] = True  # greedy: transformers' own compiled step (CUDA graphs) is the faster one
    return options


def length_batches(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    """Indices of ``examples`` sorted by input length, cut into batches of ``batch_size`` (little padding)."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_text))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


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
    batches = length_batches(examples, cfg.batch_size)
    was_training = model.training
    model.eval()
    pairs: list[tuple[int, str]] = []
    with beam_decoding(model, cfg):
        for indices in batches[rank::world]:
            batch = collate([examples[i] for i in indices], with_labels=False)
            batch = {k: v.to(device) for k, v in batch.items()}
            output = model.generate(**batch, **generation_options(cfg, max_new_tokens))
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


@torch.no_grad()
def predict_packed(
    models: Sequence[Any], example_sets: Sequence[Sequence[Example]], collate: Collator, tokenizer: Any, cfg: EvalConfig,
    accelerator: Any = None, max_new_tokens: int | None = None, max_rows: int | None = None,
) -> list[list[str]]:
    """:func:`predict` for several DePT-family models on one base at once: ``models[i]`` on
    ``example_sets[i]``. Each run's batches are exactly those :func:`predict` makes for it alone (sorted by
    length, ``cfg.batch_size`` each); the ``j``-th batches of the runs are generated together
    (:func:`dept_vl.dept.multi.packed_generate`), at most ``max_rows`` (default ``cfg.pack_rows``) rows a call,
    so every prediction is the one the run would get alone. Returns each run's predictions in its examples' order."""
    from dept_vl.dept.multi import packed_generate

    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    device = accelerator.device if accelerator is not None else next(models[0].parameters()).device
    max_rows = max_rows or cfg.pack_rows
    per_run = [length_batches(examples, cfg.batch_size) for examples in example_sets]
    calls: list[list[tuple[int, list[int]]]] = []
    for j in range(max((len(b) for b in per_run), default=0)):
        current: list[tuple[int, list[int]]] = []
        for run, batches in enumerate(per_run):
            if j < len(batches):
                if current and sum(len(i) for _, i in current) + len(batches[j]) > max_rows:
                    calls.append(current)
                    current = []
                current.append((run, batches[j]))
        calls.append(current)
    modes = [m.training for m in models]
    for model in models:
        model.eval()
    found: list[tuple[int, int, str]] = []
    with beam_decoding(models[0], cfg):  # the pack's one base
        for call in calls[rank::world]:
            groups = [(models[run], {k: v.to(device) for k, v in collate([example_sets[run][i] for i in indices], with_labels=False).items()})
                      for run, indices in call]
            outputs = packed_generate(groups, **generation_options(cfg, max_new_tokens))
            for (run, indices), output in zip(call, outputs):
                texts = tokenizer.batch_decode(output, skip_special_tokens=True)
                found += [(run, i, t.strip()) for i, t in zip(indices, texts)]
    for model, mode in zip(models, modes):
        model.train(mode)
    if world > 1:
        from accelerate.utils import gather_object

        found = gather_object(found)
    by_key = {(run, i): text for run, i, text in found}
    if len(by_key) != sum(len(e) for e in example_sets):
        raise RuntimeError(f"gathered {len(by_key)} predictions for {sum(len(e) for e in example_sets)} examples")
    return [[by_key[(run, i)] for i in range(len(examples))] for run, examples in enumerate(example_sets)]


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

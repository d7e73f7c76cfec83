"""Generation over a split, sharded over processes and gathered so that every example counts exactly once."""

from __future__ import annotations

import contextlib
import json
import types
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from dept_vl.config import EvalConfig
from dept_vl.data.batching import Collator
from dept_vl.data.example import Example
from dept_vl.io import write_text_atomic


def generation_options(cfg: EvalConfig, max_new_tokens: int | None = None) -> dict[str, Any]:
    """The ``generate`` options of every evaluation: deterministic (greedy or beam search), ``cfg``'s beams, length
    penalty and decoder cache (``eval.cache=static`` or ``compiled``: a preallocated cache; with ``compiled`` and
    beams, :func:`compiled_decoding` compiles the model, so transformers' own compilation is off; greedy decoding
    keeps transformers' compiled static-cache step, which it runs on a GPU)."""
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens or cfg.max_new_tokens, "num_beams": cfg.num_beams,
                               "length_penalty": cfg.length_penalty, "do_sample": False}
    if cfg.cache in ("static", "compiled"):
        options["cache_implementation"] = "static"
    if cfg.cache == "compiled" and cfg.num_beams > 1:
        options["disable_compile"] = True  # greedy: transformers' own compiled step (CUDA graphs) is the faster one
    return options


# how eval.cache=compiled compiles the decoding model's beam-search steps (tests put a plain backend here: no code
# generation on a CPU); no CUDA graphs: with "reduce-overhead", 5-beam generation crashed on torch 2.11 (benchmarks/)
DECODING_COMPILE: dict[str, Any] = {"backend": "inductor"}


def decoding_model(model: Any) -> Any:
    """The transformers model whose ``generate`` does the decoding inside ``model`` (a DePT-family model's base, the
    VL model's text model, or ``model`` itself), or None."""
    from transformers import PreTrainedModel

    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)


@contextlib.contextmanager
def compiled_decoding(model: Any, cfg: EvalConfig) -> Iterator[None]:
    """With ``eval.cache=compiled`` and beam search, the decoding model's steps compiled for the ``generate`` calls
    inside, and restored afterwards, so training never runs them; otherwise nothing (greedy decoding: transformers
    compiles its static-cache step itself). Each call's first step runs eager: it allocates the static cache (whose
    tensors are then marked as fixed addresses, which tracing cannot do) and fills the cross-attention cache; the
    later steps, all of one shape, run compiled. Beam search's reorder of the cache is done in place
    (:func:`reorder_in_place`), so the cache keeps its addresses from step to step.

    Raises:
        ValueError: ``model`` holds no transformers model to compile."""
    if cfg.cache != "compiled" or cfg.num_beams == 1:
        yield
        return
    target = decoding_model(model)
    if target is None:
        raise ValueError(f"eval.cache=compiled: {type(model).__name__} holds no transformers model to compile; use eval.cache=static")
    options = dict(DECODING_COMPILE)
    if options.get("backend") == "inductor":
        from dept_vl.train.compiling import use_compile_cache

        use_compile_cache()
    compiled = getattr(target, "_dept_vl_decoding", None)
    if compiled is None or compiled[0] != options:  # one compiled callable a model and setting: its graphs are kept
        compiled = (options, torch.compile(target._call_impl, dynamic=None, **options))
        target._dept_vl_decoding = compiled
    eager, steady = target._call_impl, compiled[1]

    def step(*args: Any, **kwargs: Any) -> Any:
        cache = next((kwargs[k] for k in ("past_key_values", "cache") if kwargs.get(k) is not None), None)  # by version
        if filled_static_cache(cache):
            return steady(*args, **kwargs)
        if cache is not None and "reorder_cache" not in vars(cache):
            cache.reorder_cache = types.MethodType(reorder_in_place, cache)
        return eager(*args, **kwargs)

    previous = target._compiled_call_impl
    target._compiled_call_impl = step
    try:
        yield
    finally:
        target._compiled_call_impl = previous


def filled_static_cache(cache: Any) -> bool:
    """Whether ``cache`` is an encoder-decoder cache whose decoder part is static and allocated (a step after the
    first)."""
    from transformers.cache_utils import StaticLayer

    layers = getattr(getattr(cache, "self_attention_cache", None), "layers", None)
    return bool(layers) and all(isinstance(layer, StaticLayer) and layer.is_initialized for layer in layers)


def reorder_in_place(cache: Any, beam_idx: torch.Tensor) -> None:
    """Beam search's reorder of an encoder-decoder cache (bound to the cache as its ``reorder_cache``): a static
    decoder cache is reordered in place, so its tensors keep the addresses a compiled step was built on (transformers
    gives each layer new tensors); the cross-attention cache is left as it is: beam search moves beams only within
    an example, whose beams all hold the same encoder states, so reordering it would copy each row onto an equal
    row. Any other cache is reordered as transformers does."""
    if not filled_static_cache(cache):
        type(cache).reorder_cache(cache, beam_idx)
        return
    for layer in cache.self_attention_cache.layers:
        index = beam_idx.to(layer.keys.device)
        layer.keys.copy_(layer.keys.index_select(0, index))
        layer.values.copy_(layer.values.index_select(0, index))


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
    with compiled_decoding(model, cfg):
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
    with compiled_decoding(models[0], cfg):  # the pack's one base
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

"""Beam search's decoding steps, set up for an evaluation's ``generate`` calls: the first step run once an example
(with the default dynamic cache), the decoder's cache reordered without the cross-attention cache (and in place when
static), and with ``eval.cache=compiled`` the steps compiled."""

from __future__ import annotations

import contextlib
import types
from typing import Any, Iterator

import torch

from dept_vl.config import EvalConfig

# how eval.cache=compiled compiles the decoding model's beam-search steps (tests put a plain backend here: no code
# generation on a CPU); no CUDA graphs: with "reduce-overhead", 5-beam generation crashed on torch 2.11 (benchmarks/)
DECODING_COMPILE: dict[str, Any] = {"backend": "inductor"}
CACHE_ARGUMENTS = ("past_key_values", "cache")  # the decoder cache's keyword in generate's model calls, by version


def decoding_model(model: Any) -> Any:
    """The transformers model whose ``generate`` does the decoding inside ``model`` (a DePT-family model's base, the
    VL model's text model, or ``model`` itself), or None."""
    from transformers import PreTrainedModel

    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)


@contextlib.contextmanager
def beam_decoding(model: Any, cfg: EvalConfig) -> Iterator[None]:
    """For beam search (``cfg.num_beams > 1``), the decoding model's calls inside routed through a step that runs the
    first step of each ``generate`` call once an example (:func:`first_step_once`, dynamic cache) and gives its
    encoder-decoder cache the reorder of :func:`reorder_decoder_cache` (the same tokens, less computing and copying);
    with ``eval.cache=compiled`` the steps after each call's first run compiled (the first allocates the
    static cache, whose tensors are then marked as fixed addresses, which tracing cannot do, and fills the
    cross-attention cache; the later steps all have one shape). The model's own call is restored afterwards, so
    training never meets either. Greedy decoding: nothing (transformers compiles its static-cache step itself).

    Raises:
        ValueError: ``eval.cache=compiled`` and ``model`` holds no transformers model."""
    if cfg.num_beams == 1:
        yield
        return
    target = decoding_model(model)
    if target is None and cfg.cache == "compiled":
        raise ValueError(f"eval.cache=compiled: {type(model).__name__} holds no transformers model to compile; "
                         f"use eval.cache=static")
    if target is None:  # not a transformers model: its own generate, untouched
        yield
        return
    steady = compiled_steps(target) if cfg.cache == "compiled" else None
    eager = target._call_impl

    def step(*args: Any, **kwargs: Any) -> Any:
        key = next((k for k in CACHE_ARGUMENTS if kwargs.get(k) is not None), None)
        cache = kwargs[key] if key else None
        if steady is not None and filled_static_cache(cache):
            return steady(*args, **kwargs)
        fresh = hasattr(cache, "cross_attention_cache") and "reorder_cache" not in vars(cache)  # a call's first step
        if fresh and not args and empty_dynamic_cache(cache) and beam_rows(kwargs, cfg.num_beams):
            return first_step_once(eager, kwargs, key, cfg.num_beams)
        if fresh:
            cache.reorder_cache = types.MethodType(reorder_decoder_cache, cache)
        return eager(*args, **kwargs)

    previous = target._compiled_call_impl
    target._compiled_call_impl = step
    try:
        yield
    finally:
        target._compiled_call_impl = previous


def compiled_steps(target: Any) -> Any:
    """``target``'s call compiled with :data:`DECODING_COMPILE`, kept on the model (one per setting: its graphs are
    reused by every evaluation)."""
    options = dict(DECODING_COMPILE)
    if options.get("backend") == "inductor":
        from dept_vl.train.compiling import use_compile_cache

        use_compile_cache()
    compiled = getattr(target, "_dept_vl_decoding", None)
    if compiled is None or compiled[0] != options:
        compiled = (options, torch.compile(target._call_impl, dynamic=None, **options))
        target._dept_vl_decoding = compiled
    return compiled[1]


def filled_static_cache(cache: Any) -> bool:
    """Whether ``cache`` is an encoder-decoder cache whose decoder part is static and allocated (a step after the
    first)."""
    from transformers.cache_utils import StaticLayer

    layers = getattr(getattr(cache, "self_attention_cache", None), "layers", None)
    return bool(layers) and all(isinstance(layer, StaticLayer) and layer.is_initialized for layer in layers)


def empty_dynamic_cache(cache: Any) -> bool:
    """Whether ``cache`` is an encoder-decoder cache of transformers' dynamic layers holding nothing yet (the first
    step of a ``generate`` call with the default cache)."""
    from transformers.cache_utils import DynamicLayer

    parts = [getattr(cache, name, None) for name in ("self_attention_cache", "cross_attention_cache")]
    if any(part is None for part in parts):
        return False
    layers = [layer for part in parts for layer in part.layers]
    return all(type(layer) is DynamicLayer for layer in layers) and cache.get_seq_length() == 0


def beam_rows(kwargs: dict[str, Any], beams: int) -> int:
    """The rows of a step's decoder input when they come as examples x ``beams`` rows with the encoder's states
    (beam search's layout), else 0."""
    ids, encoded = kwargs.get("decoder_input_ids"), kwargs.get("encoder_outputs")
    states = getattr(encoded, "last_hidden_state", None)
    if not isinstance(ids, torch.Tensor) or not isinstance(states, torch.Tensor):
        return 0
    rows = int(ids.shape[0])
    return rows if rows % beams == 0 and int(states.shape[0]) == rows else 0


def first_step_once(call: Any, kwargs: dict[str, Any], key: str, beams: int) -> Any:
    """Beam search's first step, run on one row an example. At the first step every beam of an example has the same
    input (the start token, the example's encoder states and mask), so the step runs on every ``beams``-th row and its
    outputs and cache are repeated for the beams: the cross-attention's keys and values (every decoder layer's
    projection of the encoder states) are computed once an example instead of once a beam. The returned cache (which
    generate keeps for the next steps) has :func:`reorder_decoder_cache` bound."""
    from transformers.cache_utils import DynamicCache

    rows = int(kwargs["decoder_input_ids"].shape[0])
    one = {name: _every(value, rows, beams) for name, value in kwargs.items()}
    cache = type(kwargs[key])(DynamicCache(), DynamicCache())
    one[key] = cache
    output = call(**one)
    for part in (cache.self_attention_cache, cache.cross_attention_cache):
        for layer in part.layers:
            layer.keys = layer.keys.repeat_interleave(beams, dim=0)
            layer.values = layer.values.repeat_interleave(beams, dim=0)
    for name in list(output.keys()):
        output[name] = cache if name == key else _repeated(output[name], rows // beams, beams)
    cache.reorder_cache = types.MethodType(reorder_decoder_cache, cache)
    return output


def _every(value: Any, rows: int, beams: int) -> Any:
    """``value`` cut to every ``beams``-th row where it has ``rows`` rows (tensors, and model outputs of tensors)."""
    if isinstance(value, torch.Tensor):
        return value[::beams] if value.dim() and int(value.shape[0]) == rows else value
    if hasattr(value, "keys") and hasattr(value, "to_tuple"):  # a transformers ModelOutput (the encoder's)
        return type(value)(**{name: _every(value[name], rows, beams) for name in value.keys()})
    if isinstance(value, tuple):
        return tuple(_every(item, rows, beams) for item in value)
    return value


def _repeated(value: Any, rows: int, beams: int) -> Any:
    """``value`` with each of its ``rows`` rows repeated ``beams`` times (tensors, and tuples of them)."""
    if isinstance(value, torch.Tensor):
        return value.repeat_interleave(beams, dim=0) if value.dim() and int(value.shape[0]) == rows else value
    if isinstance(value, tuple):
        return tuple(_repeated(item, rows, beams) for item in value)
    return value


def reorder_decoder_cache(cache: Any, beam_idx: torch.Tensor) -> None:
    """Beam search's reorder of an encoder-decoder cache (bound to the cache as its ``reorder_cache``). The decoder's
    own cache is reordered as transformers does, but in place when static, so its tensors keep the addresses a
    compiled step was built on (transformers gives each layer new tensors). The cross-attention cache is left as it
    is: beam search moves beams only within an example, whose beams all hold the same encoder states, so reordering
    it would copy each row onto an equal row (on a CPU that copy was half of 5-beam generation's time)."""
    if not filled_static_cache(cache):
        cache.self_attention_cache.reorder_cache(beam_idx)
        return
    for layer in cache.self_attention_cache.layers:
        index = beam_idx.to(layer.keys.device)
        layer.keys.copy_(layer.keys.index_select(0, index))
        layer.values.copy_(layer.values.index_select(0, index))

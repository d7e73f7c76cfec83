"""Compiling the training step: one ``torch.compile`` of the loss for every width, batch size and number of visual
tokens a run sees (:func:`compile_loss`) or each transformer block once (:func:`compile_blocks`), the compiler's
caches in dept-vl's cache folder (:func:`use_compile_cache`), and ``train.compile=auto``'s decision from the
measured compile cost and step saving (:func:`compile_choice`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dept_vl.train.fastpath import training_loss

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DYNAMIC_KEYS = ("input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask")
# the image inputs: their rows vary with the batch, image_features' tokens (dim 1) with the encoder and pooling
IMAGE_KEYS = ("image_features", "pixel_values", "image_mask")


def use_compile_cache() -> Path:
    """Keep the compiler's caches (inductor's FX graph and kernel caches, Triton's kernels) in dept-vl's cache
    folder, ``compile/`` (:func:`dept_vl.io.cache_dir`), so a second run of the same shapes (every run of a sweep,
    a resumed run) starts warm; a folder the user set (``TORCHINDUCTOR_CACHE_DIR``, ``TRITON_CACHE_DIR``) is kept.
    Importing ``torch._dynamo`` (as transformers does) writes torch's own default into ``TORCHINDUCTOR_CACHE_DIR``:
    that value counts as unset."""
    from dept_vl.io import cache_dir

    root = cache_dir("compile")
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen is None or os.path.abspath(chosen) == torch_default_cache_dir():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
    os.environ.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def torch_default_cache_dir() -> str | None:
    """The folder inductor caches in when nobody chose one (None where this torch does not say)."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        return None
    return os.path.abspath(default_cache_dir())


def use_dynamic_shape_settings() -> None:
    """Compiler settings for graphs with dynamic widths. Inductor's memory-coalescing tiling analysis off: with a
    DePT prompt concatenated to a dynamic width (rows x (width + m) elements), torch 2.11's analysis fails an
    assertion while generating the GPU kernels (``get_pw_red_splits`` in ``tiling_utils``); it only picks a tiling,
    so the kernels compute the same thing without it. Python floats (dropout rates, norm epsilons) specialised as
    constants: traced as symbols, each graph was traced twice (dynamo restarts its analysis to specialise them),
    which doubled the warm start's tracing (on the CPU, 9.9 s -> 4.5 s in the first step of a warm run)."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    triton = inductor_config.triton
    if hasattr(triton, "coalesce_tiling_analysis"):
        triton.coalesce_tiling_analysis = False
    if hasattr(dynamo_config, "specialize_float"):
        dynamo_config.specialize_float = True


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of ``model``, in order: the elements of each ``nn.ModuleList`` whose elements are all of
    one class (T5's ``block``, BART's ``layers``), outside any block already found."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix, _ in found):
            continue
        if isinstance(module, nn.ModuleList) and len(module) > 1 and len({type(m) for m in module}) == 1:
            found += [(f"{name}.{i}", m) for i, m in enumerate(module)]
    return [m for _, m in found]


def compile_blocks(model: nn.Module, *, backend: str = "inductor", fullgraph: bool = False) -> int:
    """Regional compilation: compile each transformer block of ``model`` in place (through ``nn.Module.compile``'s
    hook), all of its dimensions dynamic, for training: a block in eval mode (evaluation's generation, with its
    decoder cache) runs eager. The blocks of one class share one code object, so the compiler traces a block once
    and reuses it for every layer (a second graph where a layer's guards differ, as T5's first block, which holds
    the position bias); the code around the blocks (embeddings, the loss) stays eager. No CUDA graphs: a block runs
    many times a step. Returns the number of blocks compiled.

    Raises:
        ValueError: ``model`` has no repeated blocks."""
    blocks = repeated_blocks(model)
    if not blocks:
        raise ValueError(f"train.compile_scope=blocks: {type(model).__name__} has no repeated blocks (an nn.ModuleList of "
                         f"one module class) to compile; use train.compile_scope=model")
    options: dict[str, Any] = {"backend": backend, "fullgraph": fullgraph, "dynamic": True}
    use_dynamic_shape_settings()
    if backend == "inductor":
        use_compile_cache()
    for block in blocks:
        _compile_for_training(block, torch.compile(block._call_impl, **options))
    return len(blocks)


def _compile_for_training(block: nn.Module, compiled: Callable[..., Any]) -> None:
    """Route ``block``'s calls in training mode to ``compiled`` (``nn.Module.compile``'s own hook), eval mode eager."""
    eager = block._call_impl

    def call(*args: Any, **kwargs: Any) -> Any:
        return compiled(*args, **kwargs) if block.training else eager(*args, **kwargs)

    block._compiled_call_impl = call


def compile_loss(
    model: nn.Module,
    *,
    enabled: bool = True,
    mode: str = "reduce-overhead",
    dynamic: bool = True,
    backend: str = "inductor",
    fullgraph: bool = False,
    scope: str = "model",
) -> Callable[..., torch.Tensor]:
    """``loss_fn(**batch) -> loss``: the model's loss, compiled (or plain with ``enabled=False``).

    Only the scalar loss leaves the compiled region (no logits), so the compiler fuses the cross-entropy
    and keeps the graph's memory small; the model is called with ``use_cache=False`` (a training step
    needs no decoder cache). With ``dynamic=True`` the rows (dim 0) of every input and the width (dim 1) of
    ``input_ids``, ``attention_mask``, ``labels`` and ``image_features`` (its visual tokens) are marked dynamic
    before the first call: one compilation serves every length bucket, batch size and number of visual tokens,
    and with ``mode="reduce-overhead"`` one CUDA graph is recorded per shape on its first steps.

    Args:
        model: any module whose output has ``.loss`` (DePTModel, a peft model, a plain HF model).
        enabled: ``False`` returns the eager function (the loop's ``compile=false`` switch).
        mode: a ``torch.compile`` mode: ``"reduce-overhead"`` (CUDA graphs), ``"default"``,
            ``"max-autotune-no-cudagraphs"`` (use this one with gradient accumulation), ``"max-autotune"``.
        dynamic: mark sequence widths dynamic (one compilation for every bucket); ``False`` compiles one
            static graph per width (slower to warm up; lets SDPA pick fused kernels it cannot prove
            aligned for a symbolic length).
        backend: ``"inductor"``, or ``"aot_eager"`` / ``"eager"`` to debug tracing on CPU (mode ignored).
        fullgraph: fail on a graph break instead of splitting the graph.
        scope: ``"model"`` (the loss, one graph) or ``"blocks"`` (:func:`compile_blocks`: each transformer block,
            the rest eager; ``mode`` and ``dynamic`` do not apply).
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"mode={mode!r} is unknown; choose one of {', '.join(COMPILE_MODES)}")
    if scope not in ("model", "blocks"):
        raise ValueError(f"scope={scope!r} is unknown; choose model or blocks")
    loss_fn = training_loss(model)
    if not enabled:
        return loss_fn
    if scope == "blocks":
        compile_blocks(model, backend=backend, fullgraph=fullgraph)
        return loss_fn
    # dynamic=False: one static graph per bucket width (torch.compile's own limit is 8 recompilations)
    options: dict[str, Any] = {"backend": backend, "fullgraph": fullgraph, "dynamic": None if dynamic else False}
    if backend == "inductor":
        options["mode"] = mode
        use_compile_cache()
    if dynamic:
        use_dynamic_shape_settings()
    compiled = torch.compile(loss_fn, **options)
    uses_graphs = backend == "inductor" and mode in ("reduce-overhead", "max-autotune")

    def run(**batch: Any) -> torch.Tensor:
        if dynamic:  # every dimension that varies marked up front: one compilation, no recompiles later
            for key in (*DYNAMIC_KEYS, *IMAGE_KEYS):
                tensor = batch.get(key)
                if isinstance(tensor, torch.Tensor) and tensor.dim() >= 1:
                    torch._dynamo.maybe_mark_dynamic(tensor, 0)  # rows: a last or smaller batch
                    if tensor.dim() >= 2 and key != "pixel_values":  # widths; visual tokens (pixels: fixed size)
                        torch._dynamo.maybe_mark_dynamic(tensor, 1)
        if uses_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return compiled(**batch)

    return run


# train.compile=auto's estimate, from figures measured at T5-base (24 blocks) on one GPU (benchmarks/README.md): an
# eager step takes about 100 ms. The whole loss compiled (compile_scope=model, CUDA graphs): about 250 s of cold
# compile before the first fast step (H200), then 12 ms a step. Each block compiled once (compile_scope=blocks, no
# CUDA graphs): the first step 60 s after the command (H100), about 50 s more than an eager run's, then 20 ms a step
# in `dept-vl pretrain` and 54-80 ms in the step benchmark at every length; the estimate takes the slower 60 ms.
# Eager and compiled steps are bound by the host's work per block, and the whole model's compile traces every
# block, so those scale with the model's number of blocks; blocks' compile traces four block variants whatever the
# depth. At T5-base the least expected time is eager up to about 1,250 steps, blocks up to about 4,200, then model.
REFERENCE_BLOCKS = 24
EAGER_STEP_S = 0.100
COMPILE_ESTIMATES: dict[str, tuple[float, float]] = {"blocks": (50.0, 0.060), "model": (250.0, 0.012)}  # (cost s, step s)


def expected_seconds(scope: str, steps: int, blocks: int = REFERENCE_BLOCKS) -> float:
    """The estimated training time of ``steps`` steps of a model of ``blocks`` transformer blocks: eager
    (``scope="eager"``) or compiled with ``scope``."""
    depth = blocks / REFERENCE_BLOCKS
    if scope == "eager":
        return steps * EAGER_STEP_S * depth
    cost, step = COMPILE_ESTIMATES[scope]
    return cost * (depth if scope == "model" else 1.0) + steps * step * depth


def compile_choice(cfg: Any, device: torch.device, num_processes: int, blocks: int = REFERENCE_BLOCKS) -> tuple[bool, str, str]:
    """``train.compile`` and ``train.compile_scope`` resolved for a model of ``blocks`` transformer blocks: whether
    to compile, the scope, and why (what ``auto`` estimated), in words for the log. ``auto`` picks, of eager and the
    compiled scopes allowed, the one of least expected time for ``train.max_steps`` (:func:`expected_seconds`);
    ``compile_scope=auto`` picks the scope (with several processes: model, the path the gradient sync is built
    for)."""
    if cfg.compile not in ("auto", "on", "off"):
        raise ValueError(f"train.compile={cfg.compile!r}; choose auto, on or off")
    scopes = [cfg.compile_scope] if cfg.compile_scope != "auto" else list(COMPILE_ESTIMATES) if num_processes == 1 else ["model"]
    if cfg.compile == "off":
        return False, scopes[0], "train.compile=off"
    steps = cfg.max_steps
    best_scope = min(scopes, key=lambda scope: expected_seconds(scope, steps, blocks))
    if cfg.compile == "on":
        return True, best_scope, f"train.compile=on, compile_scope={best_scope}"
    if device.type != "cuda":
        return False, best_scope, "train.compile=auto: eager (compiling pays on a GPU only)"
    if num_processes != 1:
        return False, best_scope, f"train.compile=auto: eager ({num_processes} processes: the compiled step is tuned for one GPU)"
    choices = ["eager", *scopes]
    chosen = min(choices, key=lambda choice: expected_seconds(choice, steps, blocks))
    estimates = ", ".join(f"{choice} {expected_seconds(choice, steps, blocks):,.0f} s" for choice in choices)
    verdict = "eager" if chosen == "eager" else f"compiled, compile_scope={chosen}"
    return chosen != "eager", best_scope if chosen == "eager" else chosen, (
        f"train.compile=auto: {verdict} (estimated time of {steps:,d} steps of a {blocks}-block model on one GPU, "
        f"from figures measured at T5-base: {estimates}; set train.compile=on or off, train.compile_scope=model or "
        f"blocks, to choose)")


def use_compile(cfg: Any, device: torch.device, num_processes: int) -> bool:
    """``train.compile``: ``on``, ``off``, or ``auto`` (:func:`compile_choice`: on for single-GPU runs long enough to
    repay the compile)."""
    return compile_choice(cfg, device, num_processes)[0]

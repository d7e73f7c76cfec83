"""The fast training path: a frozen base in bf16, compiled loss over a few length buckets, fused AdamW, no host syncs.

The training loop (``dept_vl.train.loop``) runs exactly these helpers, and the benchmark's default rows time them::

    set_attention(model, resolve_attention("auto", model, device))       # T5 on GPU: a fused biased kernel
    optimizer = make_optimizer(model.param_groups())                     # fused AdamW on CUDA
    loss_fn = compile_loss(model, enabled=use_compile(cfg, device, 1))   # dept_vl.train.compiling
    for batch in batches:                                                # padded to the batch's longest row
        batch = prepare_batch(batch, device, bucket=64 if compiled else None, max_length=s)
        losses = train_step(loss_fn, optimizer, [batch], scheduler, cfg.max_grad_norm, accelerator=accelerator)
        # no .item(): nothing waits for the GPU; the loop reads the losses only when it logs

The frozen base runs in bf16 on a GPU (``model.dtype=auto``; :func:`prepare_fast_model` casts an existing
model the same way) while the adapter's own parameters stay float32.

Everything here keeps the training numerics of eager bf16 (same function, same dropout distribution);
``attention="biased_sdpa"`` changes only the attention kernel, and ``attention_dropout=False`` (which
does change training) is an explicit opt-in.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_CHOICES = ("keep", "eager", "sdpa", "biased_sdpa", "biased_cudnn")
BIASED_MODEL_TYPES = ("t5", "mt5")  # models whose attention carries an additive relative-position bias
BIASED_SDPA = "dept_biased_sdpa"  # the names registered with transformers' attention interface
BIASED_CUDNN = "dept_biased_cudnn"
PAD_VALUES = {"input_ids": 0, "attention_mask": 0, "labels": -100, "decoder_attention_mask": 0}


# ------------------------------------------------------------------ buckets
def bucket_length(length: int, buckets: int | Sequence[int] = 64, max_length: int | None = None) -> int:
    """The padded length for a batch whose longest row has ``length`` tokens.

    Args:
        length: the batch's longest row.
        buckets: an int ``k`` (round up to a multiple of ``k``) or a sorted list of allowed lengths.
        max_length: the cap (DePT's ``s``); a bucket above it is cut down to it.

    Raises:
        ValueError: ``length`` exceeds ``max_length`` or the largest bucket.
    """
    if length < 1:
        raise ValueError(f"length={length} must be >= 1")
    if max_length is not None and length > max_length:
        raise ValueError(f"input length {length} exceeds max_length {max_length}; truncate inputs to {max_length} tokens")
    if isinstance(buckets, int):
        if buckets < 1:
            raise ValueError(f"buckets={buckets} must be >= 1 (a multiple) or a list of lengths")
        padded = math.ceil(length / buckets) * buckets
    else:
        sizes = sorted(int(b) for b in buckets)
        fitting = [b for b in sizes if b >= length]
        if not fitting:
            raise ValueError(f"input length {length} exceeds the largest bucket {sizes[-1] if sizes else None}; add a larger bucket")
        padded = fitting[0]
    return min(padded, max_length) if max_length is not None else padded


def pad_to_bucket(
    batch: Mapping[str, Any],
    buckets: int | Sequence[int] = 64,
    max_length: int | None = None,
    keys: Sequence[str] = ("input_ids", "attention_mask"),
    pad_values: Mapping[str, int] = PAD_VALUES,
) -> dict[str, Any]:
    """Right-pad ``keys`` of a (right-padded) batch along dim 1 to ``bucket_length`` of their width.

    Right padding leaves DePT's outputs unchanged at every real token (row i of A @ B meets position i;
    T5's relative bias ignores right padding), so this changes nothing but the shapes the compiler sees.
    Call it again with ``keys=("labels",), buckets=8`` to bucket the targets.
    """
    out = dict(batch)
    present = [k for k in keys if isinstance(out.get(k), torch.Tensor)]
    if not present:
        return out
    width = int(out[present[0]].shape[1])
    target = bucket_length(width, buckets, max_length)
    for key in present:
        tensor = out[key]
        if int(tensor.shape[1]) != width:
            raise ValueError(f"batch[{key!r}] has width {tensor.shape[1]} but batch[{present[0]!r}] has {width}; pad them together")
        if target > width:
            out[key] = F.pad(tensor, (0, target - width), value=pad_values.get(key, 0))
    return out


# ------------------------------------------------------------------ the model
def biased_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    kernel: str = "efficient",
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """T5-style attention with an additive bias through a fused SDPA kernel (CUDA).

    ``position_bias + attention_mask`` is one additive bias in the model dtype; on CUDA it goes to
    ``aten._scaled_dot_product_efficient_attention`` (``kernel="efficient"``: bf16 GEMMs, softmax and
    dropout fused; of the B x H x L x L tensors only the bias is kept) or to cuDNN's fused attention
    (``kernel="cudnn"``; fp16/bf16 only, fp32 goes to the memory-efficient kernel), instead of the fp32
    math path that compiled SDPA takes for T5's biased attention. Dropout stays as configured.

    On CPU, and in eval mode (evaluation and generation run eager, where padding and copying the bias
    would only add kernel launches), it is ``F.scaled_dot_product_attention`` with the same bias: plain SDPA.
    """
    bias = position_bias
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros_like(attention_mask, dtype=query.dtype).masked_fill(~attention_mask, torch.finfo(query.dtype).min)
        bias = attention_mask if bias is None else bias + attention_mask
    if bias is not None:
        bias = bias.to(query.dtype)
    if query.is_cuda and module.training:
        key, value, bias = aligned_attention_inputs(query, key, value, bias)
        needs_grad = query.requires_grad or key.requires_grad or value.requires_grad
        if kernel == "cudnn" and query.dtype in (torch.float16, torch.bfloat16):  # cuDNN has no fp32 attention
            out = torch.ops.aten._scaled_dot_product_cudnn_attention(query, key, value, bias, needs_grad, dropout, False, False,
                                                                     scale=scaling)[0]
        else:
            out = torch.ops.aten._scaled_dot_product_efficient_attention(query, key, value, bias, needs_grad, dropout, False,
                                                                         scale=scaling)[0]
    else:
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


def biased_cudnn_attention(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """:func:`biased_sdpa_attention` through cuDNN's fused attention kernel."""
    return biased_sdpa_attention(*args, kernel="cudnn", **kwargs)


def aligned_attention_inputs(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None, multiple: int = 16
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad keys, values and the bias to a key length that is a multiple of ``multiple``, bias contiguous.

    The memory-efficient kernel reads the bias with 16-byte vector loads: every stride of the bias must be a
    multiple of 8 elements (bf16) and its last dimension contiguous. T5's position bias has the heads
    innermost, and key lengths like 60 + L are not multiples of 8, so the bias is materialised as a
    contiguous (B, H, Lq, Lk_pad) tensor with the padded keys masked out (their values are zeros); the
    attention output is unchanged. ``Lk_pad = multiple * ceil(Lk / multiple)`` is written so that the
    compiler can prove its divisibility under dynamic shapes.
    """
    batch, heads, q_len, k_len = query.shape[0], query.shape[1], query.shape[2], key.shape[2]
    padded = ((k_len + multiple - 1) // multiple) * multiple
    extra = padded - k_len
    if bias is None:
        bias = query.new_zeros(1, 1, 1, k_len)
    bias = F.pad(bias.expand(batch, heads, q_len, k_len), (0, extra), value=torch.finfo(query.dtype).min).contiguous()
    key = F.pad(key, (0, 0, 0, extra))
    value = F.pad(value, (0, 0, 0, extra))
    return key, value, bias


def additive_mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """transformers' additive (eager) attention mask, made even where no token is padded: deciding to leave it out
    reads the mask on the host, which waits for the GPU in every eager forward (twice: the encoder's mask and the
    cross-attention's); the biased kernels add a bias either way."""
    from transformers.masking_utils import eager_mask

    return eager_mask(*args, **{**kwargs, "allow_is_bidirectional_skip": False})


def register_attention(kernel: str = "efficient") -> str:
    """Register :func:`biased_sdpa_attention` (``kernel="efficient"``) or :func:`biased_cudnn_attention`
    (``"cudnn"``) and its additive mask (:func:`additive_mask`) with transformers; returns the registered name."""
    from transformers import AttentionInterface, AttentionMaskInterface

    name, function = (BIASED_CUDNN, biased_cudnn_attention) if kernel == "cudnn" else (BIASED_SDPA, biased_sdpa_attention)
    AttentionInterface.register(name, function)
    AttentionMaskInterface.register(name, additive_mask)
    return name


def set_attention(model: nn.Module, attention: str) -> None:
    """Set the attention implementation of every Hugging Face model inside ``model``.

    Args:
        attention: ``"keep"`` (leave it), ``"eager"``, ``"sdpa"``, ``"biased_sdpa"`` or ``"biased_cudnn"``
            (see :func:`biased_sdpa_attention`; same numerics as eager up to rounding).
    """
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"attention={attention!r} is unknown; choose one of {', '.join(ATTENTION_CHOICES)}")
    if attention == "keep":
        return
    if attention.startswith("biased_"):
        name = register_attention("cudnn" if attention == "biased_cudnn" else "efficient")
    else:
        name = attention
    from transformers import PretrainedConfig

    for module in model.modules():
        config = getattr(module, "config", None)
        if isinstance(config, PretrainedConfig):
            config._attn_implementation = name


def resolve_attention(choice: str, model: nn.Module, device: torch.device | str) -> str:
    """The attention to train with: ``choice``, or for ``"auto"``, on CUDA for T5-family models whose position
    bias is frozen (their relative-position bias sends plain SDPA down its fp32 math path once compiled),
    ``"biased_cudnn"`` where the frozen base is bf16 or fp16 and cuDNN's fused attention passes
    :func:`dept_vl.train.kernel_check.cudnn_attention_works` on this device (1.10-1.17x the memory-efficient
    kernel's examples/s, measured), else ``"biased_sdpa"`` (1.3-1.5x plain SDPA, see ``benchmarks/README.md``);
    ``"keep"`` otherwise (CPU, other models, full fine-tuning)."""
    if choice == "auto":
        types = {getattr(getattr(m, "config", None), "model_type", None) for m in model.modules()}
        on_cuda = torch.device(device).type == "cuda"
        bias_trains = any(p.requires_grad for n, p in model.named_parameters() if "relative_attention_bias" in n)
        if not (on_cuda and types & set(BIASED_MODEL_TYPES) and not bias_trains):
            return "keep"
        from dept_vl.train.kernel_check import cudnn_attention_works

        dtype = frozen_dtype(model)
        half = dtype in (torch.bfloat16, torch.float16)
        return "biased_cudnn" if half and cudnn_attention_works(str(torch.device(device)), dtype) else "biased_sdpa"
    if choice not in ATTENTION_CHOICES:
        raise ValueError(f"attention={choice!r} is unknown; choose auto or one of {', '.join(ATTENTION_CHOICES)}")
    return choice


def frozen_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the frozen base's floating weights (float32 when it has none)."""
    return next((p.dtype for p in model.parameters() if not p.requires_grad and p.is_floating_point()), torch.float32)


def why_biased_kernel(attention: str, model: nn.Module) -> str:
    """Why ``attention=auto`` chose ``attention`` (a biased kernel) for ``model``: for the run's log."""
    if attention == "biased_cudnn":
        return "cuDNN's fused attention passed its check against the memory-efficient kernel on this GPU"
    if frozen_dtype(model) not in (torch.bfloat16, torch.float16):
        return "the memory-efficient kernel: cuDNN has no float32 attention"
    return "the memory-efficient kernel: cuDNN's fused attention failed its check on this GPU"


def disable_attention_dropout(model: nn.Module) -> int:
    """Opt-in (changes training): zero the attention-probability dropout of every attention module.

    Residual and feed-forward dropout stay as configured. Returns how many modules were changed.
    """
    changed = 0
    for module in model.modules():
        if type(module).__name__.endswith("Attention") and isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0
            changed += 1
    return changed


def prepare_fast_model(
    model: nn.Module,
    dtype: torch.dtype = torch.bfloat16,
    *,
    attention: str = "keep",
    attention_dropout: bool = True,
) -> nn.Module:
    """Cast every frozen parameter and floating buffer to ``dtype``; trainable ones stay float32.

    For a :class:`dept_vl.DePTModel` this runs the base model in ``dtype`` while the prompt, A, B (and any
    ``trainable_modules``) keep float32 weights and gradients; DePT casts them to the base dtype at the add.
    Works in place and returns ``model``.

    Args:
        model: the wrapped model, already on its device.
        dtype: the dtype of the frozen base (``torch.bfloat16``; ``torch.float32`` leaves it as is).
        attention: see :func:`set_attention`.
        attention_dropout: ``False`` switches attention dropout off (opt-in: this changes training).
    """
    if dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise ValueError(f"dtype={dtype} is not supported; use torch.bfloat16, torch.float16 or torch.float32")
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad and param.is_floating_point() and param.dtype != dtype:
                param.data = param.data.to(dtype)
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and buffer.is_floating_point() and buffer.dtype != dtype:
                setattr(module, name, buffer.to(dtype))
    set_attention(model, attention)
    if not attention_dropout:
        disable_attention_dropout(model)
    return model


def training_loss(model: nn.Module) -> Callable[..., torch.Tensor]:
    """``loss_fn(**batch) -> loss``, uncompiled: the model's loss with ``use_cache=False``.

    A training step needs no decoder cache; building one (HF's default ``use_cache=True``) deep-copies the
    config, which splits a compiled graph in four places on torch 2.11.
    """

    def loss_fn(**batch: Any) -> torch.Tensor:
        return model(**{"use_cache": False, **batch}).loss

    return loss_fn


# ------------------------------------------------------------------ the step
def make_optimizer(
    param_groups: Iterable[dict[str, Any]] | Iterable[nn.Parameter],
    *,
    fused: bool | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    lr: float = 1e-3,
) -> torch.optim.AdamW:
    """AdamW over ``param_groups`` (e.g. ``DePTModel.param_groups()``, whose lr and weight decay win).

    Args:
        fused: the fused single-kernel AdamW; ``None`` picks it when every parameter is on CUDA.
        lr: only for groups that carry no ``lr`` of their own.
    """
    groups = list(param_groups)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    params = [p for g in groups for p in g["params"]]
    if not params:
        raise ValueError("make_optimizer: no parameters to optimise (are all of them frozen?)")
    if fused is None:
        fused = all(p.is_cuda and p.is_floating_point() for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def prepare_batch(batch: Mapping[str, torch.Tensor], device: torch.device, bucket: int | None = None,
                  max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Move a batch to ``device`` (non-blocking); with ``bucket``, pad its width as :func:`pad_to_bucket` does."""
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return pad_to_bucket(out, bucket, max_length=max_length) if bucket else out


def train_step(
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    batches: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    scheduler: Any = None,
    max_grad_norm: float | None = None,
    *,
    accelerator: Any = None,
    model: nn.Module | None = None,
    reduce_gradients: Callable[[list[nn.Parameter]], None] | None = None,
) -> torch.Tensor:
    """One optimizer step over one batch or a list of micro-batches; returns the detached loss (a list: one per micro-batch).

    Each micro-batch's loss is divided by their number before its backward pass (the gradients are the mean
    over micro-batches); then ``reduce_gradients`` (several processes averaging by hand), clipping to
    ``max_grad_norm`` (0 or None: off), the optimizer and scheduler steps, and zeroed gradients. With an
    ``accelerator``, its ``backward`` (loss scaling), ``no_sync(model)`` (no DDP all-reduce before the last
    micro-batch) and ``clip_grad_norm_`` are used. Nothing here waits for the GPU.
    """
    micro = [batches] if isinstance(batches, Mapping) else list(batches)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    losses = []
    for i, batch in enumerate(micro):
        last = i == len(micro) - 1
        with accelerator.no_sync(model) if (accelerator is not None and not last) else nullcontext():
            loss = loss_fn(**batch)
            scaled = loss / len(micro)
            if accelerator is not None:
                accelerator.backward(scaled)
            else:
                scaled.backward()
        losses.append(loss.detach().clone())  # a copy: a CUDA graph overwrites its outputs on the next replay
    if reduce_gradients is not None:
        reduce_gradients(params)
    if max_grad_norm:
        if accelerator is not None:
            accelerator.clip_grad_norm_(params, max_grad_norm)
        else:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_grad_norm, foreach=True)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return losses[0] if isinstance(batches, Mapping) else torch.stack(losses)

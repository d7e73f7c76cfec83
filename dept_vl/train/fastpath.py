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

from dept_vl.train.attention import (  # noqa: F401 - the training path's attention, read here by its users
    ATTENTION_CHOICES, BIASED_CUDNN, BIASED_MODEL_TYPES, BIASED_SDPA, additive_mask, aligned_attention_inputs,
    biased_cudnn_attention, biased_sdpa_attention, disable_attention_dropout, frozen_dtype, register_attention,
    resolve_attention, set_attention, why_biased_kernel)

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

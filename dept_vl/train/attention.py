"""The attention kernels of the training path and how one is chosen.

- :func:`biased_sdpa_attention`: T5's biased attention through a fused SDPA kernel (memory-efficient or cuDNN),
  registered with transformers under its own name (:func:`register_attention`), with an additive mask that is never
  skipped (:func:`additive_mask`: deciding to skip it reads it on the host).
- :func:`set_attention` / :func:`resolve_attention`: the attention of every transformers model inside a model, and
  what ``train.attention=auto`` takes.
- :func:`cudnn_attention_works`: the run-time check before cuDNN's fused attention is taken by default. cuDNN's
  kernel was measured 1.10-1.17x the examples/s of the memory-efficient kernel at T5-base (``benchmarks/README.md``),
  but what it computes depends on the GPU generation, the driver and the cuDNN build.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_CHOICES = ("keep", "eager", "sdpa", "biased_sdpa", "biased_cudnn")
BIASED_MODEL_TYPES = ("t5", "mt5")  # models whose attention carries an additive relative-position bias
BIASED_SDPA = "dept_biased_sdpa"  # the names registered with transformers' attention interface
BIASED_CUDNN = "dept_biased_cudnn"


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
    :func:`cudnn_attention_works` on this device (1.10-1.17x the memory-efficient
    kernel's examples/s, measured), else ``"biased_sdpa"`` (1.3-1.5x plain SDPA, see ``benchmarks/README.md``);
    ``"keep"`` otherwise (CPU, other models, full fine-tuning)."""
    if choice == "auto":
        types = {getattr(getattr(m, "config", None), "model_type", None) for m in model.modules()}
        on_cuda = torch.device(device).type == "cuda"
        bias_trains = any(p.requires_grad for n, p in model.named_parameters() if "relative_attention_bias" in n)
        if not (on_cuda and types & set(BIASED_MODEL_TYPES) and not bias_trains):
            return "keep"
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


# ------------------------------------------------------------------ the check
CHECK_SHAPE = (2, 4, 37, 64)  # batch, heads, length (not a multiple of 16: the padded-key path), head width
AGREEMENT = 2.0**-5  # largest difference allowed, relative to the reference's largest magnitude (bf16 keeps 8 bits)


def attention_outputs(device: str, dtype: torch.dtype, kernel: str, dropout: float = 0.0) -> list[torch.Tensor]:
    """A T5-shaped biased attention (relative-position bias, padded keys masked in one row) through
    :func:`dept_vl.train.fastpath.biased_sdpa_attention` with ``kernel``: its output and the gradients of the
    query, key and value, for fixed random inputs."""
    batch, heads, length, width = CHECK_SHAPE
    generator = torch.Generator(device=device).manual_seed(0)
    q, k, v = (torch.randn(batch, heads, length, width, device=device, dtype=dtype, generator=generator).requires_grad_()
               for _ in range(3))
    bias = torch.randn(1, heads, length, length, device=device, dtype=dtype, generator=generator)
    mask = torch.zeros(batch, 1, 1, length, device=device, dtype=dtype)
    mask[1, ..., length - 5:] = torch.finfo(dtype).min
    weights = torch.randn(batch, length, heads * width, device=device, dtype=torch.float32, generator=generator)
    training = types.SimpleNamespace(training=True)
    out, _ = biased_sdpa_attention(training, q, k, v, mask, scaling=1.0, dropout=dropout, position_bias=bias, kernel=kernel)
    grads = torch.autograd.grad((out.float().reshape(batch, length, -1) * weights).sum(), (q, k, v))
    return [out.detach(), *grads]


def agree(found: list[torch.Tensor], reference: list[torch.Tensor]) -> bool:
    """Whether every tensor of ``found`` is finite and within :data:`AGREEMENT` of its reference."""
    for a, b in zip(found, reference, strict=True):
        a, b = a.float(), b.float()
        if a.shape != b.shape or not bool(torch.isfinite(a).all()):
            return False
        if float((a - b).abs().max()) > AGREEMENT * float(b.abs().max()):
            return False
    return True


@functools.lru_cache(maxsize=None)
def cudnn_attention_works(device: str, dtype: torch.dtype = torch.bfloat16) -> bool:
    """Whether cuDNN's fused attention gives on ``device`` what the memory-efficient kernel gives for a biased
    attention (output and the three input gradients, dropout off) and runs with dropout to a finite output.
    Checked once per device and dtype; False where it raises (no cuDNN attention for this GPU, driver or build)."""
    try:
        reference = attention_outputs(device, dtype, "efficient")
        ok = agree(attention_outputs(device, dtype, "cudnn"), reference)
        with_dropout = attention_outputs(device, dtype, "cudnn", dropout=0.1)
        return ok and all(bool(torch.isfinite(t).all()) for t in with_dropout)
    except Exception:  # noqa: BLE001 - any failure means: not this kernel here
        return False

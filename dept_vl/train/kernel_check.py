"""Run-time checks of a GPU's attention kernels, before the training path picks one by default.

cuDNN's fused attention (``attention=biased_cudnn``) was measured 1.10-1.17x the examples/s of the memory-efficient
kernel at T5-base (``benchmarks/README.md``), but what it computes depends on the GPU generation, the driver and the
cuDNN build. So ``attention=auto`` takes it only where :func:`cudnn_attention_works` has checked it on the current
device, once per process, against the memory-efficient kernel.
"""

from __future__ import annotations

import functools
import types

import torch

CHECK_SHAPE = (2, 4, 37, 64)  # batch, heads, length (not a multiple of 16: the padded-key path), head width
AGREEMENT = 2.0**-5  # largest difference allowed, relative to the reference's largest magnitude (bf16 keeps 8 bits)


def attention_outputs(device: str, dtype: torch.dtype, kernel: str, dropout: float = 0.0) -> list[torch.Tensor]:
    """A T5-shaped biased attention (relative-position bias, padded keys masked in one row) through
    :func:`dept_vl.train.fastpath.biased_sdpa_attention` with ``kernel``: its output and the gradients of the
    query, key and value, for fixed random inputs."""
    from dept_vl.train.fastpath import biased_sdpa_attention

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

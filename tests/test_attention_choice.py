"""attention=auto takes cuDNN's fused attention only where a run-time check against the memory-efficient kernel
passes on the current device, and says why it chose what it chose."""

from __future__ import annotations

import pytest
import torch

from dept_vl.train import attention, fastpath
from tests.conftest import tiny_t5


@pytest.fixture(autouse=True)
def fresh_checks():
    attention.cudnn_attention_works.cache_clear()
    yield
    attention.cudnn_attention_works.cache_clear()


def frozen_t5(dtype: torch.dtype) -> torch.nn.Module:
    from dept_vl import DePTConfig, DePTModel

    return DePTModel(tiny_t5().to(dtype), DePTConfig(num_virtual_tokens=2, rank=2, max_length=16))


@pytest.mark.parametrize("passes", [True, False])
def test_auto_takes_cudnn_on_a_half_precision_base_only_where_its_check_passes(monkeypatch, passes):
    checked = []

    def check(device: str, dtype: torch.dtype) -> bool:
        checked.append((device, dtype))
        return passes

    monkeypatch.setattr(attention, "cudnn_attention_works", check)
    model = frozen_t5(torch.bfloat16)
    chosen = fastpath.resolve_attention("auto", model, "cuda")
    assert chosen == ("biased_cudnn" if passes else "biased_sdpa")
    assert checked == [("cuda", torch.bfloat16)]  # the device and the base's own dtype were checked
    assert ("passed its check" in fastpath.why_biased_kernel(chosen, model)) == passes
    # a float32 base never reaches cuDNN (it has no float32 attention): no check, the memory-efficient kernel
    checked.clear()
    fp32 = frozen_t5(torch.float32)
    assert fastpath.resolve_attention("auto", fp32, "cuda") == "biased_sdpa" and checked == []
    assert "float32" in fastpath.why_biased_kernel("biased_sdpa", fp32)
    assert fastpath.resolve_attention("biased_sdpa", model, "cuda") == "biased_sdpa" and checked == []  # an explicit choice stands


def test_the_check_passes_equal_kernels_and_fails_one_that_drops_the_bias(monkeypatch):
    # on a CPU both kernels are PyTorch's SDPA with the bias: they agree
    assert attention.cudnn_attention_works("cpu", torch.float32)
    attention.cudnn_attention_works.cache_clear()
    real = attention.biased_sdpa_attention

    def without_bias(module, query, key, value, attention_mask, kernel="efficient", **kwargs):
        if kernel == "cudnn":  # a kernel that ignores the relative-position bias
            kwargs["position_bias"] = None
        return real(module, query, key, value, attention_mask, kernel=kernel, **kwargs)

    monkeypatch.setattr(attention, "biased_sdpa_attention", without_bias)
    assert not attention.cudnn_attention_works("cpu", torch.float32)


def test_the_check_fails_where_the_kernel_raises_or_gives_non_finite_values(monkeypatch):
    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"  # no such device here
    assert not attention.cudnn_attention_works(missing, torch.bfloat16)
    attention.cudnn_attention_works.cache_clear()
    real = attention.biased_sdpa_attention

    def nan_with_dropout(module, query, key, value, attention_mask, kernel="efficient", dropout=0.0, **kwargs):
        out, weights = real(module, query, key, value, attention_mask, kernel=kernel, dropout=dropout, **kwargs)
        return (out * float("nan") if kernel == "cudnn" and dropout else out), weights

    monkeypatch.setattr(attention, "biased_sdpa_attention", nan_with_dropout)
    assert not attention.cudnn_attention_works("cpu", torch.float32)


def test_agreement_is_relative_to_the_reference_scale():
    reference = [torch.tensor([100.0, -50.0])]
    assert attention.agree([torch.tensor([100.0 + 3.0, -50.0])], reference)  # 3 <= 100 / 32
    assert not attention.agree([torch.tensor([100.0, -50.0 + 3.2])], reference)  # 3.2 > 100 / 32
    assert not attention.agree([torch.tensor([100.0, float("inf")])], reference)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cudnn_attention_passes_its_check_on_hopper_and_auto_takes_it():
    """Measured on H100 and H200 (sm90): cuDNN's fused attention agrees with the memory-efficient kernel."""
    works = attention.cudnn_attention_works("cuda", torch.bfloat16)
    if torch.cuda.get_device_capability() == (9, 0):
        assert works
    model = frozen_t5(torch.bfloat16).cuda()
    assert fastpath.resolve_attention("auto", model, "cuda") == ("biased_cudnn" if works else "biased_sdpa")

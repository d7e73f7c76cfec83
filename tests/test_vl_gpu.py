"""The VL model on a CUDA device: bf16 text model, fp32 DePT parameters and projection, cached features."""

from __future__ import annotations

import pytest
import torch

from dept_vl.models import VisionFeatureCache, build_vl_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
WORDS = "what is the red blue circle square yes no".split()


def test_bf16_base_with_dept_and_cache_on_cuda():
    from dept_vl.dept import DePTConfig, DePTModel

    torch.manual_seed(0)
    base = build_vl_model("tiny", vocabulary=WORDS).cuda()
    base.text_model.to(torch.bfloat16)
    base.image_encoder.to(torch.bfloat16)
    model = DePTModel(base, DePTConfig(num_virtual_tokens=4, rank=2, max_length=16, init="vocab",
                                       trainable_modules=["visual_projection"])).eval()
    enc = base.tokenizer(["what is red?", "is the circle blue?"], return_tensors="pt", padding=True).to("cuda")
    labels = base.tokenizer(["yes", "no"], return_tensors="pt").input_ids.cuda()
    pixels = torch.randn(2, 3, 48, 48)  # on the CPU: encode_images moves them to the encoder's device
    cache = VisionFeatureCache()
    features = cache.get_or_compute(["a", "b"], lambda ids: pixels, base)
    assert features.device.type == "cuda" and features.dtype == torch.bfloat16
    off = model(**enc, pixel_values=pixels, labels=labels)
    on = model(**enc, image_features=features, labels=labels)
    assert off.logits.dtype == torch.bfloat16 and torch.isfinite(off.loss)
    assert torch.equal(on.logits, off.logits) and torch.equal(on.loss, off.loss)
    model.train()
    model(**enc, image_features=features, labels=labels).loss.backward()
    assert model.prompt.grad is not None and model.prompt.dtype == torch.float32
    assert base.visual_projection.proj.weight.grad is not None
    generated = model.generate(**enc, image_features=features, num_beams=3, max_new_tokens=3)
    assert generated.shape[0] == 2 and generated.device.type == "cuda"

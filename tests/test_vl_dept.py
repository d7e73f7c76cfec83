"""DePT wrapped around the VL model: m + L + N positions, A@B on text only, only adapter parameters train."""

from __future__ import annotations

import pytest
import torch

from dept_vl.models import build_vl_model

dept = pytest.importorskip("dept_vl.dept")

WORDS = "what is the a red blue green circle square triangle left right of how many yes no 0 1 2 3".split()
M, RANK = 4, 3


def wrapped(preset: str = "tiny", trainable_modules=("visual_projection",)):
    torch.manual_seed(0)
    base = build_vl_model(preset, vocabulary=WORDS)
    config = dept.DePTConfig(num_virtual_tokens=M, rank=RANK, max_length=16, init="vocab", lr_prompt=0.3,
                             lr_lowrank=1e-2, trainable_modules=list(trainable_modules))
    return dept.DePTModel(base, config)


def inputs(model):
    tok = model.base_model.tokenizer
    enc = tok(["what is red?", "is the circle left of the blue square?"], return_tensors="pt", padding=True)
    labels = tok(["yes", "no"], return_tensors="pt").input_ids
    pixels = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    return enc.input_ids, enc.attention_mask, pixels, labels


def capture_encoder(model):
    seen: dict = {}
    encoder = model.base_model.text_model.get_encoder()
    handle = encoder.register_forward_pre_hook(lambda mod, args, kwargs: seen.update(kwargs), with_kwargs=True)
    return seen, handle


@pytest.mark.parametrize("preset", ["tiny", "tiny-bart"])
def test_encoder_sees_prompt_text_and_image(preset):
    model = wrapped(preset).eval()
    ids, mask, pixels, labels = inputs(model)
    seen, handle = capture_encoder(model)
    try:
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
    finally:
        handle.remove()
    n, length = model.base_model.num_visual_tokens, ids.shape[1]
    assert seen["inputs_embeds"].shape == (2, M + length + n, 64)
    ones = torch.ones(2, M, dtype=mask.dtype)
    expected_mask = torch.cat([ones, mask, torch.ones(2, n, dtype=mask.dtype)], dim=1)
    assert torch.equal(seen["attention_mask"], expected_mask)  # prompt ones, text padding kept, image ones
    assert torch.isfinite(out.loss)
    generated = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, num_beams=3, max_new_tokens=3)
    assert generated.shape[0] == 2


def test_lowrank_update_touches_text_positions_only():
    model = wrapped().eval()
    ids, mask, pixels, labels = inputs(model)
    seen, handle = capture_encoder(model)
    try:
        model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
        before = seen["inputs_embeds"].detach().clone()
        with torch.no_grad():
            model.lowrank_B.normal_()
        model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
        after = seen["inputs_embeds"].detach()
    finally:
        handle.remove()
    length = ids.shape[1]
    assert torch.equal(before[:, :M], after[:, :M])  # prompt: no offset
    assert not torch.allclose(before[:, M:M + length], after[:, M:M + length])  # text: offset changed
    assert torch.equal(before[:, M + length:], after[:, M + length:])  # visual tokens: untouched


@pytest.mark.parametrize("train_projection", [True, False])
def test_only_adapter_and_projection_change_after_a_step(train_projection):
    model = wrapped(trainable_modules=("visual_projection",) if train_projection else ()).train()
    base = model.base_model
    assert not base.image_encoder.training  # frozen encoder stays in eval mode under .train()
    ids, mask, pixels, labels = inputs(model)

    def everything():  # the adapter's state and the whole base (model.state_dict() holds the adapter only)
        return {**model.state_dict(), **{f"base_model.{k}": t for k, t in base.state_dict().items()}}

    snapshot = {name: t.detach().clone() for name, t in everything().items()}
    optimizer = torch.optim.AdamW(model.param_groups())
    model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels).loss.backward()
    optimizer.step()
    changed = {name for name, t in everything().items() if not torch.equal(t, snapshot[name])}
    assert {"prompt", "lowrank_B"} <= changed
    allowed = {"prompt", "lowrank_A", "lowrank_B"}
    projection = {n for n in changed if n.startswith("base_model.visual_projection.")}
    assert bool(projection) == train_projection
    assert changed - allowed - projection == set()  # text model and image encoder untouched
    assert all(p.grad is None for p in base.image_encoder.parameters())
    assert all(p.grad is None for p in base.text_model.parameters())


def test_adapter_with_projection_loads_onto_fresh_base(tmp_path):
    model = wrapped().eval()
    with torch.no_grad():
        model.lowrank_B.normal_()
        model.base_model.visual_projection.proj.weight.add_(1.0)
    model.save_pretrained(tmp_path / "adapter")
    fresh = build_vl_model("tiny", vocabulary=WORDS)
    loaded = dept.DePTModel.from_pretrained(fresh, tmp_path / "adapter")
    assert torch.equal(loaded.base_model.visual_projection.proj.weight, model.base_model.visual_projection.proj.weight)
    ids, mask, pixels, labels = inputs(model)
    # the fresh base has other random weights: copy them, so that the comparison tests the adapter alone
    loaded.base_model.text_model.load_state_dict(model.base_model.text_model.state_dict())
    loaded.base_model.image_encoder.load_state_dict(model.base_model.image_encoder.state_dict())
    a = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels).logits
    b = loaded(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels).logits
    assert torch.equal(a, b)

"""The VL encoder-decoder on its own: shapes, masks, generation, the text-only path, bad inputs."""

from __future__ import annotations

import copy

import pytest
import torch

from dept_vl.models import build_vl_model, load_image

WORDS = "what is the a red blue green circle square triangle left right of above below how many yes no 0 1 2 3".split()
TEXTS = ["what is the red shape?", "is the circle left of the blue square?"]


@pytest.fixture(scope="module", params=["tiny", "tiny-bart"])
def model(request):
    torch.manual_seed(0)
    return build_vl_model(request.param, vocabulary=WORDS).eval()


def batch(model, texts=TEXTS, targets=("red", "yes")):
    enc = model.tokenizer(list(texts), return_tensors="pt", padding=True)
    labels = model.tokenizer(list(targets), return_tensors="pt", padding=True).input_ids
    labels[labels == model.tokenizer.pad_token_id] = -100
    pixels = torch.randn(len(texts), *model.image_transform.input_size, generator=torch.Generator().manual_seed(1))
    return enc.input_ids, enc.attention_mask, pixels, labels


def test_config_and_api(model):
    cfg = model.config
    assert cfg.is_encoder_decoder and cfg.d_model == 64 and cfg.vocab_size == len(model.tokenizer)
    assert cfg._name_or_path == cfg.name_or_path == model.spec.name
    assert cfg.num_visual_tokens == 36  # 48 / 8 = 6 x 6 patches, class token dropped
    assert model.get_input_embeddings() is model.text_model.get_input_embeddings()
    assert model.get_submodule("visual_projection") is model.visual_projection
    assert model.tokenizer.pad_token_id == 0 and model.tokenizer.eos_token_id == 1 and model.tokenizer.unk_token_id == 2
    assert not any(p.requires_grad for p in model.image_encoder.parameters())


def test_image_and_text_forward_shapes_and_mask(model):
    ids, mask, pixels, labels = batch(model)
    seen = {}
    hook = model.text_model.get_encoder().register_forward_pre_hook(
        lambda mod, args, kwargs: seen.update(kwargs), with_kwargs=True
    )
    try:
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
    finally:
        hook.remove()
    n = model.num_visual_tokens
    assert seen["inputs_embeds"].shape == (2, ids.shape[1] + n, 64)
    assert torch.equal(seen["attention_mask"], torch.cat([mask, torch.ones(2, n, dtype=mask.dtype)], dim=1))
    assert out.logits.shape == (2, labels.shape[1], cfg_vocab(model)) and torch.isfinite(out.loss)
    assert out.encoder_last_hidden_state.shape[1] == ids.shape[1] + n


def cfg_vocab(model) -> int:
    return model.config.vocab_size


def test_text_only_equals_plain_text_model(model):
    ids, mask, _, labels = batch(model)
    vl = model(input_ids=ids, attention_mask=mask, labels=labels)
    plain = model.text_model(input_ids=ids, attention_mask=mask, labels=labels)
    assert torch.equal(vl.logits, plain.logits) and torch.equal(vl.loss, plain.loss)
    embeds = model.get_input_embeddings()(ids)
    assert torch.equal(model(inputs_embeds=embeds, attention_mask=mask, labels=labels).logits, plain.logits)


def test_generation_image_and_text_only(model):
    ids, mask, pixels, _ = batch(model)
    opts = dict(num_beams=3, max_new_tokens=4, length_penalty=0.6)
    with_image = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, **opts)
    assert with_image.shape[0] == 2 and with_image.shape[1] <= 5
    text_only = model.generate(input_ids=ids, attention_mask=mask, **opts)
    assert torch.equal(text_only, model.text_model.generate(input_ids=ids, attention_mask=mask, **opts))
    several = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, num_beams=3, num_return_sequences=2, max_new_tokens=3)
    assert several.shape[0] == 4


def test_image_features_path_equals_pixel_path(model):
    ids, mask, pixels, labels = batch(model)
    a = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
    b = model(input_ids=ids, attention_mask=mask, image_features=model.encode_images(pixels), labels=labels)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.loss, b.loss)


def test_mixed_batch_with_none_rows(model):
    ids, mask, pixels, labels = batch(model)
    mixed = model(input_ids=ids, attention_mask=mask, pixel_values=[pixels[0], None], labels=labels).logits
    text_only = model(input_ids=ids, attention_mask=mask, labels=labels).logits
    full = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels).logits
    torch.testing.assert_close(mixed[1], text_only[1], atol=1e-5, rtol=1e-5)  # the row without image is text-only
    torch.testing.assert_close(mixed[0], full[0], atol=1e-5, rtol=1e-5)
    masked = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, image_mask=torch.tensor([True, False]), labels=labels).logits
    torch.testing.assert_close(masked, mixed, atol=1e-5, rtol=1e-5)
    none = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels, image_mask=torch.tensor([False, False]))
    assert torch.equal(none.logits, text_only)


def test_bad_inputs_give_clear_errors(model):
    ids, mask, pixels, labels = batch(model)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 32, 32\); expected \(batch, 3, 48, 48\)"):
        model(input_ids=ids, attention_mask=mask, pixel_values=torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"expected \(batch, 3, 48, 48\)"):
        model(input_ids=ids, attention_mask=mask, pixel_values=torch.randn(2, 1, 48, 48))
    with pytest.raises(ValueError, match="holds 3 images but the text batch has 2 rows"):
        model(input_ids=ids, attention_mask=mask, pixel_values=torch.randn(3, 3, 48, 48))
    with pytest.raises(ValueError, match="image_features has shape"):
        model(input_ids=ids, attention_mask=mask, image_features=torch.randn(2, 5, 64))
    with pytest.raises(ValueError, match="not both"):
        model(input_ids=ids, pixel_values=pixels, image_features=model.encode_images(pixels))
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model(pixel_values=pixels)
    with pytest.raises(ValueError, match="one flag per row"):
        model(input_ids=ids, pixel_values=pixels, image_mask=torch.tensor([True]))
    with pytest.raises(ValueError, match="neither pixel_values nor image_features"):
        model(input_ids=ids, image_mask=torch.tensor([True, False]))


def test_image_modes_are_converted_to_rgb(model):
    from PIL import Image

    for mode, size in [("L", (60, 40)), ("RGBA", (48, 48)), ("P", (30, 30)), ("1", (50, 50)), ("CMYK", (48, 48))]:
        assert model.image_transform(Image.new(mode, size)).shape == (3, 48, 48)
    transparent = model.image_transform(Image.new("RGBA", (48, 48), (0, 0, 0, 0)))
    assert torch.allclose(transparent, torch.ones_like(transparent))  # composited on white, (1 - 0.5) / 0.5


def test_load_image_errors_name_the_path(tmp_path):
    from PIL import Image

    good = tmp_path / "gray.png"
    Image.new("L", (20, 20), 128).save(good)
    assert load_image(good).mode == "RGB"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match="junk.png"):
        load_image(junk)
    truncated = tmp_path / "cut.png"
    Image.effect_noise((64, 64), 50).convert("RGB").save(tmp_path / "full.png")
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:300])
    with pytest.raises(ValueError, match="cut.png"):
        load_image(truncated)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_frozen_image_encoder_stays_in_eval_mode(model):
    trained = copy.deepcopy(model).train()
    assert trained.training and trained.text_model.training and not trained.image_encoder.training


def test_projection_options_and_pooling():
    mlp = build_vl_model("tiny", vocabulary=WORDS, projection="mlp", pool_size=3, keep_prefix_tokens=True)
    assert mlp.num_visual_tokens == 1 + 9
    pixels = torch.randn(2, 3, 48, 48)
    assert mlp.encode_images(pixels).shape == (2, 10, 64)
    ids = mlp.tokenizer(TEXTS, return_tensors="pt", padding=True).input_ids
    assert mlp(input_ids=ids, pixel_values=pixels, labels=ids).logits.shape[:2] == ids.shape
    with pytest.raises(ValueError, match="projection='conv' is unknown"):
        build_vl_model("tiny", vocabulary=WORDS, projection="conv")


def test_peft_lora_on_text_model_and_on_whole_model(model):
    from peft import LoraConfig, get_peft_model

    ids, mask, pixels, labels = batch(model)
    whole = get_peft_model(copy.deepcopy(model), LoraConfig(target_modules=["q", "v"], r=2) if model.config.text_model_type == "t5"
                           else LoraConfig(target_modules=["q_proj", "v_proj"], r=2))
    assert whole(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels).loss.requires_grad
    assert whole.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=2).shape[0] == 2
    inner = copy.deepcopy(model)
    targets = ["q", "v"] if model.config.text_model_type == "t5" else ["q_proj", "v_proj"]
    inner.text_model = get_peft_model(inner.text_model, LoraConfig(target_modules=targets, r=2, task_type="SEQ_2_SEQ_LM"))
    out = inner(input_ids=ids, attention_mask=mask, pixel_values=pixels, labels=labels)
    out.loss.backward()
    grads = [n for n, p in inner.named_parameters() if p.grad is not None]
    assert any("lora_" in n for n in grads)
    assert all("lora_" in n or n.startswith("visual_projection.") for n in grads)  # the text model's weights stay frozen


def test_word_level_tokenizer():
    from dept_vl.models import word_level_tokenizer

    tok = word_level_tokenizer(["what", "is", "red", "?", "sentence1", ":", "not_equivalent", "Red"])
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2) and len(tok) == 3 + 7
    ids = tok(["What is RED?", "sentence1: not_equivalent green"])["input_ids"]
    assert ids[0] == [3, 4, 5, 6, 1] and ids[1][-2:] == [2, 1]  # unknown "green", then eos
    assert tok.batch_decode(ids, skip_special_tokens=True)[0] == "what is red?"

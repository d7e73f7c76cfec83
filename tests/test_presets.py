"""The preset registry: names, overrides, errors, and the hub presets' structure built offline."""

from __future__ import annotations

import pytest
import torch

from dept_vl.models import VLModelSpec, build_vl_model, get_preset, list_presets, register_preset, register_vocabulary

HUB = {
    "t5-base+vit-b16-clip": ("t5-base", "vit_base_patch16_clip_224.openai"),
    "t5-small+vit-s16": ("t5-small", "vit_small_patch16_224.augreg_in21k_ft_in1k"),
    "bart-base+vit-b16-clip": ("facebook/bart-base", "vit_base_patch16_clip_224.openai"),
}
# Shapes of the hub text models, written here so the structure builds without a download.
HUB_TEXT_SHAPES = {
    "t5-base": dict(model_type="t5", d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64, vocab_size=32128),
    "t5-small": dict(model_type="t5", d_model=512, d_ff=2048, num_layers=6, num_heads=8, d_kv=64, vocab_size=32128),
    "facebook/bart-base": dict(model_type="bart", d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                               decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, vocab_size=50265),
}


def test_registered_names():
    assert {"tiny", "tiny-bart", *HUB} <= set(list_presets())
    for name, (text, image) in HUB.items():
        spec = get_preset(name)
        assert (spec.text_model, spec.image_encoder, spec.image_pretrained) == (text, image, True)
        assert spec.text_config is None and spec.pool_size == 7


@pytest.mark.parametrize("name", sorted(HUB))
def test_hub_preset_structure_offline(name):
    text = HUB[name][0]
    with torch.device("meta"):  # shapes only: no weights allocated, nothing downloaded
        model = build_vl_model(name, text_config=HUB_TEXT_SHAPES[text], image_pretrained=False, tokenizer="none")
    d_model = HUB_TEXT_SHAPES[text]["d_model"]
    assert model.config.d_model == d_model and model.config.num_visual_tokens == 49
    assert model.config.name_or_path == name and model.config.image_encoder == HUB[name][1]
    assert model.visual_projection.proj.weight.shape == (d_model, model.config.image_width)
    assert model.image_transform.input_size == (3, 224, 224)


def test_overrides_and_errors():
    spec = get_preset("tiny")
    assert spec.text_config["d_model"] == 64 and spec.image_encoder_kwargs["img_size"] == 48
    with pytest.raises(ValueError, match="unknown model preset 'nope'; registered presets: .*tiny"):
        build_vl_model("nope")
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['colour'\]"):
        build_vl_model("tiny", colour="red")
    with pytest.raises(ValueError, match="already registered"):
        register_preset("tiny", spec)
    with pytest.raises(ValueError, match=r"needs text_model \(a hub name\) or text_config"):
        VLModelSpec(image_encoder="vit_tiny_patch16_224")
    with pytest.raises(ValueError, match="no image encoder named 'not_a_vit'"):
        build_vl_model("tiny", vocabulary=["a"], image_encoder="not_a_vit")
    model = build_vl_model("tiny", vocabulary=["red", "blue"], text_config={"num_layers": 1})  # dicts merge
    assert model.text_model.config.num_layers == 1 and model.text_model.config.d_model == 64
    assert model.config.vocab_size == 3 + 2  # pad, eos, unk + the words
    assert build_vl_model(vocabulary=["red"]).config.name_or_path == "tiny"  # no preset, no text model: tiny
    explicit = build_vl_model(text_config=dict(model_type="t5", d_model=32, num_layers=1, num_heads=2, d_kv=16, vocab_size=50),
                              image_encoder="test_vit", image_pretrained=False, tokenizer="none")
    assert explicit.config.name_or_path == "custom" and explicit.config.d_model == 32 and explicit.tokenizer is None


def test_register_and_build_a_new_preset():
    spec = get_preset("tiny")
    register_preset("tiny-test-mlp", VLModelSpec(**{**spec.to_dict(), "projection": "mlp", "vocabulary": ["x"]}), overwrite=True)
    model = build_vl_model("tiny-test-mlp")
    assert model.visual_projection.kind == "mlp" and model.config.name_or_path == "tiny-test-mlp"


def test_default_preset_uses_the_synthetic_world_vocabulary():
    shapes = pytest.importorskip("dept_vl.data.shapes")
    if not hasattr(shapes, "vocabulary"):
        pytest.skip("dept_vl.data.shapes.vocabulary() is not written yet")
    import dept_vl.tasks  # noqa: F401  (registers the synthetic world's words as the vocabulary "shapes")

    model = build_vl_model()
    assert model.config.name_or_path == "tiny"
    assert model.config.vocab_size == len(model.tokenizer) >= len(set(shapes.vocabulary()))
    assert model.spec.vocabulary == shapes.vocabulary()  # the words themselves are saved with a backbone


def test_word_level_presets_name_a_registered_vocabulary():
    assert get_preset("tiny").vocabulary == "shapes" and get_preset("tiny-bart").vocabulary == "shapes"
    register_vocabulary("test-colours", ["red", "blue"], overwrite=True)
    model = build_vl_model("tiny", vocabulary="test-colours")
    assert model.spec.vocabulary == ["red", "blue"] and model.config.vocab_size == 3 + 2
    with pytest.raises(ValueError, match="already registered"):
        register_vocabulary("test-colours", ["green"])
    with pytest.raises(ValueError, match="names vocabulary 'nope', which is not registered.*vocabulary=\\[...\\]"):
        build_vl_model("tiny", vocabulary="nope")
    with pytest.raises(ValueError, match="has a word-level tokenizer but no vocabulary"):
        build_vl_model("tiny", vocabulary=None)


def test_another_image_encoder_drops_the_preset_encoder_arguments():
    cnn = build_vl_model("tiny", vocabulary=["red"], image_encoder="test_resnet", pool_size=2)  # a CNN feature map
    assert cnn.spec.image_encoder_kwargs == {} and cnn.num_visual_tokens == 4
    pixels = torch.randn(1, *cnn.image_transform.input_size)
    ids = cnn.tokenizer(["red"], return_tensors="pt").input_ids
    assert cnn(input_ids=ids, pixel_values=pixels, labels=ids).encoder_last_hidden_state.shape[1] == ids.shape[1] + 4
    vit = build_vl_model("tiny", vocabulary=["red"], image_encoder="test_vit", keep_prefix_tokens=True, pool_size=2)
    assert vit.num_visual_tokens == 1 + 4 and vit.encode_images(torch.randn(1, *vit.image_transform.input_size)).shape[1] == 5


def test_an_overridden_image_size_reaches_the_image_transform():
    model = build_vl_model("tiny", vocabulary=["red"], image_encoder="vit_tiny_patch16_224", image_encoder_kwargs={"img_size": 32, "patch_size": 8})
    assert model.image_transform.input_size == (3, 32, 32) and model.num_visual_tokens == 16
    assert model.encode_images(torch.randn(1, 3, 32, 32)).shape == (1, 16, 64)  # other kwargs of the preset kept

"""save_backbone / load_backbone: every tensor, the tokenizer and generations come back, offline."""

from __future__ import annotations

import json

import pytest
import torch

from dept_vl.models import VLEncoderDecoder, build_vl_model, load_backbone, save_backbone, word_level_tokenizer

WORDS = "what is the red blue circle square left of yes no 0 1 2".split()


@pytest.mark.parametrize("preset", ["tiny", "tiny-bart"])
def test_backbone_round_trip(preset, tmp_path):
    torch.manual_seed(0)
    model = build_vl_model(preset, vocabulary=WORDS, projection="mlp").eval()
    save_backbone(model, tmp_path / "bb")
    meta = json.loads((tmp_path / "bb" / "backbone.json").read_text())
    assert meta["format"] == "dept-vl-backbone" and meta["spec"]["name"] == preset
    assert meta["spec"]["vocabulary"] == WORDS and meta["spec"]["image_pretrained"] is False
    drawn = []
    real_normal = torch.Tensor.normal_

    def normal_(tensor, *args, **kwargs):
        drawn.append(tensor.device.type)
        return real_normal(tensor, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.Tensor, "normal_", normal_)
        loaded = load_backbone(tmp_path / "bb")
    assert "cpu" not in drawn  # no weight was initialised at random only to be overwritten
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    text = loaded.text_model  # tied weights come back tied: one tensor, as in the saved model
    assert (text.lm_head.weight is text.get_input_embeddings().weight) == \
        (model.text_model.lm_head.weight is model.text_model.get_input_embeddings().weight)
    assert loaded.tokenizer.get_vocab() == model.tokenizer.get_vocab()
    assert loaded.image_transform.data_config == model.image_transform.data_config
    assert loaded.feature_key == model.feature_key  # cached features stay valid for the reloaded backbone
    assert loaded.config == model.config and not loaded.training
    enc = model.tokenizer(["what is left of the circle?"], return_tensors="pt")
    pixels = torch.randn(1, 3, 48, 48)
    opts = dict(num_beams=2, max_new_tokens=3)
    assert torch.equal(model.generate(**enc, pixel_values=pixels, **opts), loaded.generate(**enc, pixel_values=pixels, **opts))


@pytest.mark.parametrize("kind", ["buffer", "attribute"])
def test_a_model_with_tensors_no_weights_file_holds_is_built_the_ordinary_way(monkeypatch, kind):
    from dept_vl.models import backbone

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)
            if kind == "buffer":
                self.register_buffer("table", torch.arange(4.0), persistent=False)
            else:
                self.table = torch.arange(4.0)

    class RandomHolder(Holder):  # its tensor drawn at random (as a skipped random fill would leave it: unchanged)
        def __init__(self):
            super().__init__()
            self.table.normal_()

    monkeypatch.setattr(backbone, "build_from_spec", lambda spec, tokenizer: RandomHolder())
    torch.manual_seed(0)
    model = backbone.build_unfilled(None, None)
    torch.manual_seed(0)
    assert torch.equal(model.table, RandomHolder().table)  # drawn as the ordinary build draws it


def test_backbone_with_a_saved_tokenizer_folder(tmp_path):
    tokenizer = word_level_tokenizer(WORDS)
    tokenizer.save_pretrained(str(tmp_path / "tok"))
    model = build_vl_model("tiny", tokenizer=str(tmp_path / "tok"), text_config={"vocab_size": len(tokenizer)})
    save_backbone(model, tmp_path / "bb", extra={"command": "dept-vl demo --rebuild-backbone"})
    assert (tmp_path / "bb" / "tokenizer").is_dir()
    loaded = load_backbone(tmp_path / "bb")
    assert loaded.tokenizer("what is red")["input_ids"] == tokenizer("what is red")["input_ids"]
    meta = json.loads((tmp_path / "bb" / "backbone.json").read_text())
    assert meta["extra"]["command"].startswith("dept-vl demo")


def test_backbone_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a dept-vl backbone"):
        load_backbone(tmp_path)
    model = build_vl_model("tiny", vocabulary=WORDS)
    bare = VLEncoderDecoder(model.text_model, model.image_encoder)
    with pytest.raises(ValueError, match="without a preset spec"):
        save_backbone(bare, tmp_path / "x")
    save_backbone(model, tmp_path / "bb")
    other = json.loads((tmp_path / "bb" / "backbone.json").read_text())
    other["spec"]["text_config"]["d_model"] = 32
    (tmp_path / "bb" / "backbone.json").write_text(json.dumps(other))
    with pytest.raises(Exception, match="size mismatch|does not match"):
        load_backbone(tmp_path / "bb")

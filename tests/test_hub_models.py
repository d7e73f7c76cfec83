"""Any hub model: model.text_model / model.image_encoder without a preset, text-only bases, and the released CoLA
checkpoint evaluated from the command line on a T5 folder in the hub's format (built here from a config, offline)."""

from __future__ import annotations

import json

import pytest
import torch

from dept_vl.config import load_config
from dept_vl.models import build_vl_model
from dept_vl.models.presets import TINY_VIT, resolve_spec
from tests.conftest import tiny_bart
from tests.fixtures_official import write_tsv


def _t5_folder(path, tokenizer_dir=None, d_model=64, vocab_size=120):
    """A tiny random T5 saved as a hub folder (config.json + model.safetensors [+ the tokenizer's files])."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
                      d_kv=8, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = T5ForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    if tokenizer_dir is not None:
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(path)
    return model


@pytest.fixture
def no_image_encoder(monkeypatch):
    """Fail the test if anything builds an image encoder."""
    import dept_vl.models.vision as vision

    def refuse(*args, **kwargs):
        raise AssertionError("an image encoder was built")

    monkeypatch.setattr(vision, "create_image_encoder", refuse)


def test_glue_recipes_are_text_only_t5_base():
    for recipe in ("glue_pretrain", "glue_adapt"):
        model = load_config(recipe).model
        assert model.text_only and model.build_args() == (None, {"text_model": "t5-base"}), recipe


def test_a_text_model_folder_builds_that_model_and_no_image_encoder(tmp_path, no_image_encoder):
    saved = _t5_folder(tmp_path / "t5")
    model = build_vl_model(text_model=str(tmp_path / "t5"), tokenizer="none")
    assert type(model).__name__ == "T5ForConditionalGeneration" and not hasattr(model, "image_encoder")
    assert torch.equal(model.shared.weight, saved.shared.weight)  # the folder's weights, not random ones
    assert model.spec.text_only and model.tokenizer is None


def test_bart_folder_with_an_image_encoder_gives_the_vl_model(tmp_path):
    saved = tiny_bart()
    saved.save_pretrained(tmp_path / "bart")
    model = build_vl_model(text_model=str(tmp_path / "bart"), image_encoder="vit_tiny_patch16_224", image_pretrained=False,
                           image_encoder_kwargs=dict(TINY_VIT), tokenizer="none")
    assert type(model.text_model).__name__ == "BartForConditionalGeneration"
    assert torch.equal(model.text_model.get_input_embeddings().weight, saved.get_input_embeddings().weight)
    assert model.config.num_visual_tokens == 36 and model.config.image_encoder.startswith("vit_tiny_patch16_224")


def test_model_keys_reach_the_spec():
    cfg = load_config(None, ["model.text_model=google/flan-t5-base", "model.image_encoder=resnet101_clip.openai",
                             "model.pool_size=6", "model.pool_mode=max", "model.image_preprocessing=vl-adapter",
                             "model.image_pretrained=false"]).model
    preset, overrides = cfg.build_args()
    spec = resolve_spec(preset, **overrides)
    assert (preset, spec.text_model, spec.image_encoder) == (None, "google/flan-t5-base", "resnet101_clip.openai")
    assert (spec.pool_size, spec.pool_mode, spec.image_preprocessing, spec.image_pretrained) == (6, "max", "vl-adapter", False)
    # a hub preset with another text model keeps its image encoder; pool_size=0 is every token
    cfg = load_config(None, ["model.preset=t5-base+vit-b16-clip", "model.text_model=google/flan-t5-base", "model.pool_size=0"])
    spec = resolve_spec(*cfg.model.build_args()[:1], **cfg.model.build_args()[1])
    assert (spec.text_model, spec.image_encoder, spec.pool_size) == ("google/flan-t5-base", "vit_base_patch16_clip_224.openai", None)
    assert load_config(None, []).model.build_args() == ("tiny", {})  # nothing named: the tiny preset, as before


@pytest.mark.parametrize("overrides, message", [
    (["model.text_model=t5-base", "model.pool_size=6"], r"model.pool_size shape\(s\) an image encoder.*text-only"),
    (["model.preset=tiny", "model.text_model=t5-base"], "model.preset='tiny' builds its text model from a config"),
    (["model.backbone=shipped:backbone-tiny", "model.image_encoder=vit_tiny_patch16_224"], "is a whole saved model"),
    (["model.pool_mode=mean"], "model.pool_mode='mean' is unknown; choose avg or max"),
    (["model.image_preprocessing=clip"], "choose timm or vl-adapter"),
])
def test_conflicting_model_keys_fail_at_load(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_a_text_only_base_refuses_image_tasks_before_loading(tmp_path, no_image_encoder):
    from dept_vl.train.run import Run

    config = load_config(None, ["model.text_model=not-downloaded/anywhere", f"output_dir={tmp_path}"])
    with pytest.raises(ValueError, match=r"vqa_v2 read images, but model.text_model='not-downloaded/anywhere'"):
        Run.setup(config, ["vqa_v2"])


COLA_DEV = [["gj04", "1", "", "The book was read."], ["gj04", "0", "*", "Book the was read."],
            ["gj04", "1", "", "She sang."], ["gj04", "0", "*", "Sang she the."],
            ["gj04", "1", "", "They left early."], ["gj04", "0", "*", "Early they the left."]]


def test_released_cola_checkpoint_evaluates_on_a_t5_folder_from_the_command_line(shared_dir, tmp_path, no_image_encoder):
    """`dept-vl evaluate` with model.text_model=<a folder in the hub format> and format reference: the CLI builds the
    text model alone, loads the imported checkpoint onto it and predicts exactly what the library does by hand."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from dept_vl.cli import main as cli_main
    from dept_vl.dept import from_official
    from dept_vl.tasks import get_task

    release = shared_dir / "assets" / "official-dept" / "cola"
    tokenizer_dir = shared_dir / "assets" / "t5-tokenizer"
    if not release.is_dir() or not tokenizer_dir.is_dir():
        pytest.skip("the released CoLA checkpoint or the T5 tokenizer is not beside this checkout")
    _t5_folder(tmp_path / "t5-base", tokenizer_dir, d_model=768, vocab_size=32128)  # t5-base's widths, one tiny layer
    write_tsv(tmp_path / "glue" / "CoLA" / "dev.tsv", None, COLA_DEV)
    assert cli_main(["import-official", str(release), "--out", str(tmp_path / "cola")]) == 0
    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--adapter", str(tmp_path / "cola"), "--task", "cola", "--split", "test", "--out", str(out),
                     f"model.text_model={tmp_path / 't5-base'}", "data.format=reference", f"data.data_dir={tmp_path / 'glue'}",
                     "eval.max_new_tokens=3", "model.dtype=float32"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    examples = get_task("cola").load("test", data_dir=str(tmp_path / "glue"), fmt="reference")
    assert result["examples"] == len(examples) == 3 and result["method"] == "dept"  # the reference rule: half of dev
    assert [r["input"] for r in rows] == [e.input_text for e in examples]
    assert all(e.input_text.startswith("cola sentence: ") and e.target_text in ("0", "1") for e in examples)

    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "t5-base"))
    model = from_official(T5ForConditionalGeneration.from_pretrained(str(tmp_path / "t5-base")).eval(), release)
    batch = tokenizer([e.input_text for e in examples], return_tensors="pt", padding=True)
    expected = tokenizer.batch_decode(model.generate(**batch, max_new_tokens=3, num_beams=1), skip_special_tokens=True)
    assert [r["prediction"] for r in rows] == expected


def test_vl_adapter_recipe_loads_with_its_traced_settings():
    from dept_vl import budget
    from dept_vl.tasks import get_task

    cfg = load_config("vl_adapter_multitask")
    assert [get_task(t).name for t in cfg.data.tasks] == ["vqa_v2_karpathy_vlt5", "gqa", "nlvr2", "coco_captions"]
    spec = resolve_spec(*cfg.model.build_args()[:1], **cfg.model.build_args()[1])
    assert (spec.image_encoder, spec.pool_size, spec.pool_mode, spec.image_preprocessing) == \
           ("resnet101_clip.openai", 6, "max", "vl-adapter")
    assert (cfg.eval.num_beams, cfg.train.max_grad_norm, cfg.dept.lr_prompt, cfg.data.max_target_length) == (5, 5.0, 1e-3, 40)
    assert cfg.train.warmup_steps == cfg.train.max_steps // 10  # VL-Adapter's warmup ratio 0.1
    m, r, s = cfg.dept.num_virtual_tokens, cfg.dept.rank, cfg.dept.max_length
    assert (m, r) == budget(40, 768, s)[0] and m * 768 + s * r + r * 768 <= 40 * 768  # VL-Adapter's 40-token budget

"""Adapter save/load, atomic writes, and the import of checkpoints released with the paper."""

from __future__ import annotations

import json

import pytest
import torch

from dept_vl import DePTConfig, DePTModel
from dept_vl.dept import from_official
from dept_vl.cli import main as cli_main
from tests.conftest import tiny_t5
from tests.test_dept_core import make, mixed_batch


def test_round_trip_gives_identical_tensors_and_generations(tmp_path):
    model = make(trainable_modules=["lm_head"])
    model.save_pretrained(tmp_path / "adapter")
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    fresh = tiny_t5()
    with torch.no_grad():
        fresh.lm_head.weight.add_(1.0)  # the trained module must come from the adapter
    loaded = DePTModel.from_pretrained(fresh, tmp_path / "adapter")
    for name, value in model.adapter_state_dict().items():
        assert torch.equal(loaded.adapter_state_dict()[name], value), name
    assert not any(p.requires_grad for p in loaded.parameters())
    ids, mask, _ = mixed_batch()
    kwargs = dict(max_new_tokens=5, num_beams=2, output_scores=True, return_dict_in_generate=True)
    a = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    b = loaded.generate(input_ids=ids, attention_mask=mask, **kwargs)
    assert torch.equal(a.sequences, b.sequences)
    torch.testing.assert_close(torch.stack(a.scores), torch.stack(b.scores))
    trainable = DePTModel.from_pretrained(tiny_t5(), tmp_path / "adapter", is_trainable=True)
    assert set(trainable.trainable_parameters()) >= {"prompt", "lowrank_A", "lowrank_B"}


def test_saved_files_hold_only_the_adapter_and_the_base_facts(tmp_path):
    from safetensors.torch import load_file

    make().save_pretrained(tmp_path)
    assert set(load_file(tmp_path / "adapter_model.safetensors")) == {"prompt", "lowrank_A", "lowrank_B"}
    record = json.loads((tmp_path / "adapter_config.json").read_text())["dept_vl"]
    assert record["method"] == "dept" and record["format_version"] == 2
    assert record["base_model"]["d_model"] == 64 and record["base_model"]["vocab_size"] == 120
    assert record["settings"]["rank"] == 4


def test_adapters_of_format_version_1_still_load(tmp_path):
    """Folders written by dept-vl 0.1 (dept_config.json + adapter.safetensors) load unchanged."""
    from safetensors.torch import save_file

    model = make()
    save_file({k: v.contiguous() for k, v in model.adapter_state_dict().items()}, str(tmp_path / "adapter.safetensors"))
    (tmp_path / "dept_config.json").write_text(json.dumps({
        "format": "dept-vl-adapter", "format_version": 1, "dept": model.dept_config.to_dict(),
        "base_model": {"d_model": 64, "vocab_size": 120}}))
    loaded = DePTModel.from_pretrained(tiny_t5(), tmp_path)
    for name, value in model.adapter_state_dict().items():
        assert torch.equal(loaded.adapter_state_dict()[name], value), name


@pytest.mark.parametrize("kwargs, key", [({"d_model": 32}, "d_model"), ({"vocab_size": 99}, "vocab_size")])
def test_loading_onto_another_base_fails_clearly(tmp_path, kwargs, key):
    make().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"{key}=.*this base model has {key}="):
        DePTModel.from_pretrained(tiny_t5(**kwargs), tmp_path)


def test_interrupted_save_keeps_the_previous_adapter(tmp_path, monkeypatch):
    import safetensors.torch

    model = make()
    model.save_pretrained(tmp_path)
    before = (tmp_path / "adapter_model.safetensors").read_bytes()
    with torch.no_grad():
        model.prompt.add_(1.0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    DePTModel.from_pretrained(tiny_t5(), tmp_path)


def test_missing_adapter_files_name_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected adapter_config.json and adapter_model.safetensors"):
        DePTModel.from_pretrained(tiny_t5(), tmp_path)


def _t5_base_shaped():
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=32128, d_model=768, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=8,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5ForConditionalGeneration(config).eval()


def test_official_cola_checkpoint_imports_with_its_shapes_and_values(shared_dir, tmp_path):
    folder = shared_dir / "assets" / "official-dept" / "cola"
    raw = torch.load(folder / "adapter_model.bin", map_location="cpu", weights_only=True)
    model = from_official(_t5_base_shaped(), folder)
    cfg = model.dept_config
    assert (cfg.num_virtual_tokens, cfg.rank, cfg.max_length, cfg.alpha) == (80, 15, 256, 8.0)
    assert model.prompt.shape == (80, 768) and model.lowrank_A.shape == (256, 15) and model.lowrank_B.shape == (15, 768)
    assert torch.equal(model.prompt.detach(), raw["prompt_embeddings"])
    assert torch.equal(model.lowrank_A.detach(), raw["prompt_encoder.lora_embedding_A"])
    assert torch.equal(model.lowrank_B.detach(), raw["prompt_encoder.lora_embedding_B"])
    ids = torch.randint(3, 32000, (2, 12))
    assert model(input_ids=ids, labels=ids[:, :2].contiguous()).logits.shape == (2, 2, 32128)

    assert cli_main(["import-official", str(folder), "--out", str(tmp_path / "cola")]) == 0
    converted = DePTModel.from_pretrained(_t5_base_shaped(), tmp_path / "cola")
    assert torch.equal(converted.lowrank_B.detach(), raw["prompt_encoder.lora_embedding_B"])
    with pytest.raises(ValueError, match="d_model=768.*d_model=64"):
        from_official(tiny_t5(), folder)


def test_prompt_only_checkpoint_imports_with_lowrank_at_init_and_a_warning(tmp_path):
    config = {"peft_type": "PROMPT_TUNING_LORA", "num_virtual_tokens": 6, "r": 3, "max_length": 16,
              "lora_alpha": 8, "token_dim": 64, "prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "hello"}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    prompt = torch.randn(6, 64)
    torch.save({"prompt_embeddings": prompt}, tmp_path / "adapter_model.bin")
    with pytest.warns(UserWarning, match="prompt_embeddings only"):
        model = from_official(tiny_t5(), tmp_path)
    assert torch.equal(model.prompt.detach(), prompt)
    assert torch.count_nonzero(model.lowrank_B) == 0 and model.lowrank_A.abs().sum() > 0


def test_foreign_pickle_is_loaded_without_running_code(tmp_path):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    config = {"peft_type": "PROMPT_TUNING_LORA", "num_virtual_tokens": 2, "r": 1, "max_length": 4, "token_dim": 64}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    torch.save({"prompt_embeddings": Evil()}, tmp_path / "adapter_model.bin")
    with pytest.raises(Exception):
        from_official(tiny_t5(), tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown DePTConfig keys \\['rnak'\\]"):
        DePTConfig.from_dict({"rnak": 3})

"""transformers conventions on dept-vl's models: get_base_model, config, generation_config, disable_adapter,
an adapter-only state dict, and Seq2SeqTrainer (two learning rates, checkpoints that hold the adapter only)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from dept_vl.config import FullConfig, LoRAConfig, RunConfig
from dept_vl.dept import DePTConfig, DePTModel
from dept_vl.methods import get_method
from dept_vl.models import build_vl_model
from tests.conftest import tiny_t5

ROOT = Path(__file__).resolve().parents[1]
WORDS = "what is the a red blue green circle square yes no".split()


def _ids(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (2, 7), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return ids, mask, torch.randint(3, 100, (2, 3), generator=gen)


def _perturb(model) -> None:
    with torch.no_grad():
        for i, p in enumerate(model.trainable_parameters().values()):
            p.add_(0.05 * (i + 1))


def _config() -> RunConfig:
    return RunConfig(dept=DePTConfig(num_virtual_tokens=4, rank=2, max_length=16), lora=LoRAConfig(r=2), full=FullConfig())


def test_base_model_config_and_generation_config_pass_through():
    base = tiny_t5()
    model = DePTModel(base, DePTConfig(num_virtual_tokens=4, rank=2, max_length=16))
    assert model.get_base_model() is base and model.config is base.config
    assert model.generation_config is base.generation_config
    config = type(base.generation_config)(max_new_tokens=2, decoder_start_token_id=0, eos_token_id=999, pad_token_id=0)
    model.generation_config = config  # as Seq2SeqTrainer does with args.generation_config
    assert base.generation_config is config
    ids, mask, _ = _ids()
    assert model.generate(input_ids=ids, attention_mask=mask).shape == (2, 3)  # start token + max_new_tokens
    vl = build_vl_model("tiny", vocabulary=WORDS)
    wrapped = DePTModel(vl, DePTConfig(num_virtual_tokens=2, rank=2, max_length=16))
    assert wrapped.generation_config is vl.text_model.generation_config and wrapped.config is vl.config


@pytest.mark.parametrize("name", ["dept", "prompt_tuning", "lora"])
def test_disable_adapter_computes_exactly_the_base(name):
    ids, mask, labels = _ids()
    with torch.no_grad():
        plain = tiny_t5()(input_ids=ids, attention_mask=mask, labels=labels).logits
        plain_generated = tiny_t5().generate(input_ids=ids, attention_mask=mask, max_new_tokens=4)
    model = get_method(name).build(_config(), tiny_t5()).eval()
    _perturb(model)
    with torch.no_grad():
        adapted = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        assert not torch.allclose(adapted, plain)
        with model.disable_adapter():
            assert torch.equal(model(input_ids=ids, attention_mask=mask, labels=labels).logits, plain)
            assert torch.equal(model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4), plain_generated)
        assert torch.equal(model(input_ids=ids, attention_mask=mask, labels=labels).logits, adapted)  # back on exit


def test_disable_adapter_restores_the_base_weights_of_trained_modules():
    torch.manual_seed(0)
    base = build_vl_model("tiny", vocabulary=WORDS).eval()
    tok = base.tokenizer
    enc = tok(["what is red ?", "is the circle blue ?"], return_tensors="pt", padding=True)
    pixels = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    batch = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "pixel_values": pixels,
             "labels": tok(["yes", "no"], return_tensors="pt").input_ids}
    with torch.no_grad():
        plain = base(**batch).logits
    model = DePTModel(base, DePTConfig(num_virtual_tokens=2, rank=2, max_length=16, trainable_modules=["visual_projection"]))
    _perturb(model)  # the prompt, A, B and the base's own visual projection
    trained_projection = base.visual_projection.proj.weight.detach().clone()
    with torch.no_grad():
        adapted = model(**batch).logits
        with model.disable_adapter():
            assert torch.equal(model(**batch).logits, plain)
        assert torch.equal(base.visual_projection.proj.weight, trained_projection)
        assert torch.equal(model(**batch).logits, adapted)


def test_full_fine_tuning_has_no_frozen_base_to_return_to():
    model = get_method("full").build(_config(), tiny_t5())
    with pytest.raises(ValueError, match="method 'full' trains the base model's own weights"):
        with model.disable_adapter():
            pass


@pytest.mark.parametrize("name", ["dept", "lora", "full"])
def test_state_dict_is_the_adapter_and_saves_as_safetensors(tmp_path, name):
    from safetensors.torch import load_file, save_file

    model = get_method(name).build(_config(), tiny_t5()).eval()
    _perturb(model)
    state = model.state_dict()
    assert set(state) == set(model.adapter_state_names())
    if name == "dept":
        assert list(state) == ["prompt", "lowrank_A", "lowrank_B"]
    if name == "lora":
        assert state and all(".lora_A." in k or ".lora_B." in k for k in state)
    save_file(state, tmp_path / "model.safetensors")  # the Trainer's save: T5's tied embeddings crashed it
    fresh = get_method(name).build(_config(), tiny_t5()).eval()
    result = fresh.load_state_dict(load_file(tmp_path / "model.safetensors"))
    assert result.missing_keys == [] and result.unexpected_keys == []
    ids, mask, labels = _ids(1)
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids, attention_mask=mask, labels=labels).logits,
                           model(input_ids=ids, attention_mask=mask, labels=labels).logits)


def test_load_state_dict_names_missing_adapter_tensors():
    model = DePTModel(tiny_t5(), DePTConfig(num_virtual_tokens=4, rank=2, max_length=16))
    state = model.state_dict()
    del state["lowrank_B"]
    with pytest.raises(RuntimeError, match=r"missing adapter tensors \['lowrank_B'\]"):
        model.load_state_dict(state)
    assert model.load_state_dict(state, strict=False).missing_keys == ["lowrank_B"]


def _example():
    spec = importlib.util.spec_from_file_location("trainer_seq2seq", ROOT / "examples" / "trainer_seq2seq.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seq2seq_trainer_example_trains_two_groups_and_checkpoints_the_adapter_only(tmp_path):
    from safetensors.torch import load_file

    example = _example()
    base, tokenizer = example.tiny_t5_and_tokenizer()
    untouched = {k: v.clone() for k, v in base.state_dict().items()}
    config = DePTConfig(num_virtual_tokens=4, rank=2, max_length=16, init="vocab", lr_prompt=0.3, lr_lowrank=1e-2)
    model = DePTModel(base, config, tokenizer)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = example.build_trainer(model, tokenizer, tmp_path, max_steps=4)
    trainer.train()
    assert [(g["name"], g["initial_lr"]) for g in trainer.optimizer.param_groups] == [("prompt", 0.3), ("lowrank", 1e-2)]
    assert all(not torch.equal(model.state_dict()[k], start[k]) for k in ("prompt", "lowrank_B"))
    assert all(torch.equal(t, untouched[k]) for k, t in base.state_dict().items())  # the base did not train

    checkpoint = tmp_path / "checkpoint-4"
    saved = load_file(checkpoint / "model.safetensors")
    assert set(saved) == {"prompt", "lowrank_A", "lowrank_B"}
    assert all(torch.equal(saved[k], model.state_dict()[k]) for k in saved)
    loaded = DePTModel.from_pretrained(example.tiny_t5_and_tokenizer()[0], checkpoint)  # the callback's adapter folder
    ids = tokenizer(["colour of the red circle ?"], return_tensors="pt").input_ids
    with torch.no_grad():
        model.eval()
        assert torch.equal(loaded(input_ids=ids, labels=ids[:, :2]).logits, model(input_ids=ids, labels=ids[:, :2]).logits)

    # resuming reads model.safetensors back through load_state_dict
    other = DePTModel(example.tiny_t5_and_tokenizer()[0], config, tokenizer)
    example.build_trainer(other, tokenizer, tmp_path / "resumed", max_steps=4).train(resume_from_checkpoint=str(checkpoint))
    assert all(torch.equal(other.state_dict()[k], saved[k]) for k in saved)


def test_peft_plugin_hook_still_refuses_a_method_outside_its_enum():
    """The README says why DePT is not a registered peft method: ``register_peft_method`` only accepts names that
    are already members of peft's fixed ``PeftType`` enum. If peft lifts that, this fails: revisit the README."""
    from peft.utils import register_peft_method

    with pytest.raises(ValueError, match="Unknown PEFT type DEPT"):
        register_peft_method(name="dept", config_cls=DePTConfig, model_cls=DePTModel)


@pytest.mark.parametrize("name", ["dept", "lora"])
def test_print_trainable_parameters_counts_the_adapter(name, capsys):
    model = get_method(name).build(_config(), tiny_t5())
    trainable = sum(p.numel() for p in model.trainable_parameters().values())
    assert trainable == (4 * 64 + 2 * (16 + 64) if name == "dept" else sum(p.numel() for p in model.state_dict().values()))
    model.print_trainable_parameters()
    assert capsys.readouterr().out.startswith(f"trainable params: {trainable:,d} || all params: ")

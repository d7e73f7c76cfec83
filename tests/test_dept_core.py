"""DePTModel against independent implementations of the reference formula, on tiny models."""

from __future__ import annotations

import math

import pytest
import torch

from dept_vl import DePTConfig, DePTModel, budget
from tests.conftest import TINY_BASES, tiny_t5

M, R, S = 5, 4, 16


def make(base=None, **overrides):
    base = base if base is not None else tiny_t5()
    cfg = DePTConfig(**{"num_virtual_tokens": M, "rank": R, "max_length": S, **overrides})
    model = DePTModel(base, cfg)
    if model.lowrank_B is not None:  # B starts at zero; give it content so the offset matters
        with torch.no_grad():
            model.lowrank_B.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return model


def mixed_batch(lengths=(7, 3, 11), vocab=120, pad=0, width=None):
    gen = torch.Generator().manual_seed(0)
    width = width or max(lengths)
    ids = torch.full((len(lengths), width), pad)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(3, vocab, (n,), generator=gen)
        ids[row, n - 1] = 1  # eos
        mask[row, :n] = 1
    labels = torch.randint(3, vocab, (len(lengths), 4), generator=gen)
    return ids, mask, labels


def reference_forward(model: DePTModel, ids, mask, labels):
    """The reference code's computation, written out: embed + alpha/sqrt(r) * A@B, prompt in front, ones in the mask."""
    base, cfg = model.base_model, model.dept_config
    x = base.get_input_embeddings()(ids)
    if cfg.rank:
        x = x + (cfg.alpha / math.sqrt(cfg.rank)) * (model.lowrank_A.detach() @ model.lowrank_B.detach())[: ids.shape[1]]
    x = torch.cat([model.prompt.detach().expand(ids.shape[0], -1, -1), x], dim=1)
    full_mask = torch.cat([torch.ones(ids.shape[0], cfg.num_virtual_tokens, dtype=mask.dtype), mask], dim=1)
    return base(inputs_embeds=x, attention_mask=full_mask, labels=labels)


def test_padded_to_s_matches_reference_formula():
    model = make()
    ids, mask, labels = mixed_batch(width=S)
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, labels=labels)
        ref = reference_forward(model, ids, mask, labels)
    torch.testing.assert_close(ours.logits, ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.loss, ref.loss, atol=1e-5, rtol=1e-5)


def test_dynamic_padding_equals_padding_to_s():
    model = make()
    ids, mask, labels = mixed_batch()
    ids_s, mask_s, _ = mixed_batch(width=S)
    assert torch.equal(ids_s[:, : ids.shape[1]], ids)
    with torch.no_grad():
        short = model(input_ids=ids, attention_mask=mask, labels=labels)
        padded = model(input_ids=ids_s, attention_mask=mask_s, labels=labels)
    torch.testing.assert_close(short.logits, padded.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short.loss, padded.loss, atol=1e-5, rtol=1e-5)


def test_rank_zero_is_vanilla_prompt_tuning_as_peft_computes_it():
    from peft import PromptTuningConfig, TaskType, get_peft_model

    model = make(rank=0)
    assert model.lowrank_A is None and model.lowrank_B is None
    assert set(model.trainable_parameters()) == {"prompt"}
    ids, mask, labels = mixed_batch()
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, labels=labels)
    peft_model = get_peft_model(tiny_t5(), PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=M, num_transformer_submodules=1))
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(model.prompt)
        theirs = peft_model(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=1e-5)


def test_only_dept_parameters_train_and_groups_carry_their_lr_and_decay():
    model = make(lr_prompt=0.3, lr_lowrank=1e-3, weight_decay=0.1)
    base_before = {k: v.clone() for k, v in model.base_model.state_dict().items()}
    adapter_before = {k: v.clone() for k, v in model.adapter_state_dict().items()}
    optimizer = torch.optim.AdamW(model.param_groups())
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
        ("prompt", 0.3, 0.1), ("lowrank", 1e-3, 0.1)]
    ids, mask, labels = mixed_batch()
    model.train()
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"prompt", "lowrank_A", "lowrank_B"}
    optimizer.step()
    for key, value in model.base_model.state_dict().items():
        assert torch.equal(value, base_before[key]), key
    for key, value in model.adapter_state_dict().items():
        assert not torch.equal(value, adapter_before[key]), key


def test_weight_decay_is_really_applied():
    model = make(lr_prompt=0.5, weight_decay=0.2)
    optimizer = torch.optim.AdamW(model.param_groups())
    before = model.prompt.detach().clone()
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)  # Adam's update is 0, only decoupled decay moves the weights
    optimizer.step()
    torch.testing.assert_close(model.prompt.detach(), before * (1 - 0.5 * 0.2))


def test_trainable_modules_get_a_third_group():
    model = make(trainable_modules=["lm_head"], lr_modules=5e-4)
    groups = model.param_groups()
    assert [g["name"] for g in groups] == ["prompt", "lowrank", "modules"]
    assert groups[2]["lr"] == 5e-4 and all(p.requires_grad for p in groups[2]["params"])
    assert any(k.startswith("modules.lm_head.") for k in model.adapter_state_dict())
    with pytest.raises(ValueError, match="no submodule 'lm_hed'.*lm_head"):
        make(trainable_modules=["lm_hed"])


@pytest.mark.parametrize("arch", sorted(TINY_BASES))
def test_every_encoder_decoder_trains_and_generates(arch):
    model = make(TINY_BASES[arch]())
    ids, mask, labels = mixed_batch()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (3, 4, 120) and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.lowrank_B.grad is not None and model.lowrank_B.grad.abs().sum() > 0
    generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, num_beams=3, length_penalty=0.6)
    assert generated.shape[0] == 3 and generated.shape[1] <= 6 + 1


def test_generate_uses_the_dept_encoder_input():
    model = make()
    ids, mask, _ = mixed_batch()
    opts = dict(max_new_tokens=4, do_sample=False, output_scores=True, return_dict_in_generate=True)
    ours = model.generate(input_ids=ids, attention_mask=mask, **opts)
    cfg, base = model.dept_config, model.base_model
    x = base.get_input_embeddings()(ids) + cfg.scale * (model.lowrank_A @ model.lowrank_B).detach()[: ids.shape[1]]
    x = torch.cat([model.prompt.detach().expand(3, -1, -1), x], dim=1)
    full_mask = torch.cat([torch.ones(3, M, dtype=mask.dtype), mask], dim=1)
    ref = base.generate(inputs_embeds=x, attention_mask=full_mask, **opts)
    plain = base.generate(input_ids=ids, attention_mask=mask, **opts)
    torch.testing.assert_close(torch.stack(ours.scores), torch.stack(ref.scores), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(torch.stack(ours.scores[:1]), torch.stack(plain.scores[:1]), atol=1e-3)


def test_input_longer_than_max_length_is_a_clear_error():
    model = make()
    ids = torch.randint(3, 100, (1, S + 4))
    with pytest.raises(ValueError, match=f"input length {S + 4} exceeds max_length {S}"):
        model(input_ids=ids)


def test_bf16_base_keeps_dept_parameters_in_float32():
    model = make(base=tiny_t5().to(torch.bfloat16))
    ids, mask, labels = mixed_batch()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    for name, p in model.trainable_parameters().items():
        assert p.dtype == torch.float32 and p.grad.dtype == torch.float32, name


def test_text_init_uses_the_tokens_embeddings():
    class WordTokenizer:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [10 + len(w) for w in text.split()]}

    base = tiny_t5()
    model = DePTModel(base, DePTConfig(num_virtual_tokens=5, rank=2, max_length=8, init="text", init_text="ab abc a"), WordTokenizer())
    expected_ids = torch.tensor([12, 13, 11, 12, 13])
    torch.testing.assert_close(model.prompt.detach(), base.get_input_embeddings().weight[expected_ids].detach())
    with pytest.raises(ValueError, match="needs a tokenizer"):
        DePTModel(base, DePTConfig(num_virtual_tokens=5, rank=2, init="text", init_text="x"))


def test_lowrank_init_matches_the_paper():
    model = make()
    fresh = DePTModel(tiny_t5(), DePTConfig(num_virtual_tokens=M, rank=R, max_length=S))
    assert torch.count_nonzero(fresh.lowrank_B) == 0
    bound = 1.0 / math.sqrt(R)  # kaiming-uniform with a=sqrt(5): bound = sqrt(6 / ((1 + 5) * fan_in))
    assert fresh.lowrank_A.abs().max() <= bound and fresh.lowrank_A.abs().max() > 0.8 * bound
    assert model.dept_config.scale == pytest.approx(8.0 / math.sqrt(R))


@pytest.mark.parametrize(
    "kwargs, field",
    [({"rank": -1}, "rank"), ({"num_virtual_tokens": 0, "rank": 0}, "num_virtual_tokens"),
     ({"init": "zeros"}, "init"), ({"init": "text"}, "init_text"), ({"lr_prompt": 0}, "lr_prompt"),
     ({"max_length": 0}, "max_length"), ({"weight_decay": -1.0}, "weight_decay")],
)
def test_bad_configs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"DePTConfig.{field}"):
        DePTConfig(**kwargs)


def test_budget_lists_pairs_within_the_prompt_tuning_budget():
    pairs = budget(100, 768, 256)
    assert {(60, 30), (40, 45), (80, 15)} <= set(pairs)
    for m, r in pairs:
        assert m * 768 + 256 * r + r * 768 <= 100 * 768
    slack = [100 * 768 - (m * 768 + 256 * r + r * 768) for m, r in pairs]
    assert slack == sorted(slack)
    assert budget(100, 768, 512)[0:50].count((60, 24)) == 1 or (60, 24) in budget(100, 768, 512)


def reference_init_ids(token_ids: list[int], m: int) -> list[int]:
    """The reference code's prompt init ids (its peft fork): repeat tokenizer(init_text) ids, cut to m."""
    if len(token_ids) < m:
        token_ids = token_ids * math.ceil(m / len(token_ids))
    return token_ids[:m]


def test_text_init_keeps_the_eos_token_as_the_reference_does():
    from dept_vl.models import word_level_tokenizer

    tok = word_level_tokenizer(["hello", "world", "classify", "this"])
    text = "classify this hello world"
    reference = reference_init_ids(tok(text)["input_ids"], 11)  # the reference code's call: special tokens kept
    assert reference.count(tok.eos_token_id) == 2
    base = tiny_t5()
    weight = base.get_input_embeddings().weight.detach()
    model = DePTModel(base, DePTConfig(num_virtual_tokens=11, rank=2, max_length=8, init="text", init_text=text), tok)
    assert model.dept_config.init_text_eos is True
    torch.testing.assert_close(model.prompt.detach(), weight[torch.tensor(reference)])
    old = DePTModel(base, DePTConfig(num_virtual_tokens=11, rank=2, max_length=8, init="text", init_text=text,
                                     init_text_eos=False), tok)
    without_eos = reference_init_ids(tok(text, add_special_tokens=False)["input_ids"], 11)
    assert tok.eos_token_id not in without_eos
    torch.testing.assert_close(old.prompt.detach(), weight[torch.tensor(without_eos)])


def test_text_init_equals_the_reference_with_the_t5_tokenizer(shared_dir):
    from transformers import AutoTokenizer

    folder = shared_dir / "assets" / "t5-tokenizer"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not present")
    tok = AutoTokenizer.from_pretrained(str(folder))
    text = "Classify this text and answer with the label:"
    ids = tok(text)["input_ids"]
    assert ids[-1] == tok.eos_token_id
    base = tiny_t5(vocab_size=len(tok))
    weight = base.get_input_embeddings().weight.detach()
    model = DePTModel(base, DePTConfig(num_virtual_tokens=80, rank=2, max_length=8, init="text", init_text=text), tok)
    reference = reference_init_ids(ids, 80)
    torch.testing.assert_close(model.prompt.detach(), weight[torch.tensor(reference)])
    old = DePTModel(base, DePTConfig(num_virtual_tokens=80, rank=2, max_length=8, init="text", init_text=text,
                                     init_text_eos=False), tok)
    same = [bool(torch.equal(a, b)) for a, b in zip(old.prompt.detach(), weight[torch.tensor(reference)])]
    assert same[: len(ids) - 1] == [True] * (len(ids) - 1) and not all(same)  # without eos, rows drift apart


def test_init_text_eos_must_be_a_bool():
    with pytest.raises(ValueError, match="DePTConfig.init_text_eos"):
        DePTConfig(init="text", init_text="x", init_text_eos="no")
    assert DePTConfig().init_text_eos is True

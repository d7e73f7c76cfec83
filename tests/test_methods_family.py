"""ADePT, ULPT, ATTEMPT and MPT against their papers' formulas written out here with plain torch, on a tiny T5:
the encoder input each builds, its initialisation, what trains, and its adapter folder read back."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dept_vl.config import AttemptConfig, MPTConfig, RunConfig, ULPTConfig
from dept_vl.dept import DePTConfig
from dept_vl.methods import get_method, load_adapter_model
from tests.conftest import tiny_t5

D = 64  # tiny_t5's width


def batch(lengths=(7, 3, 5), seed=0):
    """Right-padded ids (pad 0, eos 1), their mask and labels."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(3, 120, (n,), generator=gen)
        ids[row, n - 1] = 1
        mask[row, :n] = 1
    return ids, mask, torch.randint(3, 120, (len(lengths), 3), generator=gen)


def encoder_logits(base, embeds, mask, labels):
    """The frozen base on a given encoder input (what every method must reduce to)."""
    return base(inputs_embeds=embeds, attention_mask=mask, labels=labels).logits


def with_prompt(prompt, x, mask):
    prompt = prompt.expand(x.shape[0], -1, -1) if prompt.dim() == 2 else prompt
    return torch.cat([prompt, x], 1), torch.cat([torch.ones(x.shape[0], prompt.shape[1], dtype=mask.dtype), mask], 1)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Two prompt-tuning adapters (6 tokens each, different prompts) for ATTEMPT."""
    folders = []
    for seed in (0, 1):
        config = RunConfig(dept=DePTConfig(num_virtual_tokens=6, rank=0, seed=seed))
        folder = tmp_path_factory.mktemp(f"pt{seed}")
        get_method("prompt_tuning").build(config, tiny_t5()).save_pretrained(folder)
        folders.append(str(folder))
    return folders


def config_for(name, sources=(), **dept):
    settings = {"num_virtual_tokens": 4, "rank": 3, "seed": 0, **dept}
    return RunConfig(dept=DePTConfig(**settings), ulpt=ULPTConfig(), attempt=AttemptConfig(sources=list(sources)),
                     mpt=MPTConfig(tasks=["a", "b"], rank=2))


def build(name, sources=(), **dept):
    return get_method(name).build(config_for(name, sources, **dept), tiny_t5())


def shake(model, seed=3):
    """Give every trained tensor other values (several start at zero or one)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))


# ----------------------------------------------------------------------------------------------- the formulas


def test_adept_adds_a_token_shared_network_to_each_embedding():
    model = build("adept")
    shake(model)
    ids, mask, labels = batch()
    base = model.base_model
    x = base.get_input_embeddings()(ids)
    w1, b1, w2, b2 = (getattr(model, n).detach() for n in ("offset_W1", "offset_b1", "offset_W2", "offset_b2"))
    expected = encoder_logits(base, *with_prompt(model.prompt.detach(), x + F.relu(x @ w1 + b1) @ w2 + b2, mask), labels)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).logits, expected)
    # the offset follows the token, not the position: one token id at two positions gets one offset
    embeds, _ = model.prepare_inputs(torch.tensor([[7, 9, 7]]))
    offset = embeds[0, 4:] - base.get_input_embeddings()(torch.tensor([7, 9, 7]))
    torch.testing.assert_close(offset[0], offset[2])
    assert not torch.allclose(offset[0], offset[1])


def test_adept_starts_with_a_zero_offset_and_the_public_codes_init():
    model = build("adept")
    ids, mask, labels = batch()
    x = model.base_model.get_input_embeddings()(ids)
    expected = encoder_logits(model.base_model, *with_prompt(model.prompt.detach(), x, mask), labels)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).logits, expected, rtol=0, atol=0)
    assert model.offset_W2.abs().sum() == 0 and model.offset_b1.abs().sum() == 0 and model.offset_b2.abs().sum() == 0
    bound = 1 / math.sqrt(3)  # kaiming-uniform, a = sqrt(5), on a d x r tensor: fan_in = r
    assert model.offset_W1.abs().max() <= bound and model.offset_W1.abs().max() > 0.9 * bound


def test_ulpt_up_projects_a_low_dimensional_prompt_with_scale_and_shift():
    model = build("ulpt")
    shake(model)
    ids, mask, labels = batch()
    z, p, s, b = model.prompt_low.detach(), model.projection, model.scale.detach(), model.shift.detach()
    prompt = s * (z @ p) + b
    x = model.base_model.get_input_embeddings()(ids)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).logits,
                                   encoder_logits(model.base_model, *with_prompt(prompt, x, mask), labels))
    assert not model.projection.requires_grad and "projection" not in model.trainable_parameters()


def test_ulpt_init_and_projection_regenerate_from_the_seed():
    model = build("ulpt", num_virtual_tokens=50, rank=32)
    assert torch.equal(model.scale, torch.ones(D)) and torch.equal(model.shift, torch.zeros(D))
    assert abs(model.prompt_low.std().item() - 1.0) < 0.05  # z ~ N(0, 1), as nn.Embedding's default
    assert abs(model.projection.std().item() - math.sqrt(2 / (32 + D))) < 0.01  # N(0, 2 / (r + d))
    uniform = get_method("ulpt").build(RunConfig(dept=DePTConfig(num_virtual_tokens=50, rank=32), ulpt=ULPTConfig("uniform")), tiny_t5())
    assert uniform.projection.abs().max() <= math.sqrt(6 / (32 + D))
    assert torch.equal(build("ulpt", num_virtual_tokens=50, rank=32).projection, model.projection)
    assert not torch.equal(build("ulpt", num_virtual_tokens=50, rank=32, seed=1).projection, model.projection)


def test_attempt_mixes_source_prompts_by_attention_over_the_max_pooled_input(sources):
    model = build("attempt", sources)
    shake(model)
    ids, mask, labels = batch()
    x = model.base_model.get_input_embeddings()(ids)
    pooled = torch.stack([x[i, : int(mask[i].sum())].max(0).values for i in range(len(ids))])  # real tokens only
    h = F.layer_norm(F.silu(pooled @ model.attn_down.detach()) @ model.attn_up.detach(), (D,))
    p0 = model.prompt.detach()
    p_sources = [load_adapter_model(tiny_t5(), s).prompt.detach() for s in sources]
    every = torch.stack([*p_sources, p0])  # j = 1..t, then the target j = 0
    weights = torch.softmax(h @ every.max(1).values.T / (D * math.e), dim=-1)
    instance = p0 + torch.einsum("bj,jmd->bmd", weights, every)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).logits,
                                   encoder_logits(model.base_model, *with_prompt(instance, x, mask), labels))
    assert weights.std(0).max() > 0  # the mixture depends on the input


def test_attempt_starts_from_the_first_source_and_padding_changes_nothing(sources):
    model = build("attempt", sources)
    first = load_adapter_model(tiny_t5(), sources[0]).prompt
    assert torch.equal(model.prompt.detach(), first) and model.dept_config.num_virtual_tokens == 6
    assert set(model.trainable_parameters()) == {"prompt", "attn_down", "attn_up"}
    ids, mask, _ = batch((3,))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], 1), torch.cat([mask, torch.zeros(1, 5, dtype=torch.long)], 1)
    torch.testing.assert_close(model.prepare_inputs(*padded)[0][0, :9], model.prepare_inputs(ids, mask)[0][0])


def test_mpt_multiplies_the_shared_prompt_by_each_rows_task_factors():
    model = build("mpt")
    shake(model)
    ids, mask, labels = batch()
    tasks = torch.tensor([1, 0, 1])
    p, u, v = model.prompt_embeddings.detach(), model.prefix_task_cols.detach(), model.prefix_task_rows.detach()
    prompts = torch.stack([p * (u[k] @ v[k]) for k in tasks.tolist()])
    x = model.base_model.get_input_embeddings()(ids)
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=tasks).logits
        torch.testing.assert_close(ours, encoder_logits(model.base_model, *with_prompt(prompts, x, mask), labels))
        with model.task_scope("b"):  # evaluation names the task instead
            torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).logits[0], ours[0])
        with model.task_scope("unseen"):  # a task without factors: the mean factors
            mean = encoder_logits(model.base_model, *with_prompt(p * (u.mean(0) @ v.mean(0)), x, mask), labels)
            torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).logits, mean)
    with pytest.raises(ValueError, match="factors for the tasks \\['a', 'b'\\], not for 'c'.*mpt.tasks=\\[c\\]"):
        model.task_inputs("c", 3)


def test_mpt_starts_at_the_shared_prompt_and_a_target_takes_the_mean_source_factors():
    model = get_method("mpt").build(RunConfig(dept=DePTConfig(num_virtual_tokens=4), mpt=MPTConfig(tasks=["a", "b"])), tiny_t5())
    torch.testing.assert_close(model.task_prompts(torch.tensor([0, 1])), model.prompt_embeddings.detach().expand(2, -1, -1),
                               rtol=0, atol=0)
    shake(model)
    target = get_method("mpt").build(RunConfig(dept=DePTConfig(num_virtual_tokens=4), mpt=MPTConfig(tasks=["t"])), tiny_t5())
    target.load_adapter_state(model.adapter_state_dict())
    assert torch.equal(target.prompt_embeddings, model.prompt_embeddings)
    torch.testing.assert_close(target.prefix_task_cols[0], model.prefix_task_cols.mean(0))
    torch.testing.assert_close(target.prefix_task_rows[0], model.prefix_task_rows.mean(0))


def test_mpt_folder_is_a_peft_folder_with_the_same_outputs(tmp_path):
    from peft import PeftModel

    model = build("mpt")
    shake(model)
    model.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="dept_vl"):
        peft_model = PeftModel.from_pretrained(tiny_t5(), tmp_path).eval()
    ids, mask, labels = batch()
    tasks = torch.tensor([1, 0, 0])
    with torch.no_grad():
        torch.testing.assert_close(peft_model(input_ids=ids, attention_mask=mask, labels=labels, task_ids=tasks).logits,
                                   model.eval()(input_ids=ids, attention_mask=mask, labels=labels, task_ids=tasks).logits)


# ----------------------------------------------------------------------------- every method: what trains, files

COUNTS = {  # trainable parameters by each method's formula, at m=4 (ATTEMPT: its sources' 6), r=3, d=64
    "adept": 4 * D + 3 * (2 * D + 1) + D, "ulpt": 4 * 3 + 2 * D, "attempt": 6 * D + 2 * D * 3, "mpt": 4 * D + 2 * 2 * (4 + D)}


@pytest.mark.parametrize("name", list(COUNTS))
def test_only_the_methods_parameters_get_gradients(name, sources):
    model = build(name, sources)
    shake(model)
    ids, mask, labels = batch()
    extra = {"task_ids": torch.tensor([0, 1, 1])} if name == "mpt" else {}
    model(input_ids=ids, attention_mask=mask, labels=labels, **extra).loss.backward()
    trained = model.trainable_parameters()
    assert sum(p.numel() for p in trained.values()) == COUNTS[name]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.values())
    assert all(p.grad is None for p in model.base_model.parameters())
    assert sorted(n for g in model.param_groups() for n, p in trained.items() if any(p is q for q in g["params"])) == sorted(trained)


@pytest.mark.parametrize("name", list(COUNTS))
def test_every_tensor_round_trips_through_the_adapter_folder(name, sources, tmp_path):
    model = build(name, sources)
    shake(model)
    model.save_pretrained(tmp_path)
    loaded = load_adapter_model(tiny_t5(), tmp_path)
    assert type(loaded) is type(model) and not loaded.training and not loaded.trainable_parameters()
    saved, back = model.adapter_state_dict(), loaded.adapter_state_dict()
    assert set(saved) == set(back) and all(torch.equal(saved[k], back[k]) for k in saved)
    assert loaded.dept_config == model.dept_config and loaded.settings == model.settings
    ids, mask, labels = batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask, labels=labels).logits,
                                   model.eval()(input_ids=ids, attention_mask=mask, labels=labels).logits, rtol=0, atol=0)
        with loaded.disable_adapter():
            torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask, labels=labels).logits,
                                       tiny_t5()(input_ids=ids, attention_mask=mask, labels=labels).logits)


def test_bad_settings_are_refused_with_the_key_and_the_fix():
    with pytest.raises(ValueError, match="attempt.sources is empty"):
        get_method("attempt").check(RunConfig())
    with pytest.raises(ValueError, match="dept.rank=0: ADePT needs"):
        get_method("adept").check(RunConfig(dept=DePTConfig(num_virtual_tokens=4, rank=0)))
    with pytest.raises(ValueError, match="dept.trainable_modules=\\['visual_projection'\\] is DePT's"):
        get_method("ulpt").check(RunConfig(dept=DePTConfig(trainable_modules=["visual_projection"])))
    with pytest.raises(ValueError, match="ulpt.projection='sphere' is unknown"):
        ULPTConfig("sphere")


def test_budget_lists_each_methods_settings_with_the_count_its_model_trains(tmp_path):
    from dept_vl.config import load_config
    from dept_vl.methods.budget import method_budget

    rows = method_budget(10, D, 16)
    assert {r.method for r in rows} == {"prompt_tuning", "dept", "adept", "ulpt", "attempt", "mpt"}
    for row in rows:
        overrides = row.settings.split() + ["mpt.tasks=[target]"]
        if row.method == "attempt":  # a source prompt of the row's length m
            m = int(overrides[0].split("=")[1])
            get_method("prompt_tuning").build(RunConfig(dept=DePTConfig(num_virtual_tokens=m, rank=0)), tiny_t5()).save_pretrained(tmp_path / f"pt{m}")
            overrides.append(f"attempt.sources=[{tmp_path / f'pt{m}'}]")
        model = get_method(row.method).build(load_config(None, overrides), tiny_t5())
        assert sum(p.numel() for p in model.trainable_parameters().values()) == row.parameters <= 10 * D, row
    assert [(r.settings, r.parameters) for r in rows if r.method == "dept"][1] == ("dept.num_virtual_tokens=6 dept.rank=3 dept.max_length=16", 6 * D + 3 * (16 + D))


def test_budget_at_t5_base_holds_the_published_settings(capsys):
    from dept_vl.cli import main

    assert main(["budget", "--methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "dept               76,800  dept.num_virtual_tokens=60 dept.rank=30 dept.max_length=256" in lines  # the DePT paper's
    assert "adept              76,051  dept.num_virtual_tokens=60 dept.rank=19" in lines  # the ADePT code's script: m=60, r=19

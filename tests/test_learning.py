"""Tests that fail when learning breaks: each compares the pipeline with something computed independently.

- the pretrain recipe's logged losses equal those of a reference loop written here from DePT's formula
  (prompt in front, ``alpha / sqrt(r) * A @ B`` on the text embeddings, labels padded with -100, AdamW in two
  groups, linear warmup and decay, clipping) on the same batches of the frozen shipped backbone;
- a target run starts from the source adapter, tensor for tensor;
- the best adapter (not the last) is the one kept, restored and tested;
- every prediction in ``predictions.jsonl`` is the model's own generation for that row's input.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dept_vl.config import load_config

SHIPPED = Path(__file__).resolve().parents[1] / "dept_vl" / "assets" / "backbone-tiny"
STEPS = 8
COMMON = [f"model.backbone={SHIPPED}", "data.format=shifted", "data.feature_cache=false", "dept.num_virtual_tokens=4",
          "dept.rank=2", "dept.max_length=96", "dept.lr_prompt=0.1", "dept.lr_lowrank=0.01", "dept.weight_decay=0.00001",
          "train.batch_size=8", "train.warmup_steps=2", "train.log_every=1", "train.max_grad_norm=1.0",
          "eval.batch_size=64", "eval.max_new_tokens=8", "data.eval_size=8"]


def spy_on_loop(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Record each trained model's adapter tensors as the training loop receives it (its step 0)."""
    import dept_vl.train.run as run

    seen: list[dict[str, torch.Tensor]] = []
    original = run.train_loop

    def loop(model, *args, **kwargs):
        seen.append({k: v.detach().clone() for k, v in model.adapter_state_dict().items()})
        return original(model, *args, **kwargs)

    monkeypatch.setattr(run, "train_loop", loop)
    return seen


def reference_losses(initial: dict[str, torch.Tensor], config, plan) -> list[float]:
    """DePT training written from the paper's formula, on the pipeline's batch plan (no dept-vl model code)."""
    from dept_vl.models.backbone import load_backbone
    from dept_vl.tasks import get_task

    base = load_backbone(SHIPPED)
    tok = base.tokenizer
    examples = get_task("shapes_caption_short").load("train", fmt="shifted", size=config.data.train_size)
    prompt = initial["prompt"].clone().requires_grad_(True)
    a = initial["lowrank_A"].clone().requires_grad_(True)
    b = initial["lowrank_B"].clone().requires_grad_(True)
    d = config.dept
    scale = d.alpha / math.sqrt(d.rank)
    optimizer = torch.optim.AdamW([{"params": [prompt], "lr": d.lr_prompt, "weight_decay": d.weight_decay},
                                   {"params": [a, b], "lr": d.lr_lowrank, "weight_decay": d.weight_decay}])
    warmup, total = config.train.warmup_steps, config.train.max_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    losses = []
    for _, indices in plan:
        batch = [examples[i] for i in indices]
        enc = tok([e.input_text for e in batch], padding="longest", truncation=True, max_length=d.max_length, return_tensors="pt")
        dec = tok([e.target_text for e in batch], padding="longest", truncation=True, max_length=config.data.max_target_length,
                  return_tensors="pt")
        labels = torch.where(dec["attention_mask"] == 1, dec["input_ids"], torch.full_like(dec["input_ids"], -100))
        length = enc["input_ids"].shape[1]
        text = base.get_input_embeddings()(enc["input_ids"]) + scale * (a[:length] @ b)
        embeds = torch.cat([prompt.expand(len(batch), -1, -1), text], dim=1)
        mask = torch.cat([torch.ones(len(batch), d.num_virtual_tokens, dtype=enc["attention_mask"].dtype), enc["attention_mask"]], dim=1)
        pixels = torch.stack([base.image_transform(e.image) for e in batch])
        loss = base(inputs_embeds=embeds, attention_mask=mask, pixel_values=pixels, labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([prompt, a, b], config.train.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_pretrain_losses_equal_a_reference_loop_written_from_the_formula(tmp_path, monkeypatch):
    """Breaks when: the optimizer step is skipped, label padding is not masked, A @ B is dropped (or scaled wrong),
    a learning rate or the schedule goes to the wrong group."""
    from dept_vl.recipes.pretrain import run_pretrain
    from dept_vl.train.loader import mixture_plan
    from dept_vl.tasks import get_task

    seen = spy_on_loop(monkeypatch)
    config = load_config("shapes_pretrain", COMMON + [f"output_dir={tmp_path}", "data.tasks=[shapes_caption_short]",
                                                      "data.train_size=48", f"train.max_steps={STEPS}", f"train.eval_every={STEPS}",
                                                      "train.save_every=0"])
    run_pretrain(config, show_progress=False)
    logged = [r["loss"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "loss" in r]
    examples = {"shapes_caption_short": get_task("shapes_caption_short").load("train", fmt="shifted", size=48)}
    plan, _ = mixture_plan(examples, config.data, config.train)
    expected = reference_losses(seen[0], config, plan)
    assert len(logged) == STEPS
    assert expected[-1] < expected[0] - 0.05  # the reference learns: a loss that stays flat cannot match it
    torch.testing.assert_close(torch.tensor(logged), torch.tensor(expected), rtol=1e-5, atol=1e-5)
    # and the targets of this batch plan are padded, so unmasked padding would change the loss
    tok_lengths = {len(e.target_text.split()) for e in examples["shapes_caption_short"]}
    assert len(tok_lengths) > 1


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    from dept_vl.recipes.pretrain import run_pretrain

    out = tmp_path_factory.mktemp("source")
    run_pretrain(load_config("shapes_pretrain", COMMON + [f"output_dir={out}", "data.tasks=[shapes_color]", "data.train_size=48",
                                                          "train.max_steps=6", "train.eval_every=6", "train.save_every=0"]),
                 show_progress=False)
    return out / "adapter"


def test_every_target_run_starts_from_the_source_adapter(source, tmp_path, monkeypatch):
    """Breaks when the source adapter is not loaded into a target run (or only part of it is)."""
    from safetensors.torch import load_file

    from dept_vl.recipes.adapt import run_adapt

    seen = spy_on_loop(monkeypatch)
    run_adapt(load_config("shapes_adapt", COMMON + [f"output_dir={tmp_path}", "adapt.task=shapes_count", "adapt.k=[2]",
                                                    "adapt.seeds=[0,1]", f"adapt.source={source}", "train.max_steps=2",
                                                    "train.eval_every=2", "data.train_size=60"]), show_progress=False)
    saved = load_file(source / "adapter_model.safetensors")
    assert len(seen) == 2 and set(saved) == {"prompt", "lowrank_A", "lowrank_B"}
    for start in seen:
        assert set(start) == set(saved)
        for name, value in saved.items():
            assert torch.equal(start[name], value), name


def test_the_best_adapter_not_the_last_is_restored_saved_and_tested(tmp_path, monkeypatch):
    """Breaks when the loop keeps the last evaluation instead of the best, or the recipe tests (and saves)
    the last state instead of restoring the best."""
    from safetensors.torch import load_file

    import dept_vl.recipes.adapt as adapt
    from dept_vl.train.hooks import BestAdapter

    scripted = iter([0.5, 0.9, 0.2, 0.4])  # dev scores at steps 1..4: the best is step 2
    states: dict[int, dict[str, torch.Tensor]] = {}

    class Scripted(BestAdapter):
        def __init__(self, evaluate, **kwargs):
            super().__init__(lambda model: next(scripted), **kwargs)

        def __call__(self, model, step):
            states[step] = {k: v.detach().clone() for k, v in model.adapter_state_dict().items()}
            return super().__call__(model, step)

    monkeypatch.setattr(adapt, "BestAdapter", Scripted)
    result = adapt.run_adapt(load_config("shapes_adapt", COMMON + [f"output_dir={tmp_path}", "adapt.task=shapes_para", "adapt.k=[2]",
                                                                   "adapt.seeds=[0]", "adapt.source=none", "train.max_steps=4",
                                                                   "train.eval_every=1", "data.train_size=60"]), show_progress=False)
    record = result["records"][0]
    assert (record["best_step"], record["dev_score"]) == (2, 0.9)
    saved = load_file(tmp_path / "runs" / "dept-scratch_k2_seed0" / "adapter" / "adapter_model.safetensors")
    for name, value in saved.items():
        assert torch.equal(value, states[2][name]), name
    assert not torch.equal(saved["prompt"], states[4]["prompt"])  # the last state differs: restoring it would show


def test_best_adapter_keeps_the_highest_score_and_restores_its_tensors():
    from dept_vl.train.hooks import BestAdapter

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3))

        def adapter_state_dict(self):
            return {"w": self.w.detach()}

        def load_adapter_state(self, state, parts=()):
            with torch.no_grad():
                self.w.copy_(state["w"])

    model, scores = Toy(), iter([0.3, 0.8, 0.8, 0.1])
    best = BestAdapter(lambda m: next(scores), keep_in_memory=True)
    for step in range(1, 5):
        with torch.no_grad():
            model.w.fill_(step)
        best(model, step)
    assert (best.score, best.step) == (0.8, 2)  # a tie does not replace the earlier best
    assert best.restore(model) and torch.equal(model.w.detach(), torch.full((3,), 2.0))


def test_each_prediction_is_the_generation_for_its_own_input(source, tmp_path):
    """Breaks when predictions are paired with the wrong inputs (order lost in sorting by length or gathering)."""
    from dept_vl.dept import DePTModel
    from dept_vl.models.backbone import load_backbone
    from dept_vl.recipes.evaluate import run_evaluate
    from dept_vl.tasks import get_task

    config = load_config("shapes_adapt", COMMON + ["data.eval_size=12", "eval.batch_size=5"])
    run_evaluate(config, source, "shapes_caption_short", "dev", tmp_path, size=12)
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    examples = {e.id: e for e in get_task("shapes_caption_short").load("dev", fmt="shifted", size=1000)}
    base = load_backbone(SHIPPED)
    model = DePTModel.from_pretrained(base, source)
    assert len(rows) == 12 and len({r["prediction"] for r in rows}) > 1
    for row in rows:  # one example at a time, no batching, no sorting: what the model says for this input
        example = examples[row["id"]]
        assert row["input"] == example.input_text
        enc = base.tokenizer([example.input_text], return_tensors="pt")
        ids = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             pixel_values=base.image_transform(example.image)[None], max_new_tokens=32, do_sample=False)
        assert row["prediction"] == base.tokenizer.decode(ids[0], skip_special_tokens=True).strip(), row["id"]

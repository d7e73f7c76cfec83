"""ADePT, ULPT, ATTEMPT and MPT through the pipeline on the shipped backbone: ``pretrain`` learns (the training loss
of a fixed batch drops, the adapter moves; with every learning rate at 0 it stays put, tensor for tensor),
``adapt`` starts a target run from the source adapter, and ``evaluate`` reads the folder by its method."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dept_vl.config import load_config

SHIPPED = Path(__file__).resolve().parents[1] / "dept_vl" / "assets" / "backbone-tiny"
TASKS = ["shapes_nli", "shapes_accept"]  # two text tasks: no image features to compute
COMMON = [f"model.backbone={SHIPPED}", "data.format=shifted", "data.feature_cache=false", "dept.num_virtual_tokens=4",
          "dept.rank=2", "dept.max_length=96", "dept.lr_prompt=0.1", "dept.lr_lowrank=0.01", "train.batch_size=16", "train.warmup_steps=1",
          "train.log_every=1", "train.max_steps=8", "train.eval_every=8", "train.save_every=0", "eval.batch_size=64",
          "eval.max_new_tokens=4", "data.eval_size=8", "data.train_size=16", f"data.tasks=[{','.join(TASKS)}]"]
METHODS = ["adept", "ulpt", "attempt", "mpt"]
# trainable parameters by each paper's count at d=64, m=4, r=2 (ATTEMPT: m=9, its source's prompt-tuning length at
# DePT's budget, (4*64 + 2*(96+64)) // 64; MPT: two source tasks, rank-one factors)
COUNTS = {"adept": 4 * 64 + 2 * (2 * 64 + 1) + 64, "ulpt": 4 * 2 + 2 * 64, "attempt": 9 * 64 + 2 * 64 * 2, "mpt": 4 * 64 + 2 * (4 + 64)}


@pytest.fixture(scope="module")
def source_prompt(tmp_path_factory) -> Path:
    """A prompt-tuning adapter (ATTEMPT's source prompt)."""
    from dept_vl.recipes.pretrain import run_pretrain

    out = tmp_path_factory.mktemp("pt-source")
    run_pretrain(load_config(None, COMMON + [f"output_dir={out}", "method=prompt_tuning", "train.max_steps=2"]), show_progress=False)
    return out / "adapter"


def settings(method: str, source_prompt: Path) -> list[str]:
    return [f"method={method}"] + ([f"attempt.sources=[{source_prompt},{source_prompt}]"] if method == "attempt" else [])


def spy_on_loop(monkeypatch, zero_lr: bool = False) -> list[dict[str, torch.Tensor]]:
    """Record each trained model's adapter tensors as the loop receives them; ``zero_lr`` sets every group's lr to 0."""
    import dept_vl.train.run as run

    seen: list[dict[str, torch.Tensor]] = []
    original = run.train_loop

    def loop(model, *args, **kwargs):
        seen.append({k: v.detach().clone() for k, v in model.adapter_state_dict().items()})
        if zero_lr:
            groups = model.param_groups()
            monkeypatch.setattr(model, "param_groups", lambda: [{**g, "lr": 0.0} for g in groups])
        return original(model, *args, **kwargs)

    monkeypatch.setattr(run, "train_loop", loop)
    return seen


def training_loss(folder: Path, tensors: dict[str, torch.Tensor] | None = None) -> float:
    """The mean loss of the adapter in ``folder`` (or of ``tensors`` loaded into it) on each source task's training
    set (16 examples: every training batch is one task's whole set), each task's batch routed to it."""
    from dept_vl.methods import load_adapter_model
    from dept_vl.models.backbone import load_backbone
    from dept_vl.tasks import get_task

    base = load_backbone(SHIPPED)
    model = load_adapter_model(base, folder)
    if tensors is not None:
        model.load_adapter_state(tensors)
    losses = []
    for task in TASKS:
        examples = get_task(task).load("train", fmt="shifted", size=16)  # the run's whole training set
        enc = base.tokenizer([e.input_text for e in examples], padding=True, return_tensors="pt")
        dec = base.tokenizer([e.target_text for e in examples], padding=True, return_tensors="pt")
        labels = dec["input_ids"].masked_fill(dec["attention_mask"] == 0, -100)
        route = model.task_inputs(task, len(examples)) if hasattr(model, "task_inputs") else {}
        with torch.no_grad():
            losses.append(float(model(**enc, labels=labels, **route).loss))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("method", METHODS)
def test_pretrain_learns_adapt_transfers_evaluate_reads_and_zero_learning_rates_change_nothing(method, source_prompt, tmp_path,
                                                                                             monkeypatch):
    from safetensors.torch import load_file

    from dept_vl.adapter import read_adapter
    from dept_vl.recipes.adapt import run_adapt
    from dept_vl.recipes.evaluate import run_evaluate
    from dept_vl.recipes.pretrain import run_pretrain

    # pretrain learns: the adapter moves and the training loss drops
    seen = spy_on_loop(monkeypatch)
    summary = run_pretrain(load_config(None, COMMON + settings(method, source_prompt) + [f"output_dir={tmp_path / 'on'}"]),
                           show_progress=False)
    trained = load_file(tmp_path / "on" / "last" / "adapter_model.safetensors")
    initial = seen[0]
    assert set(trained) == set(initial) and any(not torch.equal(trained[k], initial[k]) for k in trained)
    assert training_loss(tmp_path / "on" / "last") < training_loss(tmp_path / "on" / "last", initial) - 0.05
    assert summary["trainable_parameters"] == COUNTS[method]

    # a target run starts from the source adapter (MPT: the shared prompt, the source tasks' mean factors)
    source = read_adapter(tmp_path / "on" / "adapter")
    result = run_adapt(load_config(None, COMMON + [f"method={method}", f"output_dir={tmp_path / 'target'}", "adapt.task=shapes_para",
                                                   f"adapt.source={source.path}", "adapt.k=[2]", "adapt.seeds=[0]",
                                                   "train.max_steps=2"]), show_progress=False)
    record = result["records"][0]
    assert record["method"] == f"{method}-transfer" and 0 <= record["score"] <= 1
    for name, value in seen[1].items():
        expected = source.tensors[name]
        if method == "mpt" and name.startswith("prefix_task_"):
            expected = expected.mean(0, keepdim=True)
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-7)

    # evaluate reads the target's folder by its method
    folder = tmp_path / "target" / "runs" / f"{method}-transfer_k2_seed0" / "adapter"
    metrics = run_evaluate(load_config(None, COMMON), folder, "shapes_para", "dev", size=8)
    assert metrics["method"] == method and metrics["examples"] == 8

    # every learning rate at 0: the adapter stays what the loop received, tensor for tensor
    seen = spy_on_loop(monkeypatch, zero_lr=True)
    run_pretrain(load_config(None, COMMON + settings(method, source_prompt) + [f"output_dir={tmp_path / 'off'}"]), show_progress=False)
    frozen = load_file(tmp_path / "off" / "last" / "adapter_model.safetensors")
    assert all(torch.equal(frozen[k], seen[0][k]) for k in frozen) and all(torch.equal(frozen[k], initial[k]) for k in frozen)

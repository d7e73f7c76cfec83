"""The training pipeline end to end on the tiny preset and the synthetic world (CPU, seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dept_vl.cli import main as cli
from dept_vl.config import load_config

TINY = ["model.preset=tiny", "dept.num_virtual_tokens=4", "dept.rank=2", "dept.max_length=48",
        "data.train_size=48", "data.eval_size=12", "train.batch_size=8", "train.log_every=2",
        "train.warmup_steps=1", "eval.batch_size=16", "eval.max_new_tokens=6"]


def pretrain_args(out: Path, steps: int = 6, extra: tuple[str, ...] = ()) -> list[str]:
    return ["pretrain", *TINY, f"output_dir={out}", f"train.max_steps={steps}", "train.eval_every=3",
            "train.save_every=3", "data.tasks=[shapes_color,shapes_nli]", *extra]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    assert cli(pretrain_args(out)) == 0
    return out


def test_pretrain_writes_adapter_metrics_log_and_config(source):
    assert (source / "adapter" / "adapter_model.safetensors").is_file()
    assert (source / "config.yaml").is_file() and load_config(source / "config.yaml").train.max_steps == 6
    metrics = json.loads((source / "metrics.json").read_text())
    assert set(metrics["final_dev"]) == {"shapes_color", "shapes_nli", "mean_headline"}
    assert metrics["trainable_parameters"] == 4 * 64 + 2 * (48 + 64)
    log = [json.loads(line) for line in (source / "log.jsonl").read_text().splitlines()]
    losses = [r for r in log if "loss" in r]
    assert losses and all("task_loss" in r and r["examples_per_s"] > 0 for r in losses)


def test_adapt_then_evaluate_from_the_command_line(source, tmp_path):
    out = tmp_path / "adapt"
    code = cli(["adapt", *TINY, f"output_dir={out}", "train.max_steps=4", "train.eval_every=2",
                "--task", "shapes_count", "--source", str(source / "adapter"), "--k", "2", "4", "--seeds", "0", "1"])
    assert code == 0
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 4
    for r in records:
        assert {"task", "k", "method", "seed", "score", "metric"} <= set(r)
        assert r["method"] == "dept-transfer" and 0.0 <= r["score"] <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert {(s["k"], s["seeds"]) for s in summary} == {(2, 2), (4, 2)}
    assert (out / "summary.csv").read_text().startswith("task,method,k,metric,mean,std,seeds")
    preds = [json.loads(l) for l in (out / "runs" / "dept-transfer_k2_seed0" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 12 and {"id", "input", "prediction", "reference"} <= set(preds[0])

    ev = tmp_path / "eval"
    assert cli(["evaluate", *TINY, "--adapter", str(source / "adapter"), "--task", "shapes_color", "--split", "dev", "--size", "12", "--out", str(ev)]) == 0
    result = json.loads((ev / "metrics.json").read_text())
    assert result["examples"] == 12 and 0 <= result["metrics"]["headline"] <= 1
    assert len((ev / "predictions.jsonl").read_text().splitlines()) == 12


def test_adapt_from_scratch_and_prompt_tuning_labels(tmp_path):
    from dept_vl.recipes.adapt import run_adapt

    cfg = load_config(None, TINY + [f"output_dir={tmp_path}", "method=prompt_tuning", "train.max_steps=2",
                                   "adapt.task=shapes_para", "adapt.k=[2]", "adapt.seeds=[0]", "adapt.source=none"])
    record = run_adapt(cfg, show_progress=False)["records"][0]
    assert record["method"] == "pt-scratch"
    assert record["trainable_parameters"] == (4 * 64 + 2 * (48 + 64)) // 64 * 64  # same budget as DePT, rank 0


@pytest.mark.parametrize("method, label", [("lora", "lora-scratch"), ("full", "full-scratch")])
def test_reference_methods_run_through_the_same_pipeline(tmp_path, method, label):
    from dept_vl.methods import load_adapter_model
    from dept_vl.recipes.adapt import run_adapt
    from dept_vl.train.run import Run

    cfg = load_config(None, TINY + [f"output_dir={tmp_path}", f"method={method}", "train.max_steps=2", "lora.r=2",
                                   "adapt.task=shapes_para", "adapt.k=[2]", "adapt.seeds=[0]", "adapt.source=none"])
    record = run_adapt(cfg, show_progress=False)["records"][0]
    assert record["method"] == label and 0 <= record["score"] <= 1
    base = Run.setup(cfg, ["shapes_para"]).base
    text_params = sum(p.numel() for p in base.text_model.parameters())
    reloaded = load_adapter_model(Run.setup(cfg, ["shapes_para"]).base, tmp_path / "runs" / f"{label}_k2_seed0" / "adapter")
    assert json.loads((tmp_path / "runs" / f"{label}_k2_seed0" / "adapter" / "adapter_config.json").read_text())["dept_vl"]["method"] == method
    assert sum(p.numel() for p in reloaded.adapter_state_dict().values()) == record["trainable_parameters"]
    if method == "lora":  # r * (in + out) per adapted q and v projection: 2 layers x (enc self, dec self, dec cross)
        assert record["trainable_parameters"] == 2 * 3 * 2 * 2 * (64 + 64)
    else:
        assert record["trainable_parameters"] >= text_params


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    import dept_vl.train.run as run

    full = tmp_path / "full"
    assert cli(pretrain_args(full, steps=6, extra=("train.save_every=2",))) == 0

    killed = tmp_path / "killed"
    original = run.train_loop
    calls = {"n": 0}

    class Dying:
        """The run's batches, with a Ctrl-C while step 4's batch is collated."""

        def __init__(self, batches):
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, index):
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt
            return self.batches[index]

    monkeypatch.setattr(run, "train_loop", lambda model, batches, *a, **k: original(model, Dying(batches), *a, **k))
    assert cli(pretrain_args(killed, steps=6, extra=("train.save_every=2",))) == 130
    assert (killed / "checkpoints" / "latest").read_text().strip() == "step_0000003"
    monkeypatch.setattr(run, "train_loop", original)
    assert cli(pretrain_args(killed, steps=6, extra=("train.save_every=2", "--resume"))) == 0

    a, b = load_file(full / "last" / "adapter_model.safetensors"), load_file(killed / "last" / "adapter_model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    ma, mb = (json.loads((d / "metrics.json").read_text())["final_dev"] for d in (full, killed))
    assert ma == mb


def test_optimizer_groups_weight_decay_and_clipping_follow_the_config(monkeypatch):
    from accelerate import Accelerator

    from dept_vl.config import TrainConfig
    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.train.loader import Batch
    from dept_vl.train.loop import train_loop
    from tests.conftest import tiny_t5

    model = DePTModel(tiny_t5(), DePTConfig(num_virtual_tokens=3, rank=2, max_length=8, lr_prompt=0.7, lr_lowrank=0.02, weight_decay=0.05))
    seen = {}
    original_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen["groups"] = [(g["name"], g["initial_lr"], g["weight_decay"]) for g in self.param_groups]
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        seen["norm"] = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    ids = torch.randint(3, 100, (4, 6))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, :3].contiguous() * 0 + 7}
    cfg = TrainConfig(max_steps=1, warmup_steps=0, max_grad_norm=1e-3, log_every=1, eval_every=10, save_every=0)
    train_loop(model, [Batch("t", batch)], cfg, Accelerator(cpu=True), show_progress=False)
    assert seen["groups"] == [("prompt", 0.7, 0.05), ("lowrank", 0.02, 0.05)]
    assert seen["norm"] <= 1e-3 * (1 + 1e-4)


@pytest.mark.parametrize("overrides, message", [
    (["adapt.task=shapes_cuont"], "shapes_count"),
    (["adapt.task=cola", "data.data_dir=/nonexistent/glue"], "/nonexistent/glue"),
    (["train.max_step=3"], "did you mean 'train.max_steps'"),
    (["adapt.task=shapes_para", "adapt.k=[500]"], "k=500"),
    (["adapt.task=shapes_para", "adapt.k=[2]", "train.stop_at=2"], "stop_at=2 needs a checkpoint folder"),
])
def test_bad_input_fails_before_training(tmp_path, overrides, message, monkeypatch):
    import dept_vl.train.run as run
    from dept_vl.recipes import adapt

    monkeypatch.setattr(run, "train_loop", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("[", "\\[")):
        adapt.run_adapt(load_config(None, TINY + [f"output_dir={tmp_path}", "data.train_size=60", *overrides]), show_progress=False)


def test_source_adapter_of_another_base_fails_before_training(tmp_path, monkeypatch):
    import dept_vl.train.run as run
    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.recipes import adapt
    from tests.conftest import tiny_t5

    DePTModel(tiny_t5(d_model=32), DePTConfig(num_virtual_tokens=2, rank=1, max_length=48)).save_pretrained(tmp_path / "foreign")
    monkeypatch.setattr(run, "train_loop", lambda *a, **k: pytest.fail("training started"))
    cfg = load_config(None, TINY + [f"output_dir={tmp_path / 'o'}", "adapt.task=shapes_para", "adapt.k=[2]", f"adapt.source={tmp_path / 'foreign'}"])
    with pytest.raises(ValueError, match="d_model=32.*d_model=64"):
        adapt.run_adapt(cfg, show_progress=False)


@pytest.mark.slow
def test_two_processes_resume_exactly_and_evaluate_like_one(source, tmp_path):
    """DDP over two CPU processes (gloo): a run stopped half-way and resumed ends where the uninterrupted
    run ends (each process's dropout RNG restored), and evaluation with two processes is one process's."""
    from safetensors.torch import load_file

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dept_vl"]

    def run(args: list[str]) -> None:
        done = subprocess.run(launch + args, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]

    whole, split = tmp_path / "whole", tmp_path / "split"
    run(pretrain_args(whole, steps=6, extra=("train.log_every=1",)))
    assert json.loads((whole / "metrics.json").read_text())["processes"] == 2
    run(pretrain_args(split, steps=6, extra=("train.log_every=1", "train.stop_at=4")))
    stopped = json.loads((split / "metrics.json").read_text())
    assert stopped["steps"] == 4 and stopped["complete"] is False and stopped["final_dev"] is None
    run(pretrain_args(split, steps=6, extra=("train.log_every=1", "--resume")))
    a, b = load_file(whole / "last" / "adapter_model.safetensors"), load_file(split / "last" / "adapter_model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    losses = [[r["loss"] for r in map(json.loads, (d / "log.jsonl").read_text().splitlines()) if "loss" in r] for d in (whole, split)]
    assert losses[0] == losses[1] and len(losses[0]) == 6
    # the compiled path's gradient sync (one flat all-reduce, model unwrapped) trains as DDP does
    flat = tmp_path / "flat"
    run(pretrain_args(flat, steps=6, extra=("train.gradient_sync=allreduce",)))
    c = load_file(flat / "last" / "adapter_model.safetensors")
    for name in a:
        torch.testing.assert_close(c[name], a[name], rtol=1e-5, atol=1e-6)
    assert not torch.equal(a["prompt"], load_file(source / "last" / "adapter_model.safetensors")["prompt"])  # two processes: other batches

    ev_args = ["evaluate", *TINY, "data.eval_size=13", "eval.batch_size=4", "--adapter", str(source / "adapter"),
               "--task", "shapes_color", "--split", "dev", "--size", "13"]
    run(ev_args + ["--out", str(tmp_path / "e2")])
    assert cli(ev_args + ["--out", str(tmp_path / "e1")]) == 0
    one = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    two = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert one["examples"] == two["examples"] == 13
    assert one["metrics"] == two["metrics"]
    assert (tmp_path / "e1" / "predictions.jsonl").read_text() == (tmp_path / "e2" / "predictions.jsonl").read_text()


def test_config_words_on_off_yes_no_stay_words(tmp_path):
    """YAML 1.1 would read ``off``/``no`` as booleans; the config system keeps them the words they are."""
    cfg = load_config(None, ["train.compile=off", "train.mixed_precision=no", "data.feature_cache=false", "dept.lr_lowrank=1e-4"])
    assert (cfg.train.compile, cfg.train.mixed_precision, cfg.data.feature_cache) == ("off", "no", False)
    assert cfg.dept.lr_lowrank == 1e-4  # a YAML 1.2 float (YAML 1.1 reads the string '1e-4')
    with pytest.raises(ValueError, match="lr_prompt.*number"):
        load_config(None, ["dept.lr_prompt=fast"])
    (tmp_path / "r.yaml").write_text("train:\n  compile: on\n  mixed_precision: no\n")
    cfg = load_config(tmp_path / "r.yaml")
    assert (cfg.train.compile, cfg.train.mixed_precision) == ("on", "no")
    cfg.save(tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml").train.compile == "on"


@pytest.mark.parametrize("name", ["one_node_2gpus", "multi_node"])
def test_accelerate_configs_load_and_name_real_recipes(name):
    """The documented multi-GPU / multi-node recipes are valid accelerate configs whose commands run real recipes."""
    from accelerate.commands.config.config_args import ClusterConfig

    from dept_vl.config import list_recipes

    path = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / f"{name}.yaml"
    config = ClusterConfig.from_yaml_file(str(path))
    assert str(config.distributed_type).endswith("MULTI_GPU") and config.mixed_precision == "no"
    assert config.num_processes % config.num_machines == 0 and config.num_processes >= 2
    commands = [line for line in path.read_text().splitlines() if "accelerate launch" in line]
    assert commands and all(f"--config_file configs/accelerate/{name}.yaml" in c for c in commands)
    assert {c.split("--config ")[1].split()[0] for c in commands} <= set(list_recipes())
    if config.num_machines > 1:
        assert {c.split("--machine_rank ")[1].split()[0] for c in commands} == {str(i) for i in range(config.num_machines)}

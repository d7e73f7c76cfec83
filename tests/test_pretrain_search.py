"""Pretraining searches: every setting of a packed search ends as the same pretraining run alone (adapter, best
step and score, log), each at its own learning rates or shape; the best by dev score is selected and copied; a
resumed search keeps finished settings (shipped backbone, dropout 0, CPU float32)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dept_vl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "dept_vl" / "assets" / "backbone-tiny"
BASE = [f"model.backbone={SHIPPED}", "data.format=shifted", "dept.num_virtual_tokens=4", "dept.rank=2", "dept.max_length=96",
        "dept.lr_prompt=0.1", "dept.lr_lowrank=0.01", "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1",
        "eval.batch_size=8", "eval.max_new_tokens=8", "data.eval_size=8", "data.train_size=24", "train.max_steps=4",
        "train.eval_every=2", "train.save_every=0", "data.tasks=[shapes_color,shapes_count]", "data.feature_cache=true"]
TIMING = ("step_time_ms", "examples_per_s", "seconds", "peak_memory_mb", "pack_size", "output_dir", "adapter")


def pretrain(out: Path, *extra: str, resume: bool = False) -> dict:
    from dept_vl.recipes.pretrain import run_pretrain

    return run_pretrain(load_config(None, BASE + [f"output_dir={out}", *extra]), resume=resume, show_progress=False)


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def log(folder: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in (folder / "log.jsonl").read_text().splitlines()]


def same_log(a: object, b: object) -> bool:
    """Equal logs, losses within float rounding: the mixture's text task pads a setting's batch to the pack's
    widest, which moves a loss by about 1e-7 relative (another run's batch or learning rate moves it by 1e-2)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_log(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_log(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-9)
    return a == b


@pytest.mark.parametrize("search", [["pretrain.lr_prompt=[0.01,0.1]", "pretrain.lr_lowrank=[0.001,0.01]"],
                                    ["pretrain.num_virtual_tokens=[2,6]"]], ids=["learning-rates", "shapes"])
def test_each_setting_of_a_packed_search_ends_as_that_pretraining_run_alone(tmp_path, search):
    selection = pretrain(tmp_path / "search", "pretrain.pack=on", *search)
    names = [row["folder"].split("/")[-1] for row in selection["settings"]]
    # torch.allclose(atol=1e-6). Settings of different shapes pad the shorter prompt's rows to the pack's widest:
    # the longer key axis changes the rounding of attention (as a text task's widths do in tests/test_packed.py),
    # about 4e-6 on a prompt of norm 0.3 after 4 steps; any real mix-up (a learning rate, a batch) moves 1e-2
    tolerance = 1e-6
    if "pretrain.num_virtual_tokens=[2,6]" in search:
        tolerance = 1e-5
        assert names == ["m2", "m6"]
        assert [row["dept_shape"] for row in selection["settings"]] == [[2, 2], [6, 1]]  # 576 parameters' budget at d=64
        alone_settings = [["dept.num_virtual_tokens=2", "dept.rank=2"], ["dept.num_virtual_tokens=6", "dept.rank=1"]]
    else:
        assert names == ["lrp0.01_lrl0.001", "lrp0.01_lrl0.01", "lrp0.1_lrl0.001", "lrp0.1_lrl0.01"]
        alone_settings = [[f"dept.lr_prompt={p}", f"dept.lr_lowrank={q}"] for p in (0.01, 0.1) for q in (0.001, 0.01)]
    scores, losses = [], []
    for name, settings in zip(names, alone_settings):
        alone = pretrain(tmp_path / f"alone-{name}", *settings)
        folder = tmp_path / "search" / "search" / name
        packed = json.loads((folder / "metrics.json").read_text())
        assert packed["pack_size"] == len(names)
        assert {k: v for k, v in packed.items() if k not in TIMING} == {k: v for k, v in alone.items() if k not in TIMING}
        for part in ("adapter", "last"):
            mine, theirs = tensors(folder / part), tensors(tmp_path / f"alone-{name}" / part)
            assert mine.keys() == theirs.keys()
            for key in mine:
                torch.testing.assert_close(mine[key], theirs[key], atol=tolerance, rtol=1e-5)
        assert same_log(log(folder), log(tmp_path / f"alone-{name}"))  # its own learning rates and losses at every step
        scores.append(alone["best_score"])
        losses.append([r["loss"] for r in log(tmp_path / f"alone-{name}") if "loss" in r])
    assert len({tuple(x) for x in losses}) == len(names)  # every setting trains differently: a mix-up would show
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    assert selection["best"]["folder"] == f"search/{names[best]}" and selection["best"]["dev_score"] == scores[best]
    copied, source = tensors(tmp_path / "search" / "adapter"), tensors(tmp_path / "search" / "search" / names[best] / "adapter")
    assert copied.keys() == source.keys() and all(torch.equal(copied[k], source[k]) for k in copied)


def test_a_search_one_setting_after_another_resumes_and_keeps_finished_settings(tmp_path, monkeypatch):
    import dept_vl.recipes.pretrain as pretrain_module

    search = ["pretrain.lr_prompt=[0.01,0.1]", "pretrain.pack=off"]
    whole = pretrain(tmp_path / "whole", *search)
    calls, original = [], pretrain_module._pretrain

    def second_killed(config, *args, **kwargs):
        calls.append(config.output_dir)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(config, *args, **kwargs)

    monkeypatch.setattr(pretrain_module, "_pretrain", second_killed)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "killed", *search)
    calls.clear()
    monkeypatch.setattr(pretrain_module, "_pretrain", lambda config, *a, **k: calls.append(config.output_dir) or original(config, *a, **k))
    resumed = pretrain(tmp_path / "killed", *search, resume=True)
    assert [Path(c).name for c in calls] == ["lrp0.1"]  # the finished setting was kept, not trained again
    assert [(r["folder"], r["dev_score"], r["best_step"]) for r in resumed["settings"]] == \
        [(r["folder"], r["dev_score"], r["best_step"]) for r in whole["settings"]]


def test_a_search_is_refused_for_methods_and_shapes_it_cannot_serve(tmp_path):
    with pytest.raises(ValueError, match="method 'lora' has its own"):
        pretrain(tmp_path / "a", "method=lora", "pretrain.lr_prompt=[0.1]")
    with pytest.raises(ValueError, match="method 'prompt_tuning' has no rank to trade"):
        pretrain(tmp_path / "b", "method=prompt_tuning", "pretrain.rank=[1]")
    with pytest.raises(ValueError, match="pretrain.num_virtual_tokens=.* and pretrain.rank="):
        pretrain(tmp_path / "c", "pretrain.rank=[1]", "pretrain.num_virtual_tokens=[2]")

"""The adapt recipe's folder is reliable: claimed before anything loads, run folders named by method, k and seed,
finished runs kept and skipped on --resume, results rewritten from every finished run after each one, a
progress bar and a log per run, and Ctrl-C keeps what finished (tiny preset, CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dept_vl.config import load_config

TINY = ["model.preset=tiny", "dept.num_virtual_tokens=4", "dept.rank=2", "dept.max_length=48",
        "data.train_size=48", "data.eval_size=12", "train.batch_size=8", "train.log_every=1",
        "train.warmup_steps=1", "eval.batch_size=16", "eval.max_new_tokens=6", "train.max_steps=2", "train.eval_every=2"]
SHIPPED = Path(__file__).resolve().parents[1] / "dept_vl" / "assets" / "backbone-tiny"
# the shipped (trained) backbone: scores differ between seeds, so comparing them means something
LEARNED = [f"model.backbone={SHIPPED}", "data.format=shifted", "data.feature_cache=false", "dept.num_virtual_tokens=4",
           "dept.rank=2", "dept.max_length=96", "dept.lr_prompt=0.1", "train.batch_size=8", "train.warmup_steps=1",
           "train.log_every=1", "eval.batch_size=64", "eval.max_new_tokens=8", "data.eval_size=16", "data.train_size=60",
           "train.max_steps=3", "train.eval_every=1"]
TIMING = ("train_seconds", "step_time_ms", "examples_per_s", "peak_memory_mb")


def adapt_config(out: Path, *overrides: str, base: list[str] = TINY):
    return load_config(None, base + [f"output_dir={out}", "adapt.task=shapes_para", "adapt.source=none", *overrides])


def count_loops(monkeypatch, fail_on: int | None = None) -> list[int]:
    """Count the training loop's calls; raise KeyboardInterrupt on call ``fail_on`` (1-based)."""
    import dept_vl.train.run as run

    calls: list[int] = []
    original = run.train_loop

    def loop(*args, **kwargs):
        calls.append(1)
        if fail_on is not None and len(calls) == fail_on:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(run, "train_loop", loop)
    return calls


def comparable(records: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k not in TIMING} for r in records), key=lambda r: (r["k"], r["seed"]))


def test_a_folder_holding_runs_is_refused_without_resume_before_anything_loads(tmp_path, monkeypatch):
    from dept_vl.recipes import adapt

    out = tmp_path / "a"
    adapt.run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]"), show_progress=False)

    def no_setup(*args, **kwargs):
        raise AssertionError("Run.setup called before the output folder was checked")

    monkeypatch.setattr(adapt.Run, "setup", no_setup)
    with pytest.raises(ValueError, match="--resume"):
        adapt.run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]"), show_progress=False)
    with pytest.raises(ValueError, match="exclude each other"):
        adapt.run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]"), resume=True, overwrite=True, show_progress=False)
    # resumed with every run finished: nothing is loaded or trained, the record is read back
    result = adapt.run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]"), resume=True, show_progress=False)
    assert result["skipped"] == 1 and len(result["records"]) == 1


def test_kill_and_resume_runs_only_the_rest_and_ends_with_the_uninterrupted_records(tmp_path, monkeypatch, capsys):
    from dept_vl.recipes.adapt import run_adapt

    sweep = ["adapt.k=[2]", "adapt.seeds=[0,1,2]"]
    whole = run_adapt(adapt_config(tmp_path / "whole", *sweep, base=LEARNED), show_progress=False)
    assert len({(r["score"], r["dev_score"]) for r in whole["records"]}) > 1  # the runs differ: a mix-up would show

    out = tmp_path / "killed"
    calls = count_loops(monkeypatch, fail_on=3)
    with pytest.raises(KeyboardInterrupt, match=r"interrupted: 2 of 3 runs finished and kept in .*killed; continue with --resume"):
        run_adapt(adapt_config(out, *sweep, base=LEARNED), show_progress=False)
    assert "interrupted: 2 of 3 runs finished" in capsys.readouterr().err
    kept = json.loads((out / "results.json").read_text())
    assert [(r["k"], r["seed"]) for r in kept] == [(2, 0), (2, 1)]  # results.json is rewritten after each finished run
    assert not (out / "runs" / "dept-scratch_k2_seed2" / "result.json").exists()

    calls.clear()
    with pytest.raises(ValueError, match="--resume"):
        run_adapt(adapt_config(out, *sweep, base=LEARNED), show_progress=False)
    resumed = run_adapt(adapt_config(out, *sweep, base=LEARNED), resume=True, show_progress=False)
    assert len(calls) == 1 and resumed["skipped"] == 2
    assert comparable(resumed["records"]) == comparable(whole["records"])
    assert comparable(json.loads((out / "results.json").read_text())) == comparable(json.loads((tmp_path / "whole" / "results.json").read_text()))
    assert json.loads((out / "summary.json").read_text()) == json.loads((tmp_path / "whole" / "summary.json").read_text())


def test_a_later_sweep_with_resume_adds_records_and_keeps_finished_runs(tmp_path, monkeypatch):
    from dept_vl.recipes.adapt import run_adapt

    out = tmp_path / "acc"
    first = run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]"), show_progress=False)["records"][0]
    calls = count_loops(monkeypatch)
    result = run_adapt(adapt_config(out, "adapt.k=[2,4]", "adapt.seeds=[0]"), resume=True, show_progress=False)
    assert len(calls) == 1  # only k=4 trained
    assert result["records"][0] == first  # k=2 read back, not retrained
    records = json.loads((out / "results.json").read_text())
    assert [(r["k"], r["seed"]) for r in records] == [(2, 0), (4, 0)]
    assert {(s["k"], s["seeds"]) for s in json.loads((out / "summary.json").read_text())} == {(2, 1), (4, 1)}
    assert (out / "summary.csv").read_text().count("\n") == 3
    # a later, smaller sweep does not cut the folder's results either
    run_adapt(adapt_config(out, "adapt.k=[4]", "adapt.seeds=[0]"), resume=True, show_progress=False)
    assert len(calls) == 1 and len(json.loads((out / "results.json").read_text())) == 2


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    from dept_vl.recipes.pretrain import run_pretrain

    out = tmp_path_factory.mktemp("source")
    run_pretrain(load_config(None, TINY + [f"output_dir={out}", "data.tasks=[shapes_color]", "train.save_every=0"]),
                 show_progress=False)
    return out / "adapter"


def test_transfer_and_scratch_into_one_folder_keep_both(tmp_path, source):
    from dept_vl.recipes.adapt import run_adapt

    out = tmp_path / "arms"
    run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]", f"adapt.source={source}"), show_progress=False)
    run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]", "adapt.source=none"), resume=True, show_progress=False)
    for name, label in [("dept-transfer_k2_seed0", "dept-transfer"), ("dept-scratch_k2_seed0", "dept-scratch")]:
        assert json.loads((out / "runs" / name / "result.json").read_text())["method"] == label
        assert (out / "runs" / name / "predictions.jsonl").is_file() and (out / "runs" / name / "adapter").is_dir()
    assert sorted(r["method"] for r in json.loads((out / "results.json").read_text())) == ["dept-scratch", "dept-transfer"]
    assert {s["method"] for s in json.loads((out / "summary.json").read_text())} == {"dept-scratch", "dept-transfer"}


def test_a_changed_setting_that_matters_is_refused_and_one_that_does_not_is_kept(tmp_path, monkeypatch):
    from dept_vl.recipes.adapt import run_adapt

    out = tmp_path / "changed"
    run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]"), show_progress=False)
    calls = count_loops(monkeypatch)
    with pytest.raises(ValueError, match=r"other settings .*dept\.lr_prompt"):
        run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]", "dept.lr_prompt=0.123"), resume=True, show_progress=False)
    with pytest.raises(ValueError, match="other settings"):  # a new k with other settings would mix records too
        run_adapt(adapt_config(out, "adapt.k=[4]", "adapt.seeds=[0]", "train.max_steps=3"), resume=True, show_progress=False)
    assert calls == []
    # eval.batch_size does not change what a run computes: the run is kept
    result = run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]", "eval.batch_size=5"), resume=True, show_progress=False)
    assert calls == [] and result["skipped"] == 1
    # an unfinished run folder (no result.json) is redone from nothing
    (out / "runs" / "dept-scratch_k2_seed0" / "result.json").unlink()
    run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0]"), resume=True, show_progress=False)
    assert len(calls) == 1 and (out / "runs" / "dept-scratch_k2_seed0" / "result.json").is_file()


def test_one_progress_bar_over_the_runs_and_a_log_per_run(tmp_path, monkeypatch):
    import dept_vl.recipes.adapt as adapt

    bars = []
    real = adapt.tqdm

    def spy(*args, **kwargs):
        bar = real(*args, **kwargs)
        bars.append((kwargs, bar))
        return bar

    monkeypatch.setattr(adapt, "tqdm", spy)
    out = tmp_path / "log"
    adapt.run_adapt(adapt_config(out, "adapt.k=[2]", "adapt.seeds=[0,1]"), show_progress=True)
    assert len(bars) == 1 and bars[0][0]["total"] == 2 and not bars[0][0]["disable"] and bars[0][1].n == 2
    for seed in (0, 1):
        log = [json.loads(line) for line in (out / "runs" / f"dept-scratch_k2_seed{seed}" / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log if "loss" in r] == [1, 2] and any("eval" in r for r in log)
    adapt.run_adapt(adapt_config(tmp_path / "quiet", "adapt.k=[2]", "adapt.seeds=[0]"), show_progress=False)
    assert bars[1][0]["disable"]

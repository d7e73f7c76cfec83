"""Nothing is lost in pretrain: a checkpoint before each evaluation, Ctrl-C/SIGTERM/SIGHUP saved, the best adapter
and the checkpoint moving together, the newest complete checkpoint on resume, leftovers cleaned, no duplicate log
lines, changed settings refused. Every interrupted run is resumed and compared with one uninterrupted run of the
same command (shipped backbone, CPU, a few seconds a run)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dept_vl.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "dept_vl" / "assets" / "backbone-tiny"
# 8 steps, evaluated and saved every 2; the dev score is best at step 4 (not the first, not the last), so a
# best adapter that follows the wrong step, or a resume that skips an evaluation, shows in the results
ARGS = [f"model.backbone={SHIPPED}", "data.format=shifted", "data.feature_cache=false", "dept.num_virtual_tokens=4",
        "dept.rank=2", "dept.max_length=96", "dept.lr_prompt=0.3", "dept.lr_lowrank=0.01", "train.batch_size=8",
        "train.warmup_steps=1", "train.log_every=1", "eval.batch_size=64", "eval.max_new_tokens=8",
        "data.eval_size=16", "data.train_size=64", "train.max_steps=8", "train.eval_every=2", "train.save_every=2",
        "data.tasks=[shapes_color,shapes_count]"]
TIMING = ("step_time_ms", "examples_per_s")


def pretrain(out: Path, *extra: str) -> int:
    return cli(["pretrain", *ARGS, f"output_dir={out}", *extra])


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


def same_tensors(a: Path, b: Path) -> bool:
    ta, tb = tensors(a), tensors(b)
    return set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)


def log_lines(out: Path) -> list[dict]:
    """``log.jsonl`` without the timing fields (which differ between any two runs)."""
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in (out / "log.jsonl").read_text().splitlines()]


def results(out: Path) -> tuple:
    m = json.loads((out / "metrics.json").read_text())
    return m["best_score"], m["best_step"], m["final_dev"], m["steps"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The uninterrupted run every other test must end equal to."""
    out = tmp_path_factory.mktemp("whole")
    assert pretrain(out) == 0
    assert results(out)[1] == 4  # the premise: the best is an inner step
    return out


def assert_ends_like(out: Path, whole: Path) -> None:
    """The resumed run ends exactly as the uninterrupted one: results, best and last adapters, the log."""
    assert results(out) == results(whole)
    assert same_tensors(out / "last", whole / "last")
    assert same_tensors(out / "adapter", whole / "adapter")
    assert log_lines(out) == log_lines(whole)  # no step logged twice, none missing


class Count:
    """Wrap ``owner.name``: count its calls (those ``only(*args)`` accepts), and on call ``fail_on`` raise
    ``error`` (before or after the call)."""

    def __init__(self, monkeypatch, owner, name, fail_on=None, error=KeyboardInterrupt, after=False, only=None):
        self.calls, original = 0, getattr(owner, name)

        def wrapper(*args, **kwargs):
            if only is not None and not only(*args):
                return original(*args, **kwargs)
            self.calls += 1
            if self.calls == fail_on and not after:
                raise error("injected")
            value = original(*args, **kwargs)
            if self.calls == fail_on and after:
                raise error("injected")
            return value

        monkeypatch.setattr(owner, name, wrapper)


def state(out: Path, step: int) -> dict:
    return json.loads((out / "checkpoints" / f"step_{step:07d}" / "state.json").read_text())


@pytest.mark.parametrize("when", ["loop", "final"])
def test_an_error_in_the_last_evaluation_loses_no_training_and_resume_reruns_only_the_evaluation(tmp_path, monkeypatch, whole, when):
    from dept_vl.train.loop import Training
    from dept_vl.train.run import Run

    out = tmp_path / "run"
    # Run.evaluate is called at steps 2, 4, 6, 8 by the loop, then once more for metrics.json
    with monkeypatch.context() as patch:
        Count(patch, Run, "evaluate", fail_on=4 if when == "loop" else 5, error=ImportError)
        with pytest.raises(ImportError):
            pretrain(out)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_0000008"
    saved = state(out, 8)
    assert saved["evaluated"] is (when == "final") and saved["best_step"] == 4
    assert saved["threads"] == torch.get_num_threads() and saved["processes"] == 1
    assert same_tensors(out / "adapter", whole / "adapter")
    assert same_tensors(out / "checkpoints" / "step_0000008" / "adapter", whole / "last")  # the training is kept

    steps, evaluations = Count(monkeypatch, Training, "step"), Count(monkeypatch, Run, "evaluate")
    assert pretrain(out, "--resume") == 0
    assert steps.calls == 0  # no training step is redone
    assert evaluations.calls == (2 if when == "loop" else 1)  # step 8's evaluation (when it failed) and the final one
    assert_ends_like(out, whole)


def test_ctrl_c_during_an_evaluation_is_resumed_by_that_evaluation(tmp_path, monkeypatch, whole):
    from dept_vl.train.run import Run

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        Count(patch, Run, "evaluate", fail_on=2)  # inside step 4's evaluation: the one that finds the best
        assert pretrain(out) == 130
    assert state(out, 4)["evaluated"] is False and state(out, 4)["best_step"] == 2
    assert pretrain(out, "--resume") == 0
    assert_ends_like(out, whole)


@pytest.mark.parametrize("after", [False, True], ids=["before-the-write", "after-the-write"])
def test_ctrl_c_while_the_best_adapter_is_written_keeps_best_score_and_checkpoint_together(tmp_path, monkeypatch, whole, after):
    from dept_vl.dept import DePTModel

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        # the best adapter is written at step 2, then at step 4: interrupted (checkpoints are written apart)
        Count(patch, DePTModel, "save_pretrained", fail_on=2, after=after, only=lambda model, path: Path(path) == out / "adapter")
        assert pretrain(out) == 130
    # the checkpoint still records the step-2 best; adapter/ holds step 4 only when its write had finished
    assert state(out, 4)["best_step"] == 2 and state(out, 4)["evaluated"] is False
    assert same_tensors(out / "adapter", whole / "adapter") is after
    assert pretrain(out, "--resume") == 0
    assert_ends_like(out, whole)


def interrupt_at_step(monkeypatch, step: int, error: type[BaseException] = KeyboardInterrupt) -> None:
    """``error`` (Ctrl-C by default) while the batch of step ``step`` is being taken (steps before it are done)."""
    import dept_vl.train.run as run

    original = run.train_loop

    class Dying(list):
        def __getitem__(self, index):
            if index == step - 1:
                raise error("injected")
            return super().__getitem__(index)

    monkeypatch.setattr(run, "train_loop", lambda model, batches, *a, **k: original(model, Dying(batches[i] for i in range(len(batches))), *a, **k))


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_resume_takes_the_newest_complete_checkpoint_says_which_and_cleans_leftovers(tmp_path, monkeypatch, capsys, whole, damage):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 7)  # checkpoints at 4 and 6 (two kept)
        assert pretrain(out) == 130
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("step_*")) == ["step_0000004", "step_0000006"]
    newest = checkpoints / "step_0000006" / "optimizer.pt"
    if damage == "missing":  # a second Ctrl-C in the middle of removing it
        newest.unlink()
    else:  # a power cut while it was written
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    # what interrupted saves leave behind
    (checkpoints / ".tmp-step_0000008").mkdir()
    (checkpoints / ".trash-step_0000002").mkdir()
    (out / "adapter" / ".adapter_model.safetensors.x1y2.tmp").write_bytes(b"")
    capsys.readouterr()

    assert pretrain(out, "--resume") == 0
    said = capsys.readouterr().out
    assert "using step_0000004: step_0000006 is incomplete (optimizer.pt is " in said
    assert f"resumed from {checkpoints / 'step_0000004'} at step 4" in said
    assert not list(checkpoints.glob(".tmp-*")) and not list(checkpoints.glob(".trash-*"))
    assert not list((out / "adapter").glob("*.tmp"))
    assert_ends_like(out, whole)  # steps 5 and 6 were logged twice before; log.jsonl was cut back to step 4


def test_resume_with_no_checkpoint_says_so_and_starts_over(tmp_path, monkeypatch, capsys, whole):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 2, error=MemoryError)  # a crash before any checkpoint (save_every=0 writes none)
        with pytest.raises(MemoryError):
            pretrain(out, "train.save_every=0")
    assert not (out / "checkpoints").exists() and len(log_lines(out)) == 1  # step 1 was logged
    capsys.readouterr()
    assert pretrain(out, "train.save_every=0", "--resume") == 0
    assert f"--resume: no checkpoint in {out / 'checkpoints'}; starting from step 0" in capsys.readouterr().out
    assert log_lines(out) == log_lines(whole)


def test_resume_refuses_settings_that_change_results_and_names_each(tmp_path, monkeypatch, capsys, whole):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 3)
        assert pretrain(out) == 130
    before = (out / "config.yaml").read_text()
    capsys.readouterr()
    assert pretrain(out, "--resume", "dept.lr_prompt=0.01", "data.tasks=[shapes_color]", "ulpt.projection=uniform",
                    "attempt.temperature=3", "mpt.rank=2") == 2
    error = capsys.readouterr().err
    assert "dept.lr_prompt: 0.3 -> 0.01" in error and "data.tasks: ['shapes_color', 'shapes_count'] -> ['shapes_color']" in error
    # the other methods' sections count too (a resumed ULPT, ATTEMPT or MPT run would change with them)
    assert "ulpt.projection: 'normal' -> 'uniform'" in error and "attempt.temperature: None -> 3" in error
    assert "mpt.rank: 1 -> 2" in error
    assert (out / "config.yaml").read_text() == before  # the refused settings were not recorded
    # settings that do not change results are taken (a larger evaluation batch, a time limit)
    assert pretrain(out, "--resume", "eval.batch_size=32") == 0
    assert_ends_like(out, whole)


def test_a_nan_loss_names_the_checkpoint_that_is_kept(tmp_path, monkeypatch):
    from dept_vl.train.loop import NonFiniteLoss, Training

    original = Training.step
    calls = {"n": 0}

    def nan_at_five(self, tensors):
        calls["n"] += 1
        losses = original(self, tensors)
        return losses * float("nan") if calls["n"] == 5 else losses

    monkeypatch.setattr(Training, "step", nan_at_five)
    with pytest.raises(NonFiniteLoss, match="before step 5") as caught:
        pretrain(tmp_path / "run")
    kept = tmp_path / "run" / "checkpoints" / "step_0000004"
    assert f"The last good checkpoint is kept in {kept}" in str(caught.value) and kept.is_dir()


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dept_vl.cli import main
    from dept_vl.train.loop import Training

    marker, calls, original = Path(sys.argv[1]), [], Training.step

    def step(self, tensors):  # the 4th step waits for the signal, before it changes anything
        calls.append(1)
        if len(calls) == 4:
            marker.write_text("ready")
            time.sleep(60)
        return original(self, tensors)

    Training.step = step
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_save_a_checkpoint_like_ctrl_c_in_a_real_process(tmp_path, whole, signum):
    out, marker = tmp_path / "run", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), "pretrain", *ARGS, f"output_dir={out}"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the child never reached step 4"
        time.sleep(0.05)
    child.send_signal(signum)
    stdout, stderr = child.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert child.returncode == 130, stderr[-2000:]
    assert f"{name} received at step 3: saving a checkpoint" in stdout + stderr
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_0000003"
    if signum == signal.SIGTERM:  # the saved step 3 continues exactly
        assert pretrain(out, "--resume") == 0
        assert_ends_like(out, whole)


def test_patience_stops_pretraining_after_the_best_and_resumes_to_the_same_stop(tmp_path, monkeypatch, whole):
    """train.patience=1: the best is at step 4, the evaluation at 6 brings nothing better, so the run ends at 6 with
    step 4's adapter (the uninterrupted run's best); killed at step 5 and resumed, it stops at the same step."""
    assert results(whole)[1] == 4
    out = tmp_path / "early"
    assert pretrain(out, "train.patience=1") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["steps"], metrics["best_step"], metrics["complete"], metrics["stopped_early"]) == (6, 4, True, True)
    assert same_tensors(out / "adapter", whole / "adapter")
    assert max(line["step"] for line in log_lines(out)) == 6  # nothing trained after the stop
    resumed = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 5)
        assert pretrain(resumed, "train.patience=1") == 130
    assert pretrain(resumed, "--resume", "train.patience=1") == 0
    assert results(resumed) == results(out) and same_tensors(resumed / "adapter", out / "adapter")

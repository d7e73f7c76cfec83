"""accelerate conventions: the launcher's mixed precision respected or refused with what dept-vl does instead,
train.gradient_checkpointing for the text and the VL model, and train.report_to through accelerate's trackers."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest
import torch

from dept_vl.config import ModelConfig, RunConfig, TrainConfig
from dept_vl.methods import get_method
from dept_vl.models import build_vl_model
from dept_vl.train.precision import LAUNCHER_ENV, apply_launcher_precision
from dept_vl.train.run import Run
from dept_vl.train.tracking import report_to
from tests.conftest import tiny_t5

WORDS = "what is red blue circle square yes no".split()


# ------------------------------------------------------------------ the launcher's mixed precision
@pytest.mark.parametrize("asked", [None, "no"])
def test_no_launcher_precision_keeps_dept_vl_rules(monkeypatch, asked):
    if asked is None:
        monkeypatch.delenv(LAUNCHER_ENV, raising=False)
    else:
        monkeypatch.setenv(LAUNCHER_ENV, asked)  # what `accelerate launch` passes when nothing was asked
    config = RunConfig()
    assert apply_launcher_precision(config, get_method("dept")) is config


def test_bf16_runs_a_frozen_base_in_bfloat16_and_autocasts_a_trained_one(monkeypatch):
    monkeypatch.setenv(LAUNCHER_ENV, "bf16")
    dept, full = get_method("dept"), get_method("full")
    frozen = apply_launcher_precision(RunConfig(), dept)
    assert frozen.model.dtype == "bfloat16" and dept.base_dtype(frozen, torch.device("cpu")) == torch.bfloat16
    assert dept.mixed_precision(frozen, "cpu") == "no"  # no autocast: the adapter's parameters stay float32
    trained = apply_launcher_precision(RunConfig(method="full"), full)
    assert full.mixed_precision(trained, "cpu") == "bf16" and full.base_dtype(trained, torch.device("cpu")) == torch.float32


def test_fp16_is_respected_for_a_trained_base_and_refused_for_a_frozen_one(monkeypatch):
    monkeypatch.setenv(LAUNCHER_ENV, "fp16")
    assert get_method("full").mixed_precision(apply_launcher_precision(RunConfig(method="full"), get_method("full")), "cpu") == "fp16"
    with pytest.raises(ValueError, match="ACCELERATE_MIXED_PRECISION=fp16 .accelerate launch --mixed_precision fp16.: method "
                                         "'dept' does not autocast its frozen base; dept-vl runs the frozen base in model.dtype"):
        apply_launcher_precision(RunConfig(), get_method("dept"))
    with pytest.raises(ValueError, match="does not autocast"):  # Run.setup applies it before it builds the accelerator
        Run.setup(RunConfig(), ["shapes_count"], base=tiny_t5())


def test_a_launcher_precision_that_contradicts_the_config_is_refused(monkeypatch):
    monkeypatch.setenv(LAUNCHER_ENV, "bf16")
    with pytest.raises(ValueError, match="bf16 .* contradicts model.dtype=float32"):
        apply_launcher_precision(RunConfig(model=ModelConfig(dtype="float32")), get_method("dept"))
    with pytest.raises(ValueError, match="contradicts train.mixed_precision=fp16"):
        apply_launcher_precision(RunConfig(method="full", train=TrainConfig(mixed_precision="fp16")), get_method("full"))
    monkeypatch.setenv(LAUNCHER_ENV, "fp8")
    with pytest.raises(ValueError, match="fp8.*supports bf16"):
        apply_launcher_precision(RunConfig(), get_method("dept"))


# ------------------------------------------------------------------ gradient checkpointing
def _gradients(base, checkpointing: bool) -> tuple[dict[str, torch.Tensor], int]:
    config = RunConfig(train=TrainConfig(gradient_checkpointing=checkpointing))
    run = Run.setup(config, ["shapes_count"], base=base)
    model = run.new_model(seed=0).train()
    assert model.is_gradient_checkpointing == checkpointing
    with torch.no_grad():
        model.lowrank_B.normal_(generator=torch.Generator().manual_seed(1))
    text = getattr(base, "text_model", base)
    calls = []
    hook = text.get_encoder().block[0].layer[0].register_forward_hook(lambda *args: calls.append(1))
    ids = torch.randint(3, 9, (2, 5), generator=torch.Generator().manual_seed(0))
    extra = {"pixel_values": torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(2))} if text is not base else {}
    model(input_ids=ids, labels=ids[:, :3].clone(), **extra).loss.backward()
    hook.remove()
    return {n: p.grad for n, p in model.trainable_parameters().items()}, len(calls)


@pytest.mark.parametrize("kind", ["t5", "vl"])
def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients(kind):
    def base():
        torch.manual_seed(0)
        return tiny_t5() if kind == "t5" else build_vl_model("tiny", vocabulary=WORDS)

    plain, plain_calls = _gradients(base(), False)
    checkpointed, calls = _gradients(base(), True)
    assert (plain_calls, calls) == (1, 2)  # the encoder's first layer runs again in the backward pass
    assert set(plain) == set(checkpointed) and {"prompt", "lowrank_A", "lowrank_B"} <= set(plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ experiment tracking
def test_report_to_names_the_missing_package():
    assert report_to("none") == []
    for tracker in ("tensorboard", "wandb"):
        if importlib.util.find_spec(tracker) is None:
            with pytest.raises(ValueError, match=f"train.report_to={tracker} needs the package {tracker}: pip install {tracker}"):
                report_to(tracker)
        else:
            assert report_to(tracker) == [tracker]
    assert report_to("auto") == (["tensorboard"] if importlib.util.find_spec("tensorboard") else [])


def test_the_training_log_writes_to_the_accelerators_trackers(tmp_path):
    from accelerate.tracking import GeneralTracker

    from dept_vl.train.distributed import make_accelerator
    from dept_vl.train.hooks import TrainLog

    class Recorder(GeneralTracker):
        name, requires_logging_directory, main_process_only = "recorder", False, True

        def __init__(self):
            super().__init__()
            self.logged: list[tuple[dict, int]] = []

        @property
        def tracker(self):
            return self

        def log(self, values, step=None, **kwargs):
            self.logged.append((values, step))

    recorder = Recorder()
    accelerator = make_accelerator(report_to=[recorder], project_dir=str(tmp_path))
    log = TrainLog(tmp_path / "log.jsonl", accelerator, total_steps=10, first_step=0, show_progress=False)
    log.train({"step": 5, "loss": 1.5, "examples_per_s": 80.0, "lr": [0.3, 1e-4], "step_time_ms": 3.0}, ["prompt", "lowrank"])
    log.eval({"step": 10, "eval": 0.625, "best": 0.625, "best_step": 10})
    log.close()
    assert recorder.logged == [({"train/loss": 1.5, "train/examples_per_s": 80.0, "lr/prompt": 0.3, "lr/lowrank": 1e-4}, 5),
                               ({"eval/headline": 0.625}, 10)]
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [5, 10]


def test_tensorboard_writes_event_files_into_the_run_folder(tmp_path):
    pytest.importorskip("tensorboard")
    from dept_vl.train.distributed import make_accelerator
    from dept_vl.train.hooks import TrainLog

    accelerator = make_accelerator(report_to=report_to("tensorboard"), project_dir=str(tmp_path))
    log = TrainLog(tmp_path / "log.jsonl", accelerator, total_steps=1, first_step=0, show_progress=False)
    log.eval({"step": 1, "eval": 0.5, "best": 0.5, "best_step": 1})
    log.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_wandb_logs_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from dept_vl.train.distributed import make_accelerator
    from dept_vl.train.hooks import TrainLog

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    accelerator = make_accelerator(report_to=report_to("wandb"), project_dir=str(tmp_path))
    log = TrainLog(tmp_path / "log.jsonl", accelerator, total_steps=1, first_step=0, show_progress=False)
    log.eval({"step": 1, "eval": 0.5, "best": 0.5, "best_step": 1})
    log.close()
    assert list(tmp_path.glob("wandb/offline-run-*"))

"""The training loop's fast path: when it is used, and that it trains like the eager loop."""

from __future__ import annotations

import pytest
import torch

from dept_vl.config import TrainConfig
from dept_vl.train.compiling import use_compile
from dept_vl.train.loader import Batch


def test_compile_switch():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert use_compile(TrainConfig(max_steps=5000), cuda, 1)
    assert not use_compile(TrainConfig(max_steps=100), cuda, 1)  # short k-shot runs: compiling costs more than it saves
    assert not use_compile(TrainConfig(max_steps=5000), cuda, 2)
    assert not use_compile(TrainConfig(max_steps=5000), cpu, 1)
    assert not use_compile(TrainConfig(max_steps=5000, compile="off"), cuda, 1)
    assert use_compile(TrainConfig(max_steps=5, compile="on"), cpu, 1)
    with pytest.raises(ValueError, match="train.compile='yes'"):
        use_compile(TrainConfig(compile="yes"), cpu, 1)


def test_compile_auto_picks_the_least_estimated_time_and_says_why():
    """The estimate at T5-base (24 blocks) on one GPU: eager 100 ms a step; blocks 50 s + 60 ms a step; model 250 s
    + 12 ms.
    1,000 steps: eager 100 s < blocks 110 s; 1,500 steps (the issue's run, which the whole-model compile made twice
    as slow as eager): blocks 140 s < eager 150 s < model 268 s; 5,000 steps: model 310 s < blocks 350 s."""
    from dept_vl.train.compiling import compile_choice

    cuda = torch.device("cuda")
    assert compile_choice(TrainConfig(max_steps=1000), cuda, 1)[:2] == (False, "blocks")
    compiled, scope, why = compile_choice(TrainConfig(max_steps=1500), cuda, 1)
    assert (compiled, scope) == (True, "blocks")
    assert why.startswith("train.compile=auto: compiled, compile_scope=blocks (estimated time of 1,500 steps of a "
                          "24-block model on one GPU, from figures measured at T5-base: eager 150 s, blocks 140 s, model 268 s;")
    # steps and the whole model's compile scale with depth, blocks' compile does not: a 4-block model at 1,500 steps,
    # eager 25 s < model 41.7 + 3 s < blocks 50 + 15 s; a 48-block one at 1,000 steps, blocks 50 + 120 s < eager 200 s
    assert compile_choice(TrainConfig(max_steps=1500), cuda, 1, blocks=4)[:2] == (False, "model")
    assert compile_choice(TrainConfig(max_steps=1000), cuda, 1, blocks=48)[:2] == (True, "blocks")
    assert compile_choice(TrainConfig(max_steps=5000), cuda, 1)[:2] == (True, "model")
    # a scope set by hand is the only one weighed against eager
    assert compile_choice(TrainConfig(max_steps=1500, compile_scope="model"), cuda, 1)[:2] == (False, "model")
    assert compile_choice(TrainConfig(max_steps=3000, compile_scope="model"), cuda, 1)[:2] == (True, "model")
    # compile=on: the scope of least time; off, CPU and several processes: eager
    assert compile_choice(TrainConfig(max_steps=100, compile="on"), cuda, 1)[:2] == (True, "blocks")
    assert compile_choice(TrainConfig(max_steps=10000, compile="on"), cuda, 1)[:2] == (True, "model")
    assert not compile_choice(TrainConfig(max_steps=5000, compile="off"), cuda, 1)[0]
    assert compile_choice(TrainConfig(max_steps=100, compile="on"), cuda, 2)[:2] == (True, "model")  # DDP: the tuned path
    assert compile_choice(TrainConfig(max_steps=3000), cuda, 2)[::2] == (False, "train.compile=auto: eager (2 processes: the "
                                                                          "compiled step is tuned for one GPU)")


def test_the_loop_compiles_the_scope_auto_chose(monkeypatch):
    """The loop asks compile_choice with the model's number of blocks and hands compile_loss the scope it resolved,
    not the configured 'auto'."""
    from accelerate import Accelerator

    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.train import compiling
    from dept_vl.train.loop import prepare_training
    from tests.conftest import tiny_t5

    asked, seen = [], []
    choice = compiling.compile_choice
    monkeypatch.setattr(compiling, "compile_choice", lambda *args: asked.append(args) or choice(*args))
    monkeypatch.setattr(compiling, "compile_loss", lambda model, **options: seen.append(options) or (lambda **batch: None))
    model = DePTModel(tiny_t5(), DePTConfig(num_virtual_tokens=4, rank=2, max_length=64))
    blocks = len(model.base_model.encoder.block) + len(model.base_model.decoder.block)
    for scope in ("model", "blocks"):
        cfg = TrainConfig(max_steps=10, compile="on", compile_scope=scope)
        prepare_training(model, cfg, Accelerator(cpu=True))
        assert asked[-1][-1] == blocks
        assert seen[-1]["enabled"] is True and seen[-1]["scope"] == choice(cfg, torch.device("cpu"), 1, blocks)[1] == scope
    prepare_training(model, TrainConfig(max_steps=10, compile="on"), Accelerator(cpu=True))  # auto: the estimate's pick
    assert seen[-1]["scope"] == choice(TrainConfig(max_steps=10, compile="on"), torch.device("cpu"), 1, blocks)[1] != "auto"


@pytest.mark.parametrize("attention, expected", [("auto", "sdpa"), ("eager", "eager")])
def test_loop_sets_the_configured_attention(attention, expected):
    """``train.attention``: auto keeps the model's own on CPU (the biased kernel is for CUDA); a name is set."""
    from accelerate import Accelerator

    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.train.loop import train_loop
    from tests.conftest import tiny_t5

    ids = torch.randint(3, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids[:, :3].clone()}
    model = DePTModel(tiny_t5(), DePTConfig(num_virtual_tokens=2, rank=1, max_length=16))
    model.base_model.config._attn_implementation = "sdpa"
    cfg = TrainConfig(max_steps=1, warmup_steps=0, log_every=1, eval_every=10**6, save_every=0, compile="off", attention=attention)
    result = train_loop(model, [Batch("t", batch)], cfg, Accelerator(cpu=True), show_progress=False)
    assert len(result.history) == 1
    assert model.base_model.config._attn_implementation == expected


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_loop_trains_like_the_eager_loop_on_gpu():
    """The compiled loop (fused biased attention; the whole loss, or each block: regional compilation) and the cuDNN
    kernel follow the eager trajectory within the bf16 noise measured here: the float32 eager run is the reference,
    and eager bf16's own distance from it is the noise of this trajectory (bf16 rounding, amplified by Adam where
    gradients are near zero). A bf16 path may lie up to 3 times that noise, plus one bf16 rounding step of the loss,
    from the reference. (A fixed tolerance on two bf16 runs failed at random: their distance is noise of the same
    size as the tolerance, varying with the non-deterministic order of the attention backward's sums.)"""
    from accelerate import Accelerator

    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.train.attention import cudnn_attention_works
    from dept_vl.train.loop import train_loop
    from tests.conftest import tiny_t5

    gen = torch.Generator().manual_seed(0)
    batches = []
    for width in (7, 19, 40, 12, 33, 25):
        ids = torch.randint(3, 100, (8, width), generator=gen)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(3, 100, (8, 3), generator=gen)})
    losses = {}
    # eager with plain SDPA (float32: the reference; bf16: the noise) against the default path: compiled, and
    # (auto) the fused biased attention kernel; and the cuDNN kernel
    for mode, attention, dtype in (("off_fp32", "sdpa", torch.float32), ("off", "sdpa", torch.bfloat16),
                                   ("on", "auto", torch.bfloat16), ("on_cudnn", "biased_cudnn", torch.bfloat16),
                                   ("on_blocks", "auto", torch.bfloat16)):
        model = DePTModel(tiny_t5().to("cuda", dtype), DePTConfig(num_virtual_tokens=4, rank=2, max_length=64, lr_lowrank=1e-2))
        cfg = TrainConfig(max_steps=len(batches), warmup_steps=0, log_every=1, eval_every=10**6, save_every=0,
                          compile=mode.split("_")[0], compile_scope="blocks" if mode == "on_blocks" else "model",
                          attention=attention)
        result = train_loop(model, [Batch("t", b) for b in batches], cfg, Accelerator(), show_progress=False)
        losses[mode] = torch.tensor([r["loss"] for r in result.history], dtype=torch.float64)
        auto = "dept_biased_cudnn" if cudnn_attention_works("cuda", torch.bfloat16) else "dept_biased_sdpa"
        expected = {"auto": auto, "biased_cudnn": "dept_biased_cudnn"}.get(attention, "sdpa")
        assert model.base_model.config._attn_implementation == expected
    assert len(losses["on"]) == len(batches)
    reference = losses["off_fp32"]
    noise = (losses["off"] - reference).abs().max()
    allowed = 3 * noise + reference.abs() * 2.0**-8  # one bf16 rounding step of the loss
    for mode in ("on", "on_cudnn", "on_blocks"):
        gap = (losses[mode] - reference).abs()
        assert bool((gap <= allowed).all()), (mode, gap.tolist(), allowed.tolist(), float(noise))

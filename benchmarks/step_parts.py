"""The parts of ``train_step.py``: its settings, the batches of each workload, the rows (each variant's model and
step function), padding, and the clock and memory read between rows."""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from dept_vl import DePTConfig, DePTModel  # noqa: E402
from dept_vl.train import compiling, fastpath  # noqa: E402

SCHEMA = "dept-vl-bench/1"
SIZES = {  # T5 v1.0 shapes; vocab 32128
    "tiny": dict(d_model=64, d_ff=128, num_layers=2, num_heads=4, d_kv=16, vocab_size=512),
    "small": dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8, d_kv=64, vocab_size=32128),
    "base": dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64, vocab_size=32128),
    "large": dict(d_model=1024, d_ff=4096, num_layers=24, num_heads=16, d_kv=64, vocab_size=32128),
}
M, R, S, PT_TOKENS, LORA_R, LABEL_LEN = 60, 30, 256, 100, 8, 4
SWEEP = (32, 64, 128, 256)
LEVERS = {"_biased": "biased_sdpa", "_cudnn": "biased_cudnn", "_auto": "auto"}  # row suffix -> attention of that row
T0 = time.time()


def log(*args: Any) -> None:
    print(f"[{time.time() - T0:6.1f}s]", *args, flush=True)


# ------------------------------------------------------------------ data
def glue_lengths(n: int, rng: np.random.Generator, median: float = 40, sigma: float = 0.6, lo: int = 8, hi: int = S) -> np.ndarray:
    return np.clip(np.round(np.exp(rng.normal(math.log(median), sigma, n))), lo, hi).astype(int)


def make_batch(lengths: np.ndarray, vocab: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Right-padded to the batch's longest row; eos (1) ends every row; labels: 3 tokens + eos."""
    width = int(lengths.max())
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, : n - 1] = torch.from_numpy(rng.integers(2, vocab, n - 1))
        ids[i, n - 1] = 1
        mask[i, :n] = 1
    labels = torch.from_numpy(rng.integers(2, vocab, (len(lengths), LABEL_LEN)))
    labels[:, -1] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def workloads(batch: int, steps: int, vocab: int, seed: int = 0) -> dict[str, list[dict[str, torch.Tensor]]]:
    rng = np.random.default_rng(seed)
    glue = glue_lengths(batch * steps, rng)
    grouped = np.sort(glue).reshape(steps, batch)[rng.permutation(steps)]
    out = {
        "glue": [make_batch(glue[i * batch:(i + 1) * batch], vocab, rng) for i in range(steps)],
        "glue_grouped": [make_batch(row, vocab, rng) for row in grouped],
        "full256": [make_batch(np.full(batch, S), vocab, rng) for _ in range(max(steps // 2, 2))],
    }
    for length in SWEEP:
        out[f"len{length}"] = [make_batch(np.full(batch, length), vocab, rng) for _ in range(max(steps // 2, 2))]
    return out


# ------------------------------------------------------------------ models
def build_t5(size: str, dtype: torch.dtype, attention: str, device: str, seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(**SIZES[size], dropout_rate=0.1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    with torch.device(device):
        model = T5ForConditionalGeneration(config)
    fastpath.set_attention(model, attention)
    return model.to(dtype).train()


class ReferenceDePT(torch.nn.Module):
    """The DePT reference code's computation, written out: fp32, inputs padded to s, prompt in front."""

    def __init__(self, base: torch.nn.Module, m: int = M, r: int = R, s: int = S, alpha: float = 8.0):
        super().__init__()
        self.base, self.scale = base.requires_grad_(False), alpha / math.sqrt(r)
        emb = base.get_input_embeddings().weight
        d, dev = emb.shape[1], emb.device
        self.prompt = torch.nn.Parameter(emb[torch.randint(0, min(5000, emb.shape[0]), (m,), device=dev)].detach().clone().float())
        self.A = torch.nn.Parameter(torch.nn.init.kaiming_uniform_(torch.empty(s, r, device=dev), a=math.sqrt(5)))
        self.B = torch.nn.Parameter(torch.zeros(r, d, device=dev))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.base.get_input_embeddings()(input_ids) + self.scale * (self.A @ self.B)  # shape error unless L == s
        x = torch.cat([self.prompt.expand(x.shape[0], -1, -1), x], dim=1)
        mask = torch.cat([attention_mask.new_ones(x.shape[0], self.prompt.shape[0]), attention_mask], dim=1)
        return x, mask

    def forward(self, input_ids, attention_mask, labels=None):
        x, mask = self.embed(input_ids, attention_mask)
        return self.base(inputs_embeds=x, attention_mask=mask, labels=labels)

    def generate(self, input_ids, attention_mask, **kw):
        x, mask = self.embed(input_ids, attention_mask)
        return self.base.generate(inputs_embeds=x, attention_mask=mask, **kw)


def lever_suffix(name: str) -> str:
    """The attention-lever suffix of a row name (a key of ``LEVERS``), or ``""``."""
    return next((suffix for suffix in LEVERS if name.endswith(suffix)), "")


def build_variant(name: str, size: str, device: str, args: argparse.Namespace) -> dict[str, Any]:
    """Model, step function, padding policy and FLOP facts of one row."""
    on_gpu = device == "cuda"
    fast_dtype = torch.bfloat16 if on_gpu else torch.float32
    lever = lever_suffix(name)
    base_name = name.removesuffix(lever) if lever else name
    if base_name in ("dept_fast", "pt100_fast", "dept_eager"):
        from accelerate import Accelerator

        from dept_vl.config import TrainConfig
        from dept_vl.train.loop import prepare_training

        m, r = (PT_TOKENS, 0) if base_name == "pt100_fast" else (M, R)
        base = build_t5(size, torch.float32, "sdpa", device)
        model = DePTModel(base, DePTConfig(num_virtual_tokens=m, rank=r, max_length=S, init="vocab"))
        fastpath.prepare_fast_model(model, fast_dtype)  # what model.dtype=auto gives the loop: the frozen base in bf16 on GPU
        compiled = base_name != "dept_eager" and not args.no_compile
        # the training loop's own step: the same optimizer, schedule, clipping, attention and compiled loss
        cfg = TrainConfig(max_steps=10**6, warmup_steps=0, compile="on" if compiled else "off",
                          attention=LEVERS.get(lever, args.attention), compile_scope=args.compile_scope)
        training = prepare_training(model, cfg, Accelerator(cpu=not on_gpu), max_length=S)
        if compiled and (args.mode != "reduce-overhead" or args.static_shapes or not on_gpu):
            # levers the loop does not take: another compile mode, static shapes, or a CPU debug backend
            training.loss_fn = compiling.compile_loss(training.wrapped, mode=args.mode, dynamic=not args.static_shapes,
                                                     backend="inductor" if on_gpu else args.cpu_backend, scope=args.compile_scope)

        def step(b):
            training.step([b])

        return dict(model=model, step=step, pad=("bucket", args.buckets), prompt=m, fwd_mult=2, compiled=compiled,
                    generate=lambda b: model.generate(**_gen_inputs(b), max_new_tokens=LABEL_LEN, do_sample=False))
    if base_name == "reference":
        base = build_t5(size, torch.float32, "eager", device)
        model = ReferenceDePT(base)
        opt = torch.optim.AdamW([{"params": [model.prompt], "lr": 0.3}, {"params": [model.A, model.B], "lr": 1e-4}], weight_decay=1e-5)
        return dict(model=model, step=_eager_step(model, opt), pad=("s", S), prompt=M, fwd_mult=2, compiled=False,
                    generate=lambda b: model.generate(**_gen_inputs(b), max_new_tokens=LABEL_LEN, do_sample=False))
    if base_name in ("peft_pt100", "peft_lora"):
        from peft import LoraConfig, PromptTuningConfig, get_peft_model

        base = build_t5(size, fast_dtype, "sdpa", device)
        if base_name == "peft_pt100":
            cfg = PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=PT_TOKENS)
        else:
            cfg = LoraConfig(task_type="SEQ_2_SEQ_LM", r=LORA_R, lora_alpha=16, lora_dropout=0.1, target_modules=["q", "v"])
        model = get_peft_model(base, cfg)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.3 if base_name == "peft_pt100" else 1e-4)
        out = dict(model=model, step=_eager_step(model, opt), pad=("max", None), prompt=PT_TOKENS if base_name == "peft_pt100" else 0,
                   fwd_mult=2, compiled=False)
        if base_name == "peft_pt100":
            out["generate"] = lambda b: model.generate(**_gen_inputs(b), max_new_tokens=LABEL_LEN, do_sample=False)
        return out
    if base_name == "full_ft":
        model = build_t5(size, torch.float32, "sdpa", device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        return dict(model=model, step=_eager_step(model, opt, autocast=on_gpu), pad=("max", None), prompt=0, fwd_mult=3, compiled=False)
    raise ValueError(f"unknown variant {name!r}")


def _gen_inputs(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}


def _eager_step(model: torch.nn.Module, opt: torch.optim.Optimizer, autocast: bool = False) -> Callable:
    def step(b):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def pad_batch(b: dict[str, torch.Tensor], policy: tuple[str, Any]) -> dict[str, torch.Tensor]:
    kind, value = policy
    if kind == "max":
        return b
    if kind == "s":
        return fastpath.pad_to_bucket(b, [value])
    return fastpath.pad_to_bucket(b, value, max_length=S)


class Clock:
    """Per-step intervals between CUDA events (no sync inside the loop), or host time on the CPU."""

    def __init__(self, device: str, n: int):
        self.cuda = device == "cuda"
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)] if self.cuda else []
        self.host: list[float] = []

    def mark(self, i: int) -> None:
        if self.cuda:
            self.events[i].record()
        else:
            self.host.append(time.perf_counter())

    def intervals_ms(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.events, self.events[1:])]
        return [(b - a) * 1e3 for a, b in zip(self.host, self.host[1:])]


def to_device(b: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in b.items()}


def memory_gb(device: str) -> dict[str, float]:
    if device != "cuda":
        return {}
    s = torch.cuda.memory_stats()
    free, total = torch.cuda.mem_get_info()
    return {"peak_alloc_gb": s["allocated_bytes.all.peak"] / 2**30, "peak_reserved_gb": s["reserved_bytes.all.peak"] / 2**30,
            "device_used_gb": (total - free) / 2**30}


def clean(device: str) -> None:
    gc.collect()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    if device == "cuda":
        try:
            from torch._inductor import cudagraph_trees

            cudagraph_trees.reset_cudagraph_trees()
        except Exception:  # noqa: BLE001 - best effort between rows
            pass
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


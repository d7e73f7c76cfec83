"""Training-step benchmark: dept-vl's fast path side by side with the reference DePT setting, HF peft and full fine-tuning.

One run measures, on one machine, for T5 models built from configs (random weights), batch 32:
step time (forward + backward + optimizer step; median of per-step CUDA-event intervals after warm-up),
examples/s (all examples over all timed steps), peak memory (from before the model is built, so CUDA
graph pools and compile workspaces count), MFU against a bf16 matmul ceiling measured in the same run,
and generation latency; plus the VL model with its image-feature cache on and off.

    PYTHONPATH=. python benchmarks/train_step.py --size base --out benchmarks/results/t5-base.json
    python benchmarks/train_step.py --smoke --out smoke.json      # CPU, tiny model, seconds

Rows (``variant``): ``reference`` (the DePT code's setting: every input padded to s=256, fp32, eager,
written here), ``dept_fast`` / ``pt100_fast`` (DePT m=60 r=30 and prompt tuning with 100 tokens on
dept-vl's fast path: bf16 base, length buckets, torch.compile, fused AdamW, gradient clipping and the
linear schedule; each step is the training loop's own, ``dept_vl.train.loop.prepare_training(...).step``),
``dept_eager`` (the same without compilation), ``peft_pt100`` / ``peft_lora`` (HF peft as its users run it: bf16 base, dynamic
padding, eager), ``full_ft`` (fp32 weights, bf16 autocast, eager). ``*_biased`` / ``*_cudnn`` rows use the
fused biased attention (``biased_sdpa`` / ``biased_cudnn``); ``*_auto`` rows are what the loop runs by default on
a GPU (``train.attention=auto``: ``biased_cudnn`` where cuDNN's attention passes its check at start, else ``biased_sdpa``). Workloads: ``glue`` (lognormal lengths, median 40, sigma 0.6, clipped to [8, 256]),
``glue_grouped`` (the same lengths, length-grouped batches), ``full256``, ``len32`` ... ``len256``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
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


# ------------------------------------------------------------------ measuring
def step_flops(size: str, enc_tokens: int, dec_tokens: int, mult: int) -> float:
    """Weights each token meets x 2 (forward) x mult (2 frozen base, 3 full fine-tuning); attention scores left out."""
    c = SIZES[size]
    d, ff, inner, n, vocab = c["d_model"], c["d_ff"], c["num_heads"] * c["d_kv"], c["num_layers"], c["vocab_size"]
    enc = n * (4 * d * inner + 2 * d * ff) + n * 2 * d * inner  # encoder layers + the decoder's cross-attention k, v
    dec = n * (6 * d * inner + 2 * d * ff) + d * vocab           # decoder self + cross q, o + FFN + lm head
    return 2.0 * (enc * enc_tokens + dec * dec_tokens) * mult


def matmul_ceiling(device: str) -> float:
    """bf16 8192^3 matmul TFLOP/s on random data (median of 20 after warm-up)."""
    if device != "cuda":
        return float("nan")
    n = 8192
    a, b = torch.randn(n, n, device=device, dtype=torch.bfloat16), torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    times = []
    for _ in range(20):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record(); a @ b; e1.record(); torch.cuda.synchronize()  # noqa: E702
        times.append(e0.elapsed_time(e1) / 1e3)
    return 2 * n**3 / float(np.median(times)) / 1e12


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


def run_workload(v: dict[str, Any], wl: str, batches: list[dict], size: str, device: str, warmup: int, check_syncs: bool) -> dict[str, Any]:
    prepared = [pad_batch(b, v["pad"]) for b in batches]
    if device == "cuda":
        prepared = [{k: t.pin_memory() for k, t in b.items()} for b in prepared]
    t0 = time.perf_counter()
    shapes: dict[int, dict] = {}
    for b in prepared:  # warm up every distinct width (compilation, CUDA graph recording)
        shapes.setdefault(int(b["input_ids"].shape[1]), b)
    for b in shapes.values():
        for _ in range(warmup):
            v["step"](to_device(b, device))
    if device == "cuda":
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    clock = Clock(device, len(prepared))
    syncs: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if check_syncs and device == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        clock.mark(0)
        for i, b in enumerate(prepared):
            v["step"](to_device(b, device))
            clock.mark(i + 1)
        if check_syncs and device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
        syncs = [str(w.message)[:120] for w in caught if "called a synchronizing" in str(w.message)]
    ms = clock.intervals_ms()
    total_s = sum(ms) / 1e3
    n_examples = sum(int(b["input_ids"].shape[0]) for b in prepared)
    enc_real = sum(int(b["attention_mask"].sum()) + v["prompt"] * int(b["input_ids"].shape[0]) for b in batches)
    enc_padded = sum(int(b["input_ids"].numel()) + v["prompt"] * int(b["input_ids"].shape[0]) for b in prepared)
    dec = sum(int(b["labels"].numel()) for b in batches)
    flops = step_flops(size, enc_real, dec, v["fwd_mult"])
    return {
        "step_ms_median": float(np.median(ms)), "step_ms_mean": float(np.mean(ms)), "examples_per_s": n_examples / total_s,
        "n_steps": len(ms), "warmup_s": warm_s, "widths": sorted(shapes), "real_token_fraction": enc_real / enc_padded,
        "tflop_per_s": flops / total_s / 1e12, "host_syncs": len(syncs) if check_syncs else None, "sync_examples": syncs[:3],
    }


def run_variant(name: str, wls: list[str], data: dict, args: argparse.Namespace, ceiling: float, out: dict) -> None:
    device = args.device
    clean(device)
    before = memory_gb(device).get("device_used_gb", 0.0)
    t0 = time.perf_counter()
    try:
        v = build_variant(name, args.size, device, args)
    except Exception as err:  # noqa: BLE001 - a row that cannot be built is reported, the rest still runs
        out["errors"].append({"variant": name, "stage": "build", "error": repr(err)[:500]})
        log(f"{name}: build failed: {err!r}")
        return
    weights = sum(p.numel() * p.element_size() for p in v["model"].parameters()) / 2**30
    for wl in wls:
        if time.time() - T0 > args.deadline:
            out["skipped"].append(f"{name}/{wl}: deadline")
            continue
        try:
            res = run_workload(v, wl, data[wl], args.size, device, args.warmup, check_syncs=True)
        except Exception as err:  # noqa: BLE001
            out["errors"].append({"variant": name, "workload": wl, "error": repr(err)[:500], "trace": traceback.format_exc()[-1500:]})
            log(f"{name}/{wl}: failed: {err!r}")
            continue
        counters = torch._dynamo.utils.counters
        res.update(graph_breaks=sum(counters["graph_break"].values()), unique_graphs=counters["stats"].get("unique_graphs", 0),
                   cudagraph_skips=sum(counters["inductor"].get(k, 0) for k in counters["inductor"] if "cudagraph_skip" in k))
        res.update(variant=name, workload=wl, compiled=v["compiled"], weights_gb=weights, device_used_before_gb=before,
                   mfu=res["tflop_per_s"] / ceiling if ceiling == ceiling else None, **memory_gb(device))
        out["results"].append(res)
        log(f"{name:18s} {wl:13s} {res['step_ms_median']:8.2f} ms  {res['examples_per_s']:8.1f} ex/s  "
            f"mfu {res['mfu'] or 0:.3f}  peak {res.get('peak_reserved_gb', 0):.2f} GB  warm {res['warmup_s']:.0f}s  syncs {res['host_syncs']}")
        write(out, args.out)
    if "generate" in v and args.generate and time.time() - T0 < args.deadline:
        try:
            out["generation"].append(dict(variant=name, **measure_generation(v, data["glue"], device)))
        except Exception as err:  # noqa: BLE001
            out["errors"].append({"variant": name, "stage": "generate", "error": repr(err)[:500]})
    if args.profile and name == args.profile:
        try:
            profile(v, data["full256"], device, args)
        except Exception as err:  # noqa: BLE001
            out["errors"].append({"variant": name, "stage": "profile", "error": repr(err)[:500]})
    out["build_and_run_s"][name] = time.perf_counter() - t0
    del v
    write(out, args.out)


def measure_generation(v: dict, batches: list[dict], device: str, n: int = 5) -> dict[str, float]:
    """Greedy decoding of LABEL_LEN tokens, batch of 32 GLUE-like inputs (eager, no compilation)."""
    v["model"].eval()
    times = []
    with torch.no_grad():
        for i, b in enumerate(batches[: n + 1]):
            b = to_device(pad_batch(b, v["pad"]), device)
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            v["generate"](b)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append((time.perf_counter() - t) * 1e3)
    v["model"].train()
    return {"latency_ms_median": float(np.median(times)), "batch": int(batches[0]["input_ids"].shape[0]), "new_tokens": LABEL_LEN}


def profile(v: dict, batches: list[dict], device: str, args: argparse.Namespace) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        for b in batches[:4]:
            v["step"](to_device(pad_batch(b, v["pad"]), device))
        if device == "cuda":
            torch.cuda.synchronize()
    averages, table = prof.key_averages(), ""
    for key in (["self_device_time_total", "self_cuda_time_total"] if device == "cuda" else []) + ["self_cpu_time_total"]:
        try:
            table = averages.table(sort_by=key, row_limit=30, max_name_column_width=90)
            break
        except Exception:  # noqa: BLE001 - the key's name changed across torch versions
            continue
    Path(args.out).with_suffix(".profile.txt").write_text(table)
    log("profile:\n" + table[:3000])


# ------------------------------------------------------------------ checks
def attention_checks(args: argparse.Namespace, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Eager loss and prompt gradient of DePT (dropout off) per attention path and dtype, vs fp32 eager attention.

    Also which SDPA backend PyTorch picks for T5's biased attention (the reason for the biased_sdpa lever).
    """
    device, res = args.device, {}
    try:
        base = build_t5(args.size, torch.float32, "eager", device)
        base.config.dropout_rate = 0.0
        for module in base.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            elif isinstance(getattr(module, "dropout", None), float):
                module.dropout = 0.0
        model = DePTModel(base, DePTConfig(num_virtual_tokens=M, rank=R, max_length=S, init="vocab"))
        with torch.no_grad():
            model.lowrank_B.normal_(0, 0.02)
        b = to_device(fastpath.pad_to_bucket(batch, args.buckets, max_length=S), device)

        def loss_and_grad() -> tuple[float, torch.Tensor]:
            model.zero_grad(set_to_none=True)
            loss = model(**b).loss
            loss.backward()
            return float(loss), model.prompt.grad.detach().clone()

        if device == "cuda":
            from torch.nn.attention import SDPBackend

            names = {int(value): key for key, value in SDPBackend.__members__.items()}
            B, H, L, D = args.batch, SIZES[args.size]["num_heads"], M + S, SIZES[args.size]["d_kv"]
            q, k, v = (torch.randn(B, H, L, D, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            bias = torch.randn(B, H, L, L, device=device, dtype=torch.bfloat16)
            for dropout in (0.0, 0.1):
                choice = torch._fused_sdp_choice(q, k, v, bias, dropout, False, scale=1.0)
                res[f"sdpa_choice_bias_dropout{dropout}"] = names.get(int(choice), str(choice))
            del q, k, v, bias
        ref_loss, ref_grad = loss_and_grad()
        dtypes = [torch.float32] + ([torch.bfloat16] if device == "cuda" else [])
        for dtype in dtypes:
            fastpath.prepare_fast_model(model, dtype)
            for attention in ("eager", "sdpa", "biased_sdpa", "biased_cudnn"):
                name = f"{attention}_{str(dtype).split('.')[-1]}"
                try:
                    fastpath.set_attention(model, attention)
                    loss, grad = loss_and_grad()
                    res[name] = {"loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss),
                                 "prompt_grad_rel_diff": float((grad - ref_grad).norm() / ref_grad.norm())}
                except Exception as err:  # noqa: BLE001
                    res[name] = {"error": repr(err)[:300]}
        del model, base
    except Exception as err:  # noqa: BLE001
        res["error"] = repr(err)[:500]
    log("checks", json.dumps(res))
    return res


# ------------------------------------------------------------------ VL feature cache
def vl_cache(args: argparse.Namespace, out: dict) -> None:
    """DePT on the VL model, text = the T5 size, image = ViT-B/16 (random), 7x7 pooled: pixels vs cached features."""
    device = args.device
    try:
        from dept_vl.models.presets import build_vl_model
    except Exception as err:  # noqa: BLE001
        out["vl"] = {"skipped": f"VL model not importable: {err!r}"}
        print("VL feature-cache section skipped:", err)
        return
    clean(device)
    try:
        text = dict(model_type="t5", **SIZES[args.size], dropout_rate=0.1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        from dept_vl.models.presets import TINY_VIT

        image = "vit_tiny_patch16_224" if args.smoke else "vit_base_patch16_224"
        kwargs = dict(TINY_VIT) if args.smoke else {}
        vl = build_vl_model(text_config=text, image_encoder=image, image_encoder_kwargs=kwargs, image_pretrained=False, pool_size=None if args.smoke else 7).to(device)
        model = DePTModel(vl, DePTConfig(num_virtual_tokens=M, rank=R, max_length=S, init="vocab"))
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        fastpath.prepare_fast_model(model, dtype)
        opt = fastpath.make_optimizer(model.param_groups())
        loss_fn = compiling.compile_loss(model, enabled=False)
        size = vl.image_transform.input_size
        rng = np.random.default_rng(1)
        batches = [make_batch(glue_lengths(args.batch, rng), SIZES[args.size]["vocab_size"], rng) for _ in range(args.steps)]
        batches = [to_device(fastpath.pad_to_bucket(b, args.buckets, max_length=S), device) for b in batches]
        pixels = torch.randn(args.batch, *size, device=device)
        with torch.no_grad():
            features = vl.encode_images(pixels)

        def timed(fn: Callable[[], Any], n: int) -> float:
            for _ in range(args.warmup):
                fn()
            clock = Clock(device, n)
            clock.mark(0)
            for i in range(n):
                fn()
                clock.mark(i + 1)
            return float(np.median(clock.intervals_ms()))

        it = iter(range(10**9))
        enc_ms = timed(lambda: torch.no_grad()(vl.encode_images)(pixels), args.steps)
        no_cache = timed(lambda: fastpath.train_step(loss_fn, opt, {**batches[next(it) % len(batches)], "pixel_values": pixels}), args.steps)
        cached = timed(lambda: fastpath.train_step(loss_fn, opt, {**batches[next(it) % len(batches)], "image_features": features}), args.steps)
        saved = no_cache - cached
        out["vl"] = {"image_encoder": image, "visual_tokens": int(features.shape[1]), "encoder_forward_ms": enc_ms,
                     "step_ms_no_cache": no_cache, "step_ms_cached": cached, "saved_ms": saved,
                     "saved_fraction_of_encoder": saved / enc_ms, "path": "eager, base in bf16, DePT m=60 r=30"}
        log(f"VL cache: encoder {enc_ms:.2f} ms, step {no_cache:.2f} -> {cached:.2f} ms, saved {saved / enc_ms:.0%} of the encoder")
    except Exception as err:  # noqa: BLE001
        out["vl"] = {"error": repr(err)[:500], "trace": traceback.format_exc()[-1500:]}
        log(f"VL cache failed: {err!r}")
    write(out, args.out)


# ------------------------------------------------------------------ report
def summarise(out: dict) -> dict[str, Any]:
    """The issue's target ratios, from rows of this run."""
    rows = {(r["variant"], r["workload"]): r for r in out["results"]}

    def ratio(a, b, key, wl):
        ra, rb = rows.get((a, wl)), rows.get((b, wl))
        a_val, b_val = (ra or {}).get(key), (rb or {}).get(key)
        return a_val / b_val if a_val and b_val else None

    ref_glue = rows.get(("reference", "glue"))
    summary: dict[str, Any] = {}
    for fast, pt in [("dept_fast", "pt100_fast")] + [(f"dept_fast{x}", f"pt100_fast{x}") for x in LEVERS]:
        if (fast, "glue") not in rows:
            continue
        summary[fast] = {
            "speedup_vs_reference_glue": ratio(fast, "reference", "examples_per_s", "glue") if ref_glue else None,
            "speedup_vs_pt100_same_path_glue": ratio(fast, pt, "examples_per_s", "glue"),
            "memory_vs_pt100_same_path_glue": ratio(fast, pt, "peak_reserved_gb", "glue"),
            "memory_alloc_vs_pt100_same_path_glue": ratio(fast, pt, "peak_alloc_gb", "glue"),
            "speedup_vs_pt100_same_path_full256": ratio(fast, pt, "examples_per_s", "full256"),
            "mfu_full256": rows.get((fast, "full256"), {}).get("mfu"),
            "speedup_vs_peft_pt100_glue": ratio(fast, "peft_pt100", "examples_per_s", "glue"),
        }
    return summary


def print_table(out: dict) -> None:
    print(f"\n{out['env'].get('device_name', 'cpu')} | torch {out['env']['torch']} | transformers {out['env']['transformers']} "
          f"| T5-{out['config']['size']} | batch {out['config']['batch']} | bf16 ceiling {out['ceiling_tflops']:.0f} TFLOP/s")
    print(f"{'variant':18s} {'workload':13s} {'step ms':>9s} {'ex/s':>8s} {'MFU':>6s} {'peak GB':>8s} {'alloc GB':>8s}")
    for r in out["results"]:
        print(f"{r['variant']:18s} {r['workload']:13s} {r['step_ms_median']:9.2f} {r['examples_per_s']:8.1f} "
              f"{(r['mfu'] or 0):6.3f} {r.get('peak_reserved_gb', 0):8.2f} {r.get('peak_alloc_gb', 0):8.2f}")
    for g in out["generation"]:
        print(f"generate {g['variant']:18s} {g['latency_ms_median']:8.1f} ms / batch of {g['batch']}, {g['new_tokens']} tokens")
    print("summary:", json.dumps(out["summary"], indent=1))
    if out["errors"]:
        print("errors:", json.dumps([{k: e[k] for k in e if k != "trace"} for e in out["errors"]], indent=1))


def write(out: dict, path: str) -> None:
    out["summary"] = summarise(out)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))


def environment(device: str) -> dict[str, Any]:
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
           "device": device, "cuda": torch.version.cuda}
    try:
        import peft

        env["peft"] = peft.__version__
    except ImportError:
        env["peft"] = None
    if device == "cuda":
        env["device_name"] = torch.cuda.get_device_name()
        env["device_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return env


DEFAULT_ROWS = "reference,dept_fast,pt100_fast,peft_pt100,peft_lora,full_ft,dept_eager,dept_fast_biased,pt100_fast_biased,dept_fast_auto"
WORKLOADS = {  # which workloads each row runs (the reference pads to 256 whatever the lengths)
    "reference": ["glue"],
    "dept_fast": ["glue", "full256", "glue_grouped"] + [f"len{n}" for n in SWEEP],
    "pt100_fast": ["glue", "full256", "glue_grouped"] + [f"len{n}" for n in SWEEP],
    "peft_pt100": ["glue", "full256"] + [f"len{n}" for n in SWEEP],
    "peft_lora": ["glue", "full256"],
    "full_ft": ["glue", "full256"],
    "dept_eager": ["glue", "full256"],
    "dept_fast_biased": ["glue", "full256", "glue_grouped"],
    "pt100_fast_biased": ["glue", "full256", "glue_grouped"],
    "dept_fast_cudnn": ["glue", "full256", "glue_grouped"],
    "pt100_fast_cudnn": ["glue", "full256", "glue_grouped"],
    "dept_fast_auto": ["glue", "full256", "glue_grouped"],
    "pt100_fast_auto": ["glue", "full256", "glue_grouped"],
}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="base", choices=sorted(SIZES))
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, batch 4, 3 steps: checks the script and its JSON")
    p.add_argument("--rows", default=DEFAULT_ROWS, help="comma-separated variants, in the order to run")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=24, help="timed steps per workload (full256 and sweeps use half)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up steps per distinct width")
    p.add_argument("--buckets", type=int, default=64, help="length-bucket multiple of the fast path")
    p.add_argument("--mode", default="reduce-overhead", choices=compiling.COMPILE_MODES)
    p.add_argument("--attention", default="sdpa", choices=fastpath.ATTENTION_CHOICES, help="attention of the *_fast rows")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--compile-scope", default="model", choices=("model", "blocks"),
                   help="train.compile_scope: the whole loss, or each transformer block (regional compilation)")
    p.add_argument("--static-shapes", action="store_true", help="compile once per bucket width instead of one dynamic graph")
    p.add_argument("--cpu-backend", default="eager", help="torch.compile backend on the CPU (smoke)")
    p.add_argument("--no-generate", dest="generate", action="store_false")
    p.add_argument("--no-vl", dest="vl", action="store_false")
    p.add_argument("--profile", default="", help="variant to profile on full256 (writes OUT.profile.txt)")
    p.add_argument("--deadline", type=float, default=540.0, help="seconds after which remaining rows are skipped")
    p.add_argument("--workloads", default="", help="comma-separated workloads to keep (default: each row's own list)")
    p.add_argument("--no-checks", dest="checks", action="store_false", help="skip the attention numerics checks")
    p.add_argument("--out", default="benchmarks/results/latest.json")
    args = p.parse_args(argv)
    if args.smoke:
        args.size, args.batch, args.steps, args.warmup, args.no_compile = "tiny", 4, 2, 1, True
        args.workloads = args.workloads or "glue,full256,len32"
    args.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 rows stay fp32, as the reference code ran
    rows = [r for r in args.rows.split(",") if r]
    unknown = [r for r in rows if r not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {sorted(WORKLOADS)}")
    out: dict[str, Any] = {
        "schema": SCHEMA, "env": environment(args.device), "results": [], "generation": [], "errors": [], "skipped": [],
        "build_and_run_s": {}, "vl": None,
        "config": {"size": args.size, "model": SIZES[args.size], "batch": args.batch, "steps": args.steps, "m": M, "r": R, "s": S,
                   "pt_tokens": PT_TOKENS, "lora_r": LORA_R, "label_len": LABEL_LEN, "buckets": args.buckets, "mode": args.mode,
                   "attention": args.attention, "compile": not args.no_compile, "compile_scope": args.compile_scope, "dynamic": not args.static_shapes, "smoke": args.smoke, "dropout": 0.1,
                   "glue_lengths": "lognormal median 40 sigma 0.6 clipped [8, 256], seed 0"},
    }
    log("env", out["env"])
    out["ceiling_tflops"] = matmul_ceiling(args.device)
    log(f"bf16 matmul ceiling {out['ceiling_tflops']:.0f} TFLOP/s")
    data = workloads(args.batch, args.steps, SIZES[args.size]["vocab_size"])
    if args.checks:
        out["checks"] = attention_checks(args, data["glue"][0])
    for name in rows:
        lever = LEVERS.get(lever_suffix(name))
        if lever and "error" in (out.get("checks") or {}).get(f"{lever}_bfloat16", {}):
            out["skipped"].append(f"{name}: the eager {lever} check failed")
            continue
        if time.time() - T0 > args.deadline:
            out["skipped"].append(f"{name}: deadline")
            continue
        keep = set(args.workloads.split(",")) if args.workloads else None
        run_variant(name, [w for w in WORKLOADS[name] if keep is None or w in keep], data, args, out["ceiling_tflops"], out)
        if name == "full_ft" and args.vl and time.time() - T0 < args.deadline:
            vl_cache(args, out)
    if args.vl and out["vl"] is None and time.time() - T0 < args.deadline:
        vl_cache(args, out)
    out["total_s"] = time.time() - T0
    write(out, args.out)
    print_table(out)
    return out


if __name__ == "__main__":
    main()

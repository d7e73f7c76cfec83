"""Training-step benchmark: dept-vl's fast path side by side with the reference DePT setting, HF peft and full fine-tuning.

One run measures, on one machine, for T5 models built from configs (random weights), batch 32:
step time (forward + backward + optimizer step; median of per-step CUDA-event intervals after warm-up),
examples/s (all examples over all timed steps), peak memory (from before the model is built, so CUDA
graph pools and compile workspaces count), MFU against a bf16 matmul ceiling measured in the same run,
and generation latency; plus the VL model with its image-feature cache on and off.

    PYTHONPATH=. python benchmarks/train_step.py --size base --out benchmarks/results/t5-base.json
    python benchmarks/train_step.py --smoke --out smoke.json      # CPU, tiny model, seconds

Its parts: ``step_parts.py`` (settings, workloads, the rows' models and steps, the clock), ``step_checks.py`` (the
attention numerics checks and the VL feature-cache rows).

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
import json
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.step_checks import attention_checks, vl_cache  # noqa: E402
from benchmarks.step_parts import (  # noqa: E402, F401 - ReferenceDePT: the tests read it here
    LABEL_LEN, LEVERS, LORA_R, M, PT_TOKENS, R, S, SCHEMA, SIZES, SWEEP, T0, Clock, ReferenceDePT, build_variant, clean,
    compiling, fastpath, lever_suffix, log, memory_gb, pad_batch, to_device, workloads)



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
            write(out, args.out)
    if args.vl and out["vl"] is None and time.time() - T0 < args.deadline:
        vl_cache(args, out)
    out["total_s"] = time.time() - T0
    write(out, args.out)
    print_table(out)
    return out


if __name__ == "__main__":
    main()

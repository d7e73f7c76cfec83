"""Multi-GPU benchmark: `dept-vl pretrain` under DDP (accelerate) on N processes vs 1, on one machine.

One run measures, with the same command and code path in every arm (``accelerate launch`` of
``dept-vl pretrain``, the VL model's feature cache, compilation off in every arm):

- throughput (examples/s from the median step) with 1 process and with N processes, each process
  with the same per-process batch, and the scaling efficiency N-process / (N x 1-process);
- the all-reduce time per step: NCCL all-reduce of a buffer the size of the adapter's gradients
  (what DDP reduces every step), median over many calls, in an N-process launch;
- agreement: `dept-vl evaluate` of the N-process adapter with 1 and with N processes (metrics and
  every prediction must be identical: each example counted once);
- resume: an N-process run stopped half-way (``train.stop_at``) and resumed with ``--resume`` vs the
  uninterrupted N-process run (largest difference of the final adapters, and of the logged losses).

    PYTHONPATH=. python benchmarks/ddp_scaling.py --gpus 2 --out benchmarks/results/ddp-t5-base.json
    python benchmarks/ddp_scaling.py --smoke --out smoke.json     # CPU (gloo), tiny model: the script's check

NVLink multicast stays off (NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
T0 = time.time()


def log(*args: Any) -> None:
    print(f"[{time.time() - T0:6.1f}s]", *args, flush=True)


def run_settings(smoke: bool, steps: int, batch: int, compile: str = "off") -> list[str]:
    """Overrides of the `shapes_pretrain` recipe: a T5-base-sized VL model from config (random weights),
    DePT m=60 r=30, the four shapes source tasks, feature cache on, evaluation at the end; ``compile``
    the same in every arm (on: torch.compile with CUDA graphs, gradients averaged by one flat all-reduce;
    off: eager, torch's DDP wrapper)."""
    if smoke:
        model = ["model.preset=tiny", "dept.num_virtual_tokens=4", "dept.rank=2", "dept.max_length=48"]
        sizes = ["data.train_size=64", "data.eval_size=10", "eval.max_new_tokens=4"]
    else:
        model = ["model.preset=t5-base-random", "dept.num_virtual_tokens=60", "dept.rank=30", "dept.max_length=128",
                 "dept.lr_prompt=0.3", "dept.lr_lowrank=1e-4"]
        sizes = ["data.train_size=2000", "data.eval_size=64"]
    return ["--config", "shapes_pretrain", "model.backbone=null", *model, *sizes, "data.feature_cache=true",
            f"train.batch_size={batch}", f"train.max_steps={steps}", f"train.eval_every={steps}", f"train.save_every={steps}",
            f"train.log_every={max(1, steps // 10)}", f"train.warmup_steps={max(1, steps // 10)}", f"train.compile={compile}"]


def launcher(processes: int, smoke: bool) -> list[str]:
    """``accelerate launch`` on GPUs; on the CPU (smoke), torch's own launcher (accelerate's multi-CPU
    launch needs MPI), which the Accelerator in each process picks up just the same (gloo)."""
    if smoke:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no"]
    return cmd + (["--multi_gpu"] if processes > 1 else [])


def launch(cmd: list[str], env: dict[str, str], what: str) -> float:
    log(f"{what}: {' '.join(cmd[3:])}")
    t = time.time()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "Error" in line and "ChildFailedError" not in line]
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n" + "\n".join(errors[:6]) + f"\n{done.stderr[-1500:]}")
    return time.time() - t


def pretrain(processes: int, out: Path, args: argparse.Namespace, env: dict[str, str], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    cmd = launcher(processes, args.smoke) + ["-m", "dept_vl", "pretrain", *run_settings(args.smoke, args.steps, args.batch, args.compile),
                                             f"output_dir={out}", *extra]
    wall = launch(cmd, env, f"pretrain, {processes} process(es)")
    metrics = json.loads((out / "metrics.json").read_text())
    losses = [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]
    return {"processes": processes, "wall_s": wall, "examples_per_s": metrics["examples_per_s"], "step_time_ms": metrics["step_time_ms"],
            "per_process_batch": args.batch, "steps": metrics["steps"], "peak_memory_mb": metrics["peak_memory_mb"],
            "trainable_parameters": metrics["trainable_parameters"], "losses": losses, "complete": metrics.get("complete", True)}


def evaluate(processes: int, adapter: Path, out: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    size = "data.eval_size=10 eval.batch_size=4" if args.smoke else "data.eval_size=500 eval.batch_size=128"
    cmd = launcher(processes, args.smoke) + ["-m", "dept_vl", "evaluate", "--adapter", str(adapter), "--task", "shapes_color",
                                             "--split", "dev", "--out", str(out), *size.split()]
    wall = launch(cmd, env, f"evaluate, {processes} process(es)")
    return {"wall_s": wall, **json.loads((out / "metrics.json").read_text()), "predictions": (out / "predictions.jsonl").read_text()}


def allreduce_probe(numel: int, iters: int, out: str) -> None:
    """Run inside an N-process launch: median time of an all-reduce of ``numel`` fp32 values."""
    import torch
    import torch.distributed as dist
    from accelerate import Accelerator

    acc = Accelerator(cpu=not torch.cuda.is_available())
    buffer = torch.ones(numel, device=acc.device)
    cuda = acc.device.type == "cuda"
    times = []
    for i in range(iters + 10):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            t = time.perf_counter()
        dist.all_reduce(buffer)
        if cuda:
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            ms = 1000 * (time.perf_counter() - t)
        if i >= 10:
            times.append(ms)
    if acc.is_main_process:
        Path(out).write_text(json.dumps({"numel": numel, "bytes": 4 * numel, "processes": acc.num_processes, "iters": iters,
                                         "median_ms": statistics.median(times), "p90_ms": sorted(times)[int(0.9 * len(times))],
                                         "backend": dist.get_backend()}))
    acc.wait_for_everyone()
    acc.end_training()


def max_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(a), load_file(b)
    if set(x) != set(y):
        raise RuntimeError(f"different tensors in {a} and {b}: {sorted(set(x) ^ set(y))}")
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def environment() -> dict[str, Any]:
    import torch
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "python": sys.version.split()[0], "cuda": torch.version.cuda}
    try:
        import accelerate

        env["accelerate"] = accelerate.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name()
        env["gpus"] = torch.cuda.device_count()
        env["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return env


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpus", type=int, default=2, help="processes of the multi-process arms (one per GPU)")
    p.add_argument("--steps", type=int, default=300, help="training steps of each throughput arm")
    p.add_argument("--batch", type=int, default=32, help="per-process batch")
    p.add_argument("--compile", default="off", choices=["on", "off"], help="train.compile of every arm")
    p.add_argument("--smoke", action="store_true", help="CPU (gloo), tiny model, a few steps: checks the script and its JSON")
    p.add_argument("--skip", default="", help="comma-separated stages to leave out: scaling, allreduce, evaluate, resume")
    p.add_argument("--work", default="runs/ddp_scaling", help="folder for the runs' outputs")
    p.add_argument("--out", default="benchmarks/results/ddp-latest.json")
    p.add_argument("--probe-allreduce", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--probe-out", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.probe_allreduce:
        allreduce_probe(args.probe_allreduce, 20 if args.smoke else 200, args.probe_out)
        return {}
    if args.smoke:
        args.steps, args.batch = min(args.steps, 6), 4
    if args.steps < 2:
        raise SystemExit(f"--steps={args.steps}: need at least 2 (the resume stage stops half-way)")
    skip = set(filter(None, args.skip.split(",")))
    env = {**os.environ, **NO_MULTICAST, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    if args.smoke:
        env["OMP_NUM_THREADS"] = "1"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    n = args.gpus
    out: dict[str, Any] = {"schema": "dept-vl-ddp/1", "env": environment(), "config": {
        "gpus": n, "steps": args.steps, "per_process_batch": args.batch, "smoke": args.smoke,
        "compile": args.compile, "settings": run_settings(args.smoke, args.steps, args.batch, args.compile), "no_multicast": NO_MULTICAST}}

    single = multi = None
    if "scaling" not in skip or "resume" not in skip or "evaluate" not in skip:
        multi = pretrain(n, work / f"pretrain_{n}", args, env)
    if "scaling" not in skip:
        single = pretrain(1, work / "pretrain_1", args, env)
        out["scaling"] = {"single": single, "multi": multi,
                          "efficiency": multi["examples_per_s"] / (n * single["examples_per_s"])}
        log(f"1 process {single['examples_per_s']:.0f} ex/s, {n} processes {multi['examples_per_s']:.0f} ex/s: "
            f"efficiency {out['scaling']['efficiency']:.3f}")
    if "allreduce" not in skip:
        numel = multi["trainable_parameters"] if multi else 60 * 768 + 128 * 30 + 30 * 768
        probe = work / "allreduce.json"
        launch(launcher(n, args.smoke) + [str(Path(__file__).resolve()), "--probe-allreduce", str(numel), "--probe-out", str(probe)]
               + (["--smoke"] if args.smoke else []), env, "all-reduce probe")
        out["allreduce"] = json.loads(probe.read_text())
        if single:
            out["allreduce"]["share_of_step"] = out["allreduce"]["median_ms"] / multi["step_time_ms"]
        log(f"all-reduce of {numel:,d} fp32 values: {out['allreduce']['median_ms'] * 1000:.0f} us (median)")
    if "evaluate" not in skip:
        adapter = work / f"pretrain_{n}" / "adapter"
        one, many = evaluate(1, adapter, work / "eval_1", args, env), evaluate(n, adapter, work / "eval_n", args, env)
        out["evaluate"] = {"examples": [one["examples"], many["examples"]], "metrics_1": one["metrics"], "metrics_n": many["metrics"],
                           "identical_metrics": one["metrics"] == many["metrics"],
                           "identical_predictions": one["predictions"] == many["predictions"]}
        log(f"evaluate 1 vs {n} processes: identical metrics {out['evaluate']['identical_metrics']}, "
            f"identical predictions {out['evaluate']['identical_predictions']}")
    if "resume" not in skip:
        resumed = work / f"resumed_{n}"
        half = args.steps // 2
        first = pretrain(n, resumed, args, env, extra=(f"train.stop_at={half}",))
        second = pretrain(n, resumed, args, env, extra=("--resume",))
        reference = multi["losses"]
        logged = second["losses"]  # the resumed run appends to the stopped run's log
        out["resume"] = {
            "stopped_at": first["steps"], "stopped_complete": first["complete"], "final_steps": second["steps"],
            "max_adapter_difference": max_difference(work / f"pretrain_{n}" / "last" / "adapter.safetensors", resumed / "last" / "adapter.safetensors"),
            "losses_uninterrupted": reference, "losses_resumed": logged,
            "max_loss_difference": max(abs(a - b) for a, b in zip(reference, logged)) if len(reference) == len(logged) else None,
        }
        log(f"resume: stopped at {first['steps']}, finished at {second['steps']}; largest adapter difference "
            f"{out['resume']['max_adapter_difference']:.3g}, largest logged-loss difference {out['resume']['max_loss_difference']}")
    out["total_s"] = time.time() - T0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    log(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()

"""Packed against one-after-another k-shot sweeps, side by side in one run: the demo's target-stage protocol.

Each arm (dept-transfer, dept-scratch, pt-transfer) is one ``dept-vl adapt`` sweep of k x seeds runs, run twice
through the same function users run (``run_adapt``): ``adapt.pack=off`` (every run alone, the loop's default
path) and ``adapt.pack=on`` (all runs of the arm in one pack). It prints the wall-clock of both, their ratio,
and whether every run's dev selection and test score agree between the two.

    # GPU, T5-base shapes with random weights (offline), VL feature cache, 1,000 test examples, 5 beams
    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/packed_adapt.py --out benchmarks/results/packed-adapt-t5-base.json
    python benchmarks/packed_adapt.py --smoke       # CPU, the shipped tiny backbone, seconds
    # GPU, a 4 x 4 learning-rate grid (16 adapters) at full-data batch size (32), k=32, one seed
    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/packed_adapt.py --grid --out benchmarks/results/packed-lr-grid-t5-base.json

A mode is ``off``, ``on`` or ``on:key=value,key=value`` (packed with extra settings, e.g. ``on:eval.pack_rows=4096``).
Besides the wall-clock, each mode's time is split from the run records: the training steps (step time x steps),
the dev evaluations inside training, and the rest (test scoring, the feature cache, building models).
    # CPU, the demo's own target stage (shipped backbone, m=8, r=4, greedy, eval batch 500)
    python benchmarks/packed_adapt.py --backbone shipped:backbone-tiny --m 8 --r 4 --beams 1 --eval-batch-size 500
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ARMS = {"dept-transfer": ("dept", True), "dept-scratch": ("dept", False), "pt-transfer": ("prompt_tuning", True)}
GRID = {"lr_prompt": [0.1, 0.2, 0.3, 0.4], "lr_lowrank": [1e-4, 5e-4, 1e-3, 5e-3]}  # the reference's ranges


def phases(records: list[dict], seconds: float, steps: int) -> dict:
    """Where a mode's wall-clock went, from its run records: each pack's training steps and dev evaluations
    (a pack's runs share them: counted once a pack), and the rest."""
    packs: dict = {}
    for r in records:  # the runs of one pack share train_seconds and step_time_ms
        packs.setdefault((r["pack_size"], r["train_seconds"]) if r["pack_size"] > 1 else id(r), r)
    steps_s = sum(r["step_time_ms"] * steps / 1000 for r in packs.values())
    train_s = sum(r["train_seconds"] for r in packs.values())
    return {"steps_seconds": steps_s, "dev_eval_seconds": train_s - steps_s, "other_seconds": seconds - train_s,
            "step_time_ms": sum(r["step_time_ms"] for r in packs.values()) / len(packs)}


PHASES = {  # phase -> the functions run_adapt calls for it: (module, class or None, name)
    "setup": [("dept_vl.train.run", "Run", "setup")], "data": [("dept_vl.train.run", "Run", "load")],
    "features": [("dept_vl.train.run", "Run", "collator")], "memory_probe": [("dept_vl.recipes.adapt", None, "memory_pack_size")],
    "training": [("dept_vl.recipes.adapt", None, "fit_packed"), ("dept_vl.train.run", "Run", "fit")],
    "scoring": [("dept_vl.recipes.adapt", None, "score_packed"), ("dept_vl.train.run", "Run", "score")],
}


@contextlib.contextmanager
def timed_phases() -> Iterator[dict[str, list[dict]]]:
    """The calls of each phase of a sweep (:data:`PHASES`) while inside, timed where ``run_adapt`` makes them."""
    import importlib

    from benchmarks.measuring import recorded

    calls: dict[str, list[dict]] = {}
    with contextlib.ExitStack() as stack:
        for phase, targets in PHASES.items():
            for module, owner, name in targets:
                found = importlib.import_module(module)
                calls[f"{phase}/{name}"] = stack.enter_context(recorded(getattr(found, owner) if owner else found, name))
        yield calls


def phase_split(calls: dict[str, list[dict]], seconds: float) -> dict[str, float]:
    """Seconds by phase (a call inside another phase's call counts in the outer one: dev scoring is training) and the
    rest of ``seconds`` (writing files, building adapters, ...)."""
    from benchmarks.measuring import outermost_seconds

    split: dict[str, float] = {}
    for key, value in outermost_seconds(calls).items():
        phase = key.split("/")[0]
        split[phase] = split.get(phase, 0.0) + value
    split = {phase: round(value, 2) for phase, value in split.items() if value}
    return {**split, "rest": round(seconds - sum(split.values()), 2)}


def profile_context(device: str):
    """torch.profiler over the host and, on a GPU, the device."""
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else []), with_stack=True)


def write_profile(prof, path: str, label: str, seconds: float) -> dict:
    """The profiled mode's GPU-busy share (the sum of every kernel's own device time against the wall-clock) and
    its top operations by device and by host time, written to ``path``; returns the share and the totals."""
    from torch.autograd import DeviceType

    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events() if e.device_type == DeviceType.CUDA)
    device_us, reach = 0.0, float("-inf")
    for start, end in spans:  # the union of the kernels' intervals: time the GPU had work
        if end > reach:
            device_us += end - max(start, reach)
            reach = end
    events = prof.key_averages()
    summary = {"wall_s": seconds, "gpu_busy_s": device_us / 1e6, "gpu_busy_share": device_us / 1e6 / seconds}
    tables = [f"{label}: wall {seconds:.1f} s, GPU busy {device_us / 1e6:.1f} s ({summary['gpu_busy_share']:.0%})"]
    for key in ("self_cuda_time_total", "self_cpu_time_total"):
        try:
            tables.append(events.table(sort_by=key, row_limit=30, max_name_column_width=70))
        except Exception as error:  # noqa: BLE001 - a profiler without device columns (CPU)
            tables.append(f"(no table by {key}: {error})")
    try:  # where the device time is spent, by the Python lines that launched it
        tables.append(prof.key_averages(group_by_stack_n=6).table(sort_by="self_cuda_time_total", row_limit=15,
                                                                  max_name_column_width=70))
    except Exception as error:  # noqa: BLE001 - a profiler without device columns (CPU)
        tables.append(f"(no table by stack: {error})")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n\n".join(tables))
    print(tables[0], flush=True)
    return summary


def settings(args: argparse.Namespace) -> list[str]:
    backbone = "shipped:backbone-tiny" if args.smoke else args.backbone
    model = [f"model.backbone={backbone}"] if backbone else [f"model.preset={args.preset}"]
    return model + [
        "data.format=shifted", "data.feature_cache=true", f"dept.num_virtual_tokens={args.m}", f"dept.rank={args.r}",
        f"dept.max_length={args.s}", "dept.lr_prompt=0.05", "dept.lr_lowrank=0.001", f"train.batch_size={args.batch_size}",
        f"train.max_steps={args.steps}", f"train.eval_every={max(1, args.steps // 4)}", f"train.log_every={max(1, args.steps // 4)}",
        f"train.warmup_steps={max(1, args.steps // 10)}", f"data.eval_size={args.test_size}", f"data.train_size={args.pool_size}",
        f"eval.batch_size={args.eval_batch_size}", f"eval.num_beams={args.beams}", f"eval.max_new_tokens={args.max_new_tokens}",
        f"adapt.task={args.task}", f"adapt.k=[{','.join(map(str, args.k))}]", f"adapt.seeds=[{','.join(map(str, args.seeds))}]",
        "train.compile=off",
    ]


def main() -> None:
    import torch

    import dept_vl.tasks  # noqa: F401 - registers the synthetic world's vocabulary for the word-level presets
    from dept_vl.config import load_config
    from dept_vl.recipes.adapt import run_adapt
    from dept_vl.recipes.pretrain import run_pretrain

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="t5-base-random")
    parser.add_argument("--backbone", default=None, help="a backbone folder instead of --preset (shipped:backbone-tiny: the demo's)")
    parser.add_argument("--task", default="shapes_count")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--k", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--pool-size", type=int, default=2000)
    parser.add_argument("--eval-batch-size", type=int, default=250)
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--m", type=int, default=60)
    parser.add_argument("--r", type=int, default=30)
    parser.add_argument("--s", type=int, default=96)
    parser.add_argument("--modes", default="off,on", help="pack settings to time, in order (off, on, on:key=value,...)")
    parser.add_argument("--grid", action="store_true", help="the 4 x 4 learning-rate grid: dept-scratch, k=32, seed 0, 16 runs")
    parser.add_argument("--random-init", action="store_true", help="each mode builds --preset with random weights "
                        "(by default the preset is saved once as a backbone, which every mode loads as users' runs load weights)")
    parser.add_argument("--smoke", action="store_true", help="CPU-sized: the shipped tiny backbone, 2 runs an arm, tiny sets")
    parser.add_argument("--profile", default=None, help="a text file: the last mode runs under torch.profiler, and its "
                        "GPU-busy share and top operations (by GPU and by host time) go there")
    parser.add_argument("--out", default=None, help="JSON file for the figures")
    args = parser.parse_args()
    if args.grid:
        args.arms, args.k, args.seeds = "dept-scratch", [32], [0]
    if args.smoke:
        args.k, args.seeds, args.steps, args.test_size, args.pool_size, args.beams = [2], [0, 1], 4, 16, 60, 2
        args.m, args.r, args.arms = 4, 2, "dept-transfer"

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not (args.backbone or args.smoke or args.random_init):  # as users' runs do: weights loaded, not drawn
            from dept_vl.models import build_vl_model, save_backbone

            args.backbone = str(save_backbone(build_vl_model(args.preset), root / "backbone"))
            print(f"preset {args.preset} saved as a backbone (loaded by every mode; not timed)", flush=True)
        common = settings(args)
        if args.grid:
            common += [f"adapt.{key}=[{','.join(map(str, values))}]" for key, values in GRID.items()]
        figures: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
                         "preset": args.preset, "settings": common, "arms": {}}
        sources = {}
        for method in sorted({ARMS[a][0] for a in args.arms.split(",") if ARMS[a][1]}):
            t = time.perf_counter()
            out = root / f"source-{method}"
            run_pretrain(load_config(None, common + [f"method={method}", f"output_dir={out}", "data.tasks=[shapes_color]",
                                                     "train.max_steps=4", "train.save_every=0", "data.eval_size=16"]),
                         show_progress=False)
            sources[method] = out / "adapter"
            print(f"source {method}: {time.perf_counter() - t:.1f} s (not timed below)", flush=True)
        for arm in args.arms.split(","):
            method, transfer = ARMS[arm]
            row: dict = {}
            records = {}
            modes = args.modes.split(";") if ";" in args.modes else args.modes.split(",")
            for mode in modes:
                pack, _, extra = mode.partition(":")
                config = load_config(None, common + [f"method={method}", f"adapt.source={sources[method] if transfer else 'none'}",
                                                     f"output_dir={root / arm / mode.replace(':', '_')}", f"adapt.pack={pack}",
                                                     *(e for e in extra.split(",") if e)])
                if device == "cuda":
                    torch.cuda.synchronize()
                profiling = args.profile and mode == modes[-1]
                profiler = profile_context(device) if profiling else contextlib.nullcontext()
                t = time.perf_counter()
                with profiler as prof, timed_phases() as calls:
                    result = run_adapt(config, show_progress=False)
                    if device == "cuda":
                        torch.cuda.synchronize()
                row[f"{mode}_seconds"] = time.perf_counter() - t
                row[f"{mode}_timed_phases"] = phase_split(calls, row[f"{mode}_seconds"])
                print(f"{arm} pack={mode}: phases (s) {row[f'{mode}_timed_phases']}", flush=True)
                if profiling:
                    row["profile"] = write_profile(prof, args.profile, f"{arm} pack={mode}", row[f"{mode}_seconds"])
                records[mode] = result["records"]
                row[f"{mode}_peak_memory_mb"] = max(r["peak_memory_mb"] for r in result["records"])
                row[f"{mode}_phases"] = split = phases(result["records"], row[f"{mode}_seconds"], args.steps)
                print(f"{arm} pack={mode}: {row[f'{mode}_seconds']:.1f} s for {len(result['records'])} runs (training steps "
                      f"{split['steps_seconds']:.1f} s at {split['step_time_ms']:.0f} ms a step, dev evaluations "
                      f"{split['dev_eval_seconds']:.1f} s, the rest {split['other_seconds']:.1f} s; pack of "
                      f"{max(r['pack_size'] for r in result['records'])})", flush=True)
            if "off" in records and "on" in records:
                pairs = list(zip(records["off"], records["on"]))
                row["speedup"] = row["off_seconds"] / row["on_seconds"]
                row["same_dev_selection"] = all((a["best_step"], a["dev_score"]) == (b["best_step"], b["dev_score"]) for a, b in pairs)
                row["max_test_score_difference"] = max(abs(a["score"] - b["score"]) for a, b in pairs)
            for mode in [m for m in records if m.startswith("on:") and "off" in records]:
                row[f"{mode}_speedup"] = row["off_seconds"] / row[f"{mode}_seconds"]
                print(f"{arm} pack={mode}: {row[f'{mode}_speedup']:.2f}x against off", flush=True)
            row["runs"] = len(next(iter(records.values())))
            figures["arms"][arm] = row
    done = [r for r in figures["arms"].values() if "speedup" in r]
    if done:
        figures["total_speedup"] = sum(r["off_seconds"] for r in done) / sum(r["on_seconds"] for r in done)
    print(f"\n{'arm':<14} {'runs':>4} {'alone s':>9} {'packed s':>9} {'speedup':>8}  same dev selection  max |test diff|")
    for arm, r in figures["arms"].items():
        if "speedup" in r:
            print(f"{arm:<14} {r['runs']:>4} {r['off_seconds']:>9.1f} {r['on_seconds']:>9.1f} {r['speedup']:>7.2f}x  "
                  f"{str(r['same_dev_selection']):<18}  {r['max_test_score_difference']:.4f}")
    if "total_speedup" in figures:
        print(f"all arms: {figures['total_speedup']:.2f}x on {figures['device']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

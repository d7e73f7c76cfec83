"""Time to the first compiled step of ``dept-vl pretrain``, cold and warm, and the recompilations of a run.

The image features are kept in a folder of the scope (as a real data set's are on disk; the synthetic world's are
otherwise made in memory each run), so the warm run reads them. For each ``train.compile_scope`` asked (``blocks``: each transformer block compiled once; ``model``: the whole loss),
the same command runs twice in fresh processes with one new dept-vl cache folder (``DEPT_VL_CACHE``): the first
starts with empty compiler caches (cold), the second finds what the first left there (warm). Each run is timed from
the launch of the command to its first step's log line (``train.log_every=1``: that line is written after the
step's loss reached the host), and its recompilations are counted from the compiler's own log
(``TORCH_LOGS=recompiles``), those of the first step apart. Then the steady step time, from the run's last log lines.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/cold_start.py --out benchmarks/results/cold-start-t5-base.json
    python benchmarks/cold_start.py --smoke      # CPU, tiny preset, compile_scope=blocks: seconds to a minute

End to end (the time-to-result issue's 1,500-step target: auto against eager, and auto against its own compile time
plus steps x its steady step):

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/cold_start.py --scopes eager,auto --steps 1500 --cold-only \
        --log-every 50 --timeout 500 --out benchmarks/results/end-to-end-t5-base.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def timed_run(command: list[str], env: dict[str, str], log_file: Path, timeout: float) -> dict:
    """Run ``command``; the seconds until ``log_file`` holds its first step, the whole wall time, the recompiles, and
    a timeline of the command's output (each line with the seconds at which it came: where the time to the first
    step went)."""
    start = time.perf_counter()
    output_file = log_file.parent.with_name(log_file.parent.name + ".out")
    timeline: list[tuple[float, str]] = []
    with output_file.open("w") as sink:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

        def read() -> None:
            for line in process.stdout:
                sink.write(line)
                sink.flush()
                timeline.append((round(time.perf_counter() - start, 2), line.rstrip()[:160]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        first_step, during_first = None, 0
        while process.poll() is None:
            if first_step is None and log_file.is_file() and '"loss"' in log_file.read_text():
                first_step = time.perf_counter() - start
                during_first = sum("Recompiling function" in line for _, line in timeline)
            if time.perf_counter() - start > timeout:
                process.kill()
                raise TimeoutError(f"{' '.join(command)} ran past {timeout:.0f} s")
            time.sleep(0.05)
        reader.join(timeout=10)
    wall = time.perf_counter() - start
    output = output_file.read_text()
    if process.returncode:
        raise RuntimeError(f"the run failed ({process.returncode}):\n{output[-3000:]}")
    records = [json.loads(line) for line in log_file.read_text().splitlines() if '"loss"' in line]
    steady = [r["step_time_ms"] for r in records[len(records) // 2:]]
    total = output.count("Recompiling function")
    # a recompile of the first step is a shared block's second variant (T5's first block holds the position bias)
    return {"first_step_s": first_step, "wall_s": wall, "recompiles_first_step": during_first,
            "recompiles_after_first_step": total - during_first,
            "steady_step_ms": sorted(steady)[len(steady) // 2] if steady else None,
            "first_logged_step": records[0]["step"] if records else None, "steps": records[-1]["step"] if records else 0,
            "timeline": milestones(timeline)}


def milestones(timeline: list[tuple[float, str]], limit: int = 40) -> list[list]:
    """The command's own output lines with their times, and one line a recompilation (the compiler's log writes a
    dozen for each)."""
    kept = []
    for t, line in timeline:
        if "__recompiles" in line:
            if "triggered by" in line:
                kept.append([t, "recompile " + line[line.index("__recompiles") - 7:line.index("__recompiles") - 2]])
        elif line.strip() and "Recompiling function" not in line:
            kept.append([t, line])
    return kept[:limit]


def compile_settings(scope: str) -> list[str]:
    """The command's compile settings for one row: eager, auto (the default run), or compiled with ``scope``."""
    if scope == "eager":
        return ["train.compile=off"]
    if scope == "auto":
        return ["train.compile=auto", "train.compile_scope=auto"]
    return ["train.compile=on", f"train.compile_scope={scope}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="t5-base-random")
    parser.add_argument("--scopes", default="blocks,model", help="train.compile_scope values, in order; 'eager' runs "
                        "train.compile=off, 'auto' train.compile=auto (the default run)")
    parser.add_argument("--cold-only", action="store_true", help="one cold run per scope (no warm rerun)")
    parser.add_argument("--log-every", type=int, default=1, help="train.log_every (1: the first step is timed; more: "
                        "fewer host syncs, for end-to-end runs)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds a run may take")
    parser.add_argument("--tasks", default="shapes_color,shapes_count,shapes_exist,shapes_nli",
                        help="source tasks (the default leaves out the caption task, whose metric needs pycocoevalcap)")
    parser.add_argument("--random-init", action="store_true", help="the command builds --preset with random weights "
                        "(by default the preset is saved once as a backbone, which the command loads as users' runs load weights)")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.preset, args.scopes, args.steps, args.batch_size = "tiny", "blocks", 6, 4

    figures: dict = {"preset": args.preset, "steps": args.steps, "batch_size": args.batch_size, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        model = [f"model.preset={args.preset}"]
        if not args.random_init:  # as users' runs do: weights loaded (here a saved backbone), not drawn at random
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            import dept_vl.tasks  # noqa: F401 - the presets' words
            from dept_vl.models import build_vl_model, save_backbone

            model = [f"model.backbone={save_backbone(build_vl_model(args.preset), Path(tmp) / 'backbone')}"]
        figures["model"] = model[0]
        for scope in args.scopes.split(","):
            env = {**os.environ, "DEPT_VL_CACHE": str(Path(tmp) / f"cache-{scope}"), "TORCH_LOGS": "recompiles",
                   "PYTHONUNBUFFERED": "1"}
            env.pop("TORCHINDUCTOR_CACHE_DIR", None)
            env.pop("TRITON_CACHE_DIR", None)
            for label in ("cold",) if args.cold_only else ("cold", "warm"):
                out = Path(tmp) / f"{scope}-{label}"
                command = [sys.executable, "-m", "dept_vl.cli", "pretrain", "--config", "shapes_pretrain",
                           *model, f"data.tasks=[{args.tasks}]", "data.feature_cache=true",
                           f"data.feature_dir={Path(tmp) / f'features-{scope}'}", f"train.max_steps={args.steps}",
                           f"train.batch_size={args.batch_size}", *compile_settings(scope),
                           f"train.log_every={args.log_every}", f"train.eval_every={args.steps}", "train.save_every=0",
                           "data.eval_size=32", f"output_dir={out}"]
                row = timed_run(command, env, out / "log.jsonl", args.timeout)
                figures["runs"][f"{scope}-{label}"] = row
                decision = next((line for line in Path(str(out) + ".out").read_text().splitlines()
                                 if line.startswith("train.compile=auto")), None)
                row["auto_decision"] = decision
                # the bound: the time to the first fast step plus every later step at the steady step time
                row["first_step_plus_steady_s"] = row["first_step_s"] + (row["steps"] - row["first_logged_step"]) * row["steady_step_ms"] / 1000
                print(f"compile_scope={scope} {label}: first logged step {row['first_step_s']:.1f} s after the command, "
                      f"{row['recompiles_after_first_step']} recompilations after it ({row['recompiles_first_step']} in it) in {row['steps']} steps, steady step {row['steady_step_ms']:.1f} ms, "
                      f"wall {row['wall_s']:.1f} s (first logged step + steady steps: {row['first_step_plus_steady_s']:.1f} s)"
                      + (f"; {decision}" if decision else ""), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

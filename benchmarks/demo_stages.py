"""Time the offline demo's stages on this machine and write the figures (JSON) with the machine they came from.

    python benchmarks/demo_stages.py --out runs/demo_bench            # the full demo (what `make demo` runs)
    python benchmarks/demo_stages.py --fast --out runs/demo_bench     # the smoke version
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


def main() -> None:
    from dept_vl.demo.run import DemoSettings, run_demo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo_bench")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--json", default=None, help="where to write the figures (default: <out>/demo_stages.json)")
    args = parser.parse_args()
    settings = DemoSettings.fast(args.out) if args.fast else DemoSettings(out=args.out)
    start = time.perf_counter()
    result = run_demo(settings)
    wall = time.perf_counter() - start
    figures = {"machine": machine(), "fast": args.fast, "wall_seconds": wall, "stages": result["timings"],
               "runs": len(result["records"]), "headline": result["report"]["headline"]}
    path = Path(args.json or Path(args.out) / "demo_stages.json")
    path.write_text(json.dumps(figures, indent=2))
    print(f"{'stage':<12} {'seconds':>8}")
    for stage, seconds in result["timings"].items():
        if "/" not in stage:
            print(f"{stage:<12} {seconds:>8.1f}")
    print(f"wall {wall:.1f} s on {figures['machine']['cpu']} ({figures['machine']['cores']} cores) -> {path}")


if __name__ == "__main__":
    main()

"""Make each one-line breakage of learning in turn and show which default (non-slow) test catches it.

    python tools/break_learning.py            # every breakage, against the test files that guard learning
    python tools/break_learning.py --all      # against the whole default suite (slower)

Each breakage is applied to the source file in place and undone afterwards (also on Ctrl-C); the files it
touches must have no uncommitted changes. Exit status 1 when some breakage leaves every test passing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (what breaks, file, the line as it is, the line broken)
BREAKAGES = [
    ("the optimizer step is skipped", "dept_vl/train/fastpath.py",
     "    optimizer.step()\n    if scheduler is not None:", "    pass\n    if scheduler is not None:"),
    ("the source adapter is not loaded into a target run", "dept_vl/recipes/adapt.py",
     "            model.load_adapter_state(source.tensors, parts=config.adapt.transfer)", "            pass"),
    ("label padding is not masked", "dept_vl/data/batching.py",
     'labels = dec["input_ids"].masked_fill(dec["attention_mask"] == 0, -100)', 'labels = dec["input_ids"]'),
    ("the last evaluation is kept instead of the best", "dept_vl/train/hooks.py",
     "if self.score is None or score > self.score:", "if True:"),
    ("the best state is not restored before testing", "dept_vl/recipes/adapt.py",
     "        best.restore(model)\n", "\n"),
    ("predictions are paired with the wrong inputs", "dept_vl/train/predict.py",
     "return [ordered[i] for i in range(len(examples))]", "return [ordered[i] for i in reversed(range(len(examples)))]"),
    ("A @ B is dropped", "dept_vl/dept/model.py",
     "inputs_embeds = (inputs_embeds.float() + self.lowrank_update(length)).to(dtype)", "inputs_embeds = inputs_embeds"),
]
GUARDS = ["tests/test_learning.py", "tests/test_pipeline.py", "tests/test_dept_core.py", "tests/test_collator.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="run the whole default suite for each breakage")
    args = parser.parse_args()
    files = sorted({path for _, path, _, _ in BREAKAGES})
    if subprocess.run(["git", "diff", "--quiet", "--", *files], cwd=ROOT).returncode != 0:
        sys.exit(f"uncommitted changes in {', '.join(files)}: commit or stash them first")
    missed = 0
    for what, path, line, broken in BREAKAGES:
        source = (ROOT / path).read_text()
        if line not in source:
            sys.exit(f"{path} no longer holds the line for {what!r}: update BREAKAGES")
        try:
            (ROOT / path).write_text(source.replace(line, broken, 1))
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow and not gpu",
                                   *([] if args.all else GUARDS)], cwd=ROOT, capture_output=True, text=True)
        finally:
            (ROOT / path).write_text(source)
        failed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("FAILED")]
        missed += not failed
        print(f"{what}: {'caught by ' + failed[0] if failed else 'NOT CAUGHT'}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

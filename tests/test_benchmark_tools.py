"""The benchmarks' own tools: benchmarks/gpu_queue.sh (the queued GPU measurements) names only scripts, options and
test files that exist (the queue runs on a lent GPU machine, where a renamed option would cost a call of device time),
and the phase split times each call once, in its outermost phase."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUEUE = ROOT / "benchmarks" / "gpu_queue.sh"


def queued_commands() -> list[list[str]]:
    """Each ``step NAME SECONDS COMMAND...`` of the queue, its continuation lines joined, as the command's words."""
    text = QUEUE.read_text().replace("\\\n", " ")
    return [shlex.split(line.strip())[3:] for line in text.splitlines() if line.strip().startswith("step ")]


def test_the_gpu_queue_is_valid_bash_and_names_what_exists():
    subprocess.run(["bash", "-n", str(QUEUE)], check=True)
    commands = queued_commands()
    scripts = {}
    for words in commands:
        assert words[0] == "python3", words
        if words[1:3] == ["-m", "pytest"]:
            files = [w for w in words if w.startswith("tests/")]
            assert files and all((ROOT / f).is_file() for f in files), files
            continue
        script = next(w for w in words if w.startswith("benchmarks/"))
        assert (ROOT / script).is_file(), script
        scripts.setdefault(script, set()).update(re.sub("=.*", "", w) for w in words if w.startswith("--"))
    assert {"benchmarks/generation.py", "benchmarks/packed_adapt.py", "benchmarks/cold_start.py",
            "benchmarks/train_step.py"} <= set(scripts)
    for script, options in scripts.items():
        usage = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, check=True,
                               cwd=ROOT).stdout
        known = set(re.findall(r"--[a-z][a-z0-9-]*", usage))
        assert options <= known, (script, sorted(options - known))


def test_phases_count_a_call_once_in_the_outermost_phase():
    """The benchmarks' phase split: dev scoring inside training counts as training, scoring after it as scoring, and
    the phases add up to no more than the wall-clock."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.measuring import outermost_seconds, recorded

    calls = {"training": [{"start": 0.0, "end": 10.0}], "scoring": [{"start": 2.0, "end": 3.0}, {"start": 10.0, "end": 14.0}],
             "setup": [{"start": -1.0, "end": 0.0}]}
    assert outermost_seconds(calls) == {"training": 10.0, "scoring": 4.0, "setup": 1.0}

    class Owner:
        @classmethod
        def build(cls, value: int) -> int:
            return value + 1

    with recorded(Owner, "build", lambda result, value: {"value": value}) as found:
        assert Owner.build(2) == 3
    assert [c["value"] for c in found] == [2] and found[0]["end"] >= found[0]["start"]
    assert isinstance(vars(Owner)["build"], classmethod)  # restored as it was

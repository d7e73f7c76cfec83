"""Training checkpoints (adapter, optimizer, scheduler, RNG states, data position), written atomically."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from dept_vl.adapter import read_adapter
from dept_vl.io import write_text_atomic

LATEST = "latest"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def save_checkpoint(root: str | Path, step: int, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any], keep: int = 2,
                    rng_states: list[dict[str, Any]] | None = None) -> Path:
    """Write ``root/step_<n>`` through a temporary folder renamed into place, then point ``root/latest`` at it.

    ``rng_states``: every process's RNG state, in rank order (dropout differs per process); default: this one's."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp-step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "adapter")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"per_rank": rng_states or [rng_state()]}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps({**state, "step": step}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_text_atomic(root / LATEST, final.name)
    for old in sorted(p for p in root.glob("step_*") if p != final)[:-max(keep - 1, 0) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    root = Path(root)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if path.is_dir() else None


def load_checkpoint(path: str | Path, model: Any, optimizer: Any, scheduler: Any, rank: int = 0) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote (process ``rank`` takes its own RNG state; with more
    processes than saved states, ``rank`` modulo their number); returns the saved loop state (with ``step``)."""
    path = Path(path)
    model.load_adapter_state(read_adapter(path / "adapter").tensors, parts=("prompt", "lowrank", "modules"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True))
    saved = torch.load(path / "rng.pt", map_location="cpu", weights_only=True)
    states = saved["per_rank"] if "per_rank" in saved else [saved]
    set_rng_state(states[rank % len(states)])
    return json.loads((path / "state.json").read_text())

"""Training checkpoints (adapter, optimizer, scheduler, RNG states, data position), written atomically."""

from __future__ import annotations

import json
import os
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from dept_vl.adapter import read_adapter
from dept_vl.io import save_tensors_atomic, write_json_atomic, write_text_atomic

LATEST = "latest"
BEST_FILE = "best.safetensors"  # the best adapter's tensors when the best is not this checkpoint's own step
FILES = ("optimizer.pt", "scheduler.pt", "rng.pt", "state.json")


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
                    rng_states: list[dict[str, Any]] | None = None, best_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``root/step_<n>`` through a temporary folder renamed into place, then point ``root/latest`` at it;
    only then are older checkpoints removed (renamed to ``.trash-*`` first, so none is ever half-deleted under
    its own name).

    ``rng_states``: every process's RNG state, in rank order (dropout differs per process); default: this one's.
    ``best_tensors``: the best adapter's tensors, kept as ``best.safetensors`` (when the best is an earlier step)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp-step_{step:07d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "adapter")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"per_rank": rng_states or [rng_state()]}, tmp / "rng.pt")
    if best_tensors is not None:
        save_tensors_atomic(tmp / BEST_FILE, best_tensors)
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "has_best_file": best_tensors is not None}, indent=2))
    if final.exists():
        _discard(final)
    os.replace(tmp, final)
    write_text_atomic(root / LATEST, final.name)
    for old in sorted(p for p in root.glob("step_*") if p != final)[:-max(keep - 1, 0) or None]:
        _discard(old)
    return final


def _discard(folder: Path) -> None:
    """Remove ``folder``: renamed to ``.trash-<name>`` at once (atomic), then deleted."""
    trash = folder.parent / f".trash-{folder.name}"
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def update_state(path: str | Path, **changes: Any) -> None:
    """Rewrite a checkpoint's ``state.json`` with ``changes``, atomically."""
    file = Path(path) / "state.json"
    write_json_atomic(file, {**json.loads(file.read_text()), **changes})


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed from (a missing, empty or unreadable file), or None."""
    if not path.is_dir():
        return "the folder is missing"
    for name in FILES:
        file = path / name
        if not file.is_file() or file.stat().st_size == 0:
            return f"{name} is missing or empty"
    try:
        state = json.loads((path / "state.json").read_text())
        int(state["step"])
    except (ValueError, KeyError, TypeError):
        return "state.json is unreadable"
    try:
        read_adapter(path / "adapter")
    except Exception as error:  # noqa: BLE001 - any unreadable adapter folder makes the checkpoint unusable
        return f"adapter/ is unreadable ({type(error).__name__})"
    if state.get("has_best_file") and not ((path / BEST_FILE).is_file() and (path / BEST_FILE).stat().st_size > 0):
        return f"{BEST_FILE} is missing or empty"
    for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
        if not zipfile.is_zipfile(path / name):  # torch.save writes a zip archive: a cut file has no central directory
            return f"{name} is truncated or unreadable"
    return None


def complete_checkpoint(root: str | Path) -> tuple[Path | None, str | None]:
    """The newest complete checkpoint under ``root`` and, when it is not the one ``latest`` names, why
    (``(None, None)`` when there is no checkpoint at all)."""
    root = Path(root)
    pointer = root / LATEST
    named = root / pointer.read_text().strip() if pointer.is_file() else None
    candidates = sorted((p for p in root.glob("step_*") if p.is_dir()), reverse=True) if root.is_dir() else []
    if named is not None:
        candidates = [named] + [p for p in candidates if p != named]
    skipped = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            note = None
            if skipped:
                note = f"using {path.name}: " + "; ".join(skipped)
            elif named is None:
                note = f"using {path.name}: {LATEST} is missing"
            return path, note
        skipped.append(f"{path.name} is incomplete ({problem})")
    if skipped:
        return None, "; ".join(skipped)
    return None, None


def clean_leftovers(root: str | Path, adapter_folders: tuple[str | Path, ...] = ()) -> list[Path]:
    """Remove what an interrupted save leaves: ``.tmp-step_*`` and ``.trash-*`` folders under ``root``, and
    temporary ``*.tmp`` files in the adapter folders (every checkpoint's ``adapter/`` and ``adapter_folders``)."""
    root = Path(root)
    removed: list[Path] = []
    if root.is_dir():
        for leftover in [*root.glob(".tmp-step_*"), *root.glob(".trash-*")]:
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
            removed.append(leftover)
    folders = [Path(f) for f in adapter_folders] + ([p / "adapter" for p in root.glob("step_*")] if root.is_dir() else [])
    for folder in folders:
        if folder.is_dir():
            for tmp in folder.glob("*.tmp"):
                if tmp.is_file():
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
    return removed


def load_best_tensors(path: str | Path, state: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The best adapter's tensors a checkpoint records: its own adapter when the best is its step, else
    ``best.safetensors``; None when there is no best yet."""
    path = Path(path)
    if state.get("best_step") is None:
        return None
    if int(state["best_step"]) == int(state["step"]):
        return read_adapter(path / "adapter").tensors
    if (path / BEST_FILE).is_file():
        from safetensors.torch import load_file

        return load_file(str(path / BEST_FILE))
    return None


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

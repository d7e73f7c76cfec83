"""Atomic file writes (a crash or Ctrl-C never leaves a half-written file behind) and the cache folder."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch


def cache_dir(*parts: str) -> Path:
    """dept-vl's cache folder on this machine (``parts`` below it): ``$DEPT_VL_CACHE``, else
    ``$XDG_CACHE_HOME/dept-vl``, else ``~/.cache/dept-vl``. Rebuilt backbones, image features and the compiler's
    caches live here, shared by every run of the user."""
    root = os.environ.get("DEPT_VL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dept-vl"
    return Path(root).expanduser().joinpath(*parts)


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (/proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS, old kernels): set and restore at once
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` leaves: an existing file keeps its mode, a new one gets 0o666 & ~umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is fsynced and renamed over ``path``.

    ``~`` in ``path`` is expanded. The file ends with the permissions a plain ``open()`` would give it
    (the umask for a new file, the old mode for a replaced one), not ``mkstemp``'s owner-only 0600.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, _final_mode(path))
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def save_tensors_atomic(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (contiguous CPU copies of the tensors)."""
    from safetensors.torch import save_file

    plain = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata=metadata)

"""The output folder of a run: refused when it holds another run (unless resumed or overwritten), checked to
be writable before anything is loaded, and locked while the run writes into it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

LOCK_FILE = ".dept-vl.lock"


class OutputFolder:
    """A claimed output folder; holds an OS lock (``flock``) until :meth:`release` or the process ends, so a
    killed run never leaves it stuck. Use as a context manager or keep it for the run's lifetime."""

    def __init__(self, path: Path, handle: Any):
        self.path, self._handle = path, handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file drops the flock
            self._handle = None

    def __enter__(self) -> "OutputFolder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def holds_a_run(path: Path) -> bool:
    """Whether ``path`` holds anything but our lock file."""
    return path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir())


def claim_output_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False, main_process: bool = True) -> OutputFolder:
    """Check and lock ``path`` for a run, before any data or weight is loaded.

    Raises:
        ValueError: ``path`` holds another run and neither ``resume`` nor ``overwrite`` is set; another
            process is writing into it; it cannot be written.
    """
    path = Path(path).expanduser()
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other: resume continues the run in output_dir, "
                         "overwrite replaces it")
    if not main_process:
        return OutputFolder(path, None)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output_dir={str(path)!r} is a file, not a folder; choose another output_dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        handle = open(path / LOCK_FILE, "a+")
    except OSError as error:
        raise ValueError(f"output_dir={str(path)!r} cannot be written ({error.strerror}); choose a folder you can write to") from None
    try:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no flock on this platform: no lock
        pass
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise ValueError(f"output_dir={str(path)!r} is in use by another dept-vl run ({owner}); wait for it to end "
                         f"or choose another output_dir") from None
    if holds_a_run(path) and not (resume or overwrite):
        handle.close()
        raise ValueError(f"output_dir={str(path)!r} already holds a run ({', '.join(sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)[:4])}); "
                         f"pass --resume to continue it, --overwrite to replace it, or choose another output_dir")
    if overwrite:
        for item in path.iterdir():
            if item.name != LOCK_FILE:
                shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return OutputFolder(path, handle)

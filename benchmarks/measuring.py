"""What the benchmarks share to measure the library's own code as users run it: device syncs, the process's memory,
and the calls of a library function timed in place (:func:`recorded`, :func:`outermost_seconds`)."""

from __future__ import annotations

import contextlib
import inspect
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping


def sync() -> None:
    """Wait for the GPU (nothing on a CPU), so that its work counts where it was launched."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def memory_mb() -> dict[str, float]:
    """This process's resident memory (VmRSS) and its parts, in MiB (Linux): anonymous (private to the process),
    file-backed (here mostly the memory-mapped feature store: the machine's page cache, one copy shared by every
    process that reads the store, dropped by the kernel under pressure) and shared memory."""
    fields = {}
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.is_file() else []:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


@contextlib.contextmanager
def recorded(owner: Any, name: str, describe: Callable[..., dict[str, Any]] | None = None) -> Iterator[list[dict[str, Any]]]:
    """Calls of ``owner.name`` (a module's function or a class's method, the library's own, unchanged) while inside:
    each call's start, end and seconds (device synchronised) and what ``describe(result, *args, **kwargs)`` says of
    it. The attribute is restored as it was (a classmethod stays one)."""
    raw, original, calls = inspect.getattr_static(owner, name), getattr(owner, name), []

    def timed(*args: Any, **kwargs: Any) -> Any:
        sync()
        start = time.perf_counter()
        result = original(*args, **kwargs)
        sync()
        end = time.perf_counter()
        calls.append({"start": start, "end": end, "seconds": end - start, **(describe(result, *args, **kwargs) if describe else {})})
        return result

    setattr(owner, name, timed)
    try:
        yield calls
    finally:
        setattr(owner, name, raw)


def outermost_seconds(calls: Mapping[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Each name's seconds over its calls that no call of another name encloses (dev scoring inside training counts
    as training), so that the names' seconds add up to at most the wall-clock."""
    spans = [(c["start"], c["end"], name) for name, found in calls.items() for c in found]
    seconds = dict.fromkeys(calls, 0.0)
    for start, end, name in spans:
        if not any(s <= start and end <= e and (s, e) != (start, end) for s, e, other in spans if other != name):
            seconds[name] += end - start
    return seconds

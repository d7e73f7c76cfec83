"""The loop's helpers: what it logs (progress bar, ``log.jsonl``, TensorBoard) and how it keeps the best adapter."""

from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from dept_vl.train.tracking import open_trackers


class TrainLog:
    """Training and evaluation records: every record goes to ``history``; the main process also writes them
    to ``log_file`` (one JSON line each, flushed) and to the trackers of ``train.report_to`` (the accelerator's
    ``log_with``: TensorBoard into ``<run>/tensorboard``, W&B)."""

    def __init__(self, log_file: str | Path | None, accelerator: Any, total_steps: int, first_step: int, show_progress: bool):
        self.history: list[dict[str, Any]] = []
        self.accelerator = accelerator
        self.show_progress = show_progress
        main = accelerator.is_main_process
        self.file = open(log_file, "a") if (log_file and main) else None
        self.trackers = open_trackers(accelerator, Path(log_file).parent) if self.file else []
        self.bar = tqdm(total=total_steps, initial=first_step, disable=not (show_progress and main), dynamic_ncols=True)

    def step(self) -> None:
        self.bar.update(1)

    def train(self, record: dict[str, Any], group_names: list[str]) -> None:
        self._write(record)
        values = {"train/loss": record["loss"], "train/examples_per_s": record["examples_per_s"],
                  **{f"lr/{name}": lr for name, lr in zip(group_names, record["lr"])}}
        for tracker, _ in self.trackers:
            tracker.log(values, step=record["step"])
        self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr'][0]:.2g}",
                             step_ms=f"{record['step_time_ms']:.0f}", ex_s=f"{record['examples_per_s']:.0f}")

    def eval(self, record: dict[str, Any]) -> None:
        self._write(record)
        for tracker, _ in self.trackers:
            tracker.log({"eval/headline": record["eval"]}, step=record["step"])
        if self.show_progress:
            self.accelerator.print(f"step {record['step']}: eval {record['eval']:.4f} "
                                   f"(best {record['best']:.4f} at step {record['best_step']})")

    def _write(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()
        for tracker, owned in self.trackers:
            if owned:
                tracker.finish()


class LossMeter:
    """Losses and example counts since the last log point, summed on the device (no host sync per step)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.total = torch.zeros((), device=self.device)
        self.by_task: dict[str, torch.Tensor] = {}
        self.task_batches: dict[str, int] = {}
        self.batches = self.examples = 0
        self.since = time.perf_counter()

    def add(self, task: str, loss: torch.Tensor, rows: int) -> None:
        self.total += loss
        self.by_task[task] = self.by_task.get(task, torch.zeros((), device=self.device)) + loss
        self.task_batches[task] = self.task_batches.get(task, 0) + 1
        self.batches += 1
        self.examples += rows

    def record(self, step: int, lrs: list[float], grad_accum: int, num_processes: int) -> dict[str, Any]:
        """The log record since the last call (the host sync happens here), then reset."""
        elapsed = time.perf_counter() - self.since
        record = {"step": step, "loss": self.total.item() / self.batches, "lr": lrs,
                  "step_time_ms": 1000 * elapsed * grad_accum / self.batches,
                  "examples_per_s": self.examples / max(elapsed, 1e-9) * num_processes,
                  "task_loss": {k: v.item() / self.task_batches[k] for k, v in self.by_task.items()}}
        self.reset()
        return record


class BestAdapter:
    """Evaluation at the loop's eval points and the best adapter by its score (higher is better).

    The score, step and kept tensors change only once ``on_best`` has returned, so an interruption while
    the adapter is written leaves them at the previous best (what a checkpoint then records).

    Args:
        evaluate: ``evaluate(model) -> score``, the dev headline.
        keep_in_memory: keep a copy of the best adapter's tensors (``state``), to restore it before testing.
        on_best: ``on_best(model, score, step)`` when the score improves (e.g. write the adapter folder).
        saved: ``saved() -> tensors or None``: what ``on_best`` last wrote (read back), so a resumed run can
            check it against the checkpoint's best and rewrite it when they disagree.
    """

    def __init__(self, evaluate: Callable[[Any], float], keep_in_memory: bool = False,
                 on_best: Callable[[Any, float, int], None] | None = None,
                 saved: Callable[[], dict[str, torch.Tensor] | None] | None = None):
        self.evaluate, self.keep_in_memory, self.on_best, self.saved = evaluate, keep_in_memory, on_best, saved
        self.score: float | None = None
        self.step: int | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def __call__(self, model: Any, step: int) -> dict[str, Any]:
        return self.record(model, self.evaluate(model), step)

    def record(self, model: Any, score: float, step: int) -> dict[str, Any]:
        """Keep ``model`` as the best when ``score`` (its dev score at ``step``, computed elsewhere, e.g. for a
        pack of runs at once) beats the best so far; returns the log record."""
        if self.score is None or score > self.score:
            kept = {k: v.detach().clone() for k, v in model.adapter_state_dict().items()} if self.keep_in_memory else None
            if self.on_best is not None:
                self.on_best(model, score, step)
            self.score, self.step = score, step
            if self.keep_in_memory:
                self.state = kept
        return {"step": step, "eval": score, "best": self.score, "best_step": self.step}

    def sync_saved(self, model: Any, tensors: dict[str, torch.Tensor] | None) -> bool:
        """After a resume: rewrite what ``on_best`` writes from ``tensors`` (the checkpoint's best) when it
        holds other tensors or none; ``model`` is left as it was. True when it was rewritten."""
        if tensors is None or self.on_best is None or self.score is None or self.step is None:
            return False
        saved = self.saved() if self.saved is not None else None
        if saved is not None and set(saved) == set(tensors) and all(torch.equal(saved[k], tensors[k].to(saved[k].dtype)) for k in saved):
            return False
        current = {k: v.detach().clone() for k, v in model.adapter_state_dict().items()}
        model.load_adapter_state(tensors, parts=("prompt", "lowrank", "modules"))
        try:
            self.on_best(model, self.score, self.step)
        finally:
            model.load_adapter_state(current, parts=("prompt", "lowrank", "modules"))
        return True

    def restore(self, model: Any) -> bool:
        """Load the best adapter kept in memory into ``model``; False when there is none."""
        if self.state is None:
            return False
        model.load_adapter_state(self.state, parts=("prompt", "lowrank", "modules"))
        return True


def truncate_log(log_file: str | Path, step: int, evaluated: bool = True) -> int:
    """Drop the records of ``log_file`` after ``step`` (and its evaluation record when that evaluation is
    still due), so a resumed run appends no duplicate step; rewritten atomically. Returns how many were dropped."""
    from dept_vl.io import write_text_atomic

    path = Path(log_file)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            at = int(record["step"])
        except (ValueError, KeyError, TypeError):
            dropped += 1  # a line cut by a kill
            continue
        if at > step or (at == step and "eval" in record and not evaluated):
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        write_text_atomic(path, "".join(line + "\n" for line in kept))
    return dropped


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP during training, handled as Ctrl-C is (a checkpoint, then the exception goes on).
    ``exit_code`` is the shell's convention (128 + the signal number); ``dept-vl`` exits with 130 for every
    interruption."""

    def __init__(self, signum: int):
        self.signum, self.exit_code = signum, 128 + signum
        super().__init__(f"{signal.Signals(signum).name} received")


@contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (a KeyboardInterrupt) in the main
    thread; the previous handlers come back afterwards. Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    wanted = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, handler) for s in wanted}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)

"""Packed training: several runs of a DePT-family method trained together, one pass of the shared frozen base.

Each run keeps its own adapter, data order, learning rates, gradient clipping, dev evaluations, best adapter
and log, exactly as if it ran alone; only the base's forward and backward are shared. The batch of a step is
the concatenation of the runs' own batches (each at its own width, right-padded to the widest;
:func:`dept_vl.dept.multi.packed_forward`), each run's loss is the mean over its own tokens, and the sum of
the runs' losses gives every run's parameters the gradient they would get alone (no row depends on
another's adapter). The optimizer holds one group per (run, parameter group); clipping is per run, never over
the stack; the linear schedule is the loop's own. A run whose loss becomes NaN or infinite leaves the pack
at the next log or evaluation point, and one whose ``train.patience`` runs out at its evaluation; the others
go on undisturbed.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from dept_vl.config import TrainConfig
from dept_vl.dept.model import DePTModel
from dept_vl.dept.multi import group_losses, packed_forward
from dept_vl.train import fastpath
from dept_vl.train.hooks import BestAdapter, LossMeter, TrainLog
from dept_vl.train.loader import Batch
from dept_vl.train.loop import LoopResult, linear_schedule, patience_ran_out, peak_memory_mb
from dept_vl.train.predict import predict_packed


@dataclass
class PackedRun:
    """One run of a pack: its model (built on the pack's shared base), its batch plan, its best adapter
    (``BestAdapter.evaluate`` is not called: the pack scores every run at once) and its ``log.jsonl``."""

    model: DePTModel
    batches: Sequence[Batch]
    best: BestAdapter | None = None
    log_file: str | Path | None = None


def can_pack(models: Sequence[Any]) -> str | None:
    """Why ``models`` cannot train as one pack, or None: DePT-family models on one base object, training
    nothing of the base (trainable modules would be shared by every run)."""
    if not all(isinstance(m, DePTModel) for m in models):
        kinds = sorted({type(m).__name__ for m in models if not isinstance(m, DePTModel)})
        return f"only DePT and prompt-tuning models change nothing but the input ({', '.join(kinds)} do more)"
    if len({id(m.base_model) for m in models}) != 1:
        return "the models are built on different base model objects"
    trains_base = [m for m in models if m.trainable_modules]
    if trains_base:
        return f"dept.trainable_modules={sorted(trains_base[0].trainable_modules)} trains base modules that every run would share"
    return None


def runs_that_fit(peak_bytes: Callable[[int], int], rows: Sequence[int], limit_bytes: int) -> int:
    """How many of the runs (in order) a pack can hold within ``limit_bytes``, from the peak memory of a packed
    step of the first run and of the first two (``peak_bytes(n)``); ``rows``: each run's rows a step. Memory grows
    with the rows (their activations): ``peak = fixed + per_row * rows``, fitted through the two points. At least 1."""
    if len(rows) < 2:
        return len(rows)
    one, two = peak_bytes(1), peak_bytes(2)
    per_row = max(two - one, 1) / rows[1]
    fixed = one - per_row * rows[0]
    total, count = 0, 0
    for r in rows:
        if count and fixed + per_row * (total + r) > limit_bytes:
            break
        total, count = total + r, count + 1
    return count


def packed_step_peak(models: Sequence[DePTModel], batches: Sequence[dict[str, torch.Tensor]], device: torch.device) -> int:
    """Peak GPU memory (bytes) of one packed forward and backward of ``models`` on ``batches``, changing nothing:
    gradients are dropped, no optimizer step is taken and the random state is restored (dropout draws)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.random.fork_rng(devices=[device]):
        _train_mode(models, True)
        output = packed_forward(list(zip(models, batches)))
        group_losses(output.logits, [b["labels"] for b in batches]).sum().backward()
        del output
    for model in models:
        model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


class NextBatches:
    """The pack's batches, each step's collated on a background thread while the device runs the step before
    (pinned on a GPU, so that copying them there need not wait for that step). Collation only ever overlaps the
    training step: :meth:`settle` is called before anything else of the host uses the tokenizer (evaluation)."""

    def __init__(self, runs: Sequence[PackedRun], device: torch.device):
        self.runs, self.pin = runs, device.type == "cuda"
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="dept-vl-collate")
        self.pending: tuple[int, Future] | None = None
        self.ready: tuple[int, dict[int, Batch]] | None = None

    def _collate(self, step: int, active: Sequence[int]) -> dict[int, Batch]:
        out = {}
        for i in active:
            batch = self.runs[i].batches[step]
            out[i] = Batch(batch.task, {k: _pinned(v) for k, v in batch.tensors.items()}) if self.pin else batch
        return out

    def get(self, step: int, active: Sequence[int]) -> list[Batch]:
        """Step ``step``'s batch of each run in ``active`` (collated ahead where :meth:`ahead` asked for it)."""
        self.settle()
        made = self.ready[1] if self.ready is not None and self.ready[0] == step else {}
        self.ready = None
        missing = [i for i in active if i not in made]
        made = {**made, **(self._collate(step, missing) if missing else {})}
        return [made[i] for i in active]

    def ahead(self, step: int, active: Sequence[int]) -> None:
        """Start collating step ``step`` for ``active`` in the background."""
        self.settle()
        self.pending = (step, self.pool.submit(self._collate, step, list(active)))

    def settle(self) -> None:
        """Wait for the collation under way (its errors raise here) and keep what it made for :meth:`get`."""
        if self.pending is not None:
            step, future = self.pending
            self.pending = None
            self.ready = (step, future.result())

    def close(self) -> None:
        """Stop the thread. A collation still under way is for a step that will not run: its result (or error) is
        dropped, so that an error of the training itself is what the caller sees."""
        if self.pending is not None:
            self.pending[1].cancel()
            self.pending = None
        self.pool.shutdown(wait=True)


def _pinned(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.pin_memory() if tensor.device.type == "cpu" else tensor


class PackedTraining:
    """The optimizer, schedule and step of a pack (as :class:`dept_vl.train.loop.Training` is for one run)."""

    def __init__(self, runs: Sequence[PackedRun], cfg: TrainConfig, accelerator: Any):
        why = can_pack([r.model for r in runs])
        if why:
            raise ValueError(f"these runs cannot train as one pack: {why}; set adapt.pack=off")
        if cfg.grad_accum != 1:
            raise ValueError(f"train.grad_accum={cfg.grad_accum}: packed runs take one micro-batch per step (the pack is "
                             f"the larger batch); set train.grad_accum=1 or adapt.pack=off")
        self.runs, self.cfg, self.accelerator = list(runs), cfg, accelerator
        model = self.runs[0].model
        fastpath.set_attention(model, fastpath.resolve_attention(cfg.attention, model, accelerator.device))
        groups, self.owner = [], []
        for index, run in enumerate(self.runs):
            for group in run.model.param_groups():
                groups.append({**group, "name": f"{index}/{group.get('name', 'group')}"})
                self.owner.append(index)
        self.optimizer = fastpath.make_optimizer(groups)
        self.scheduler = linear_schedule(self.optimizer, cfg)
        self.params = [[p for g, o in zip(self.optimizer.param_groups, self.owner) if o == i for p in g["params"]]
                       for i in range(len(self.runs))]

    def learning_rates(self, index: int) -> list[float]:
        return [g["lr"] for g, o in zip(self.optimizer.param_groups, self.owner) if o == index]

    def group_names(self, index: int) -> list[str]:
        return [g["name"].split("/", 1)[1] for g, o in zip(self.optimizer.param_groups, self.owner) if o == index]

    def step(self, active: Sequence[int], tensors: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
        """One optimizer step of the runs ``active`` on their batches ``tensors``; returns each run's loss
        (detached, on the device). Runs not in ``active`` get no gradient, so AdamW leaves them as they are."""
        output = packed_forward([(self.runs[i].model, t) for i, t in zip(active, tensors)])
        losses = group_losses(output.logits, [t["labels"] for t in tensors])
        self.accelerator.backward(losses.sum())
        if self.cfg.max_grad_norm:
            for i in active:  # per run, as each run alone clips its own gradients
                self.accelerator.clip_grad_norm_(self.params[i], self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return losses.detach()


def fit_packed(runs: Sequence[PackedRun], cfg: TrainConfig, accelerator: Any,
               evaluate: Callable[[list[int]], list[float]] | None = None,
               on_step: Callable[[int], None] | None = None) -> tuple[list[LoopResult], dict[int, str]]:
    """Train ``runs`` together for ``cfg.max_steps`` steps.

    Args:
        evaluate: ``evaluate(run_indices) -> dev scores``, called every ``cfg.eval_every`` steps and at the end
            for the runs still in the pack; each run's ``best`` records its score.
        on_step: called with the step number after every step (a progress bar).

    Returns:
        One :class:`LoopResult` per run (the pack's wall-clock and step time; each run's own examples/s) and,
        by run index, why a run left the pack early (a NaN or infinite loss).
    """
    training = PackedTraining(runs, cfg, accelerator)
    device = accelerator.device
    logs = [TrainLog(r.log_file, accelerator, cfg.max_steps, 0, False) for r in runs]
    meters = [LossMeter(device) for _ in runs]
    nonfinite = torch.zeros(len(runs), dtype=torch.bool, device=device)
    active, stopped, last_step, early = list(range(len(runs))), {}, [0] * len(runs), set()
    rows = [0] * len(runs)
    step, step_times, t0 = 0, [], time.perf_counter()
    models = [r.model for r in runs]
    upcoming = NextBatches(runs, device)
    try:
        _train_mode(models, True)
        while step < cfg.max_steps and active:
            t_step = time.perf_counter()
            batches = upcoming.get(step, active)
            tensors = [fastpath.prepare_batch(b.tensors, device) for b in batches]
            losses = training.step(active, tensors)
            if step + 1 < cfg.max_steps:
                upcoming.ahead(step + 1, active)  # collated while the device runs this step
            nonfinite[active] |= ~torch.isfinite(losses)
            for j, (i, batch, t) in enumerate(zip(active, batches, tensors)):
                meters[i].add(batch.task, losses[j], int(t["input_ids"].shape[0]))
                rows[i] += int(t["input_ids"].shape[0])
            step += 1
            step_times.append(time.perf_counter() - t_step)
            for i in active:
                last_step[i] = step
            at_log = step % cfg.log_every == 0 or step == cfg.max_steps
            at_eval = evaluate is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps)
            if at_log or at_eval:  # the host sync, only here
                bad = nonfinite.tolist()
                for i in [i for i in active if bad[i]]:
                    active.remove(i)
                    stopped[i] = (f"the loss became NaN or infinite before step {step}; lower the learning rates "
                                  f"(dept.lr_prompt, dept.lr_lowrank) or check the data")
            if at_log:
                for i in active:
                    logs[i].train(meters[i].record(step, training.learning_rates(i), 1, accelerator.num_processes),
                                  training.group_names(i))
            if at_eval and active:
                upcoming.settle()  # no collation beside evaluation: they share the tokenizer
                _train_mode(models, False)
                scores = evaluate(list(active))
                for i, score in zip(active, scores):
                    logs[i].eval(runs[i].best.record(models[i], score, step) if runs[i].best is not None
                                 else {"step": step, "eval": score})
                _train_mode(models, True)
                for i in [i for i in active if runs[i].best is not None and patience_ran_out(cfg, runs[i].best.step, step)]:
                    active.remove(i)  # train.patience: this run ends here, as it would alone; the others go on
                    early.add(i)
            if on_step is not None:
                on_step(step)
    finally:
        upcoming.close()
        for log in logs:
            log.close()
    seconds = time.perf_counter() - t0
    results = [LoopResult(
        steps=last_step[i], best_score=r.best.score if r.best else None, best_step=r.best.step if r.best else None,
        history=logs[i].history, seconds=seconds, examples_per_s=rows[i] * accelerator.num_processes / max(seconds, 1e-9),
        step_time_ms=1000 * sum(step_times) / max(len(step_times), 1), peak_memory_mb=peak_memory_mb(device),
        stopped_early=i in early,
    ) for i, r in enumerate(runs)]
    return results, stopped


def _train_mode(models: Sequence[torch.nn.Module], training: bool) -> None:
    for model in models:
        model.train(training)


def score_packed(run: Any, task: str, pairs: Sequence[tuple[DePTModel, Sequence[Any]]], collate: Any) -> list[tuple[dict[str, Any], list[str]]]:
    """``run.score`` for several models at once: each ``(model, examples)`` pair's task metrics and predictions,
    generated together (:func:`dept_vl.train.predict.predict_packed`) and scored one by one."""
    from dept_vl.train.run import generation_length

    predictions = predict_packed([m for m, _ in pairs], [e for _, e in pairs], collate, run.base.tokenizer, run.config.eval,
                                 run.accelerator, generation_length(run.tasks[task], run.config))
    return [(run.tasks[task].evaluate(p, list(examples)), p) for p, (_, examples) in zip(predictions, pairs)]

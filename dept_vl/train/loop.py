"""The one training loop: accelerate for devices and processes, the fast path's step, checkpoints, the best adapter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from dept_vl.config import TrainConfig
from dept_vl.train import compiling, fastpath
from dept_vl.train.checkpoint import (clean_leftovers, complete_checkpoint, latest_checkpoint, load_best_tensors, load_checkpoint,
                                      rng_state, save_checkpoint, update_state)
from dept_vl.train.distributed import average_gradients, broadcast_parameters, gather, reduce_by_hand
from dept_vl.train.hooks import BestAdapter, LossMeter, Terminated, TrainLog, signals_as_interrupts, truncate_log
from dept_vl.train.loader import Batch


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class LoopResult:
    steps: int
    best_score: float | None
    best_step: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    examples_per_s: float = 0.0
    step_time_ms: float = 0.0
    peak_memory_mb: float = 0.0
    stopped_early: bool = False  # train.patience ended the run before train.max_steps


def evaluations_since_best(cfg: TrainConfig, best_step: int | None, step: int) -> int:
    """Evaluation points after the best one, up to ``step`` (evaluations run every ``cfg.eval_every`` steps):
    counted from the steps alone, so a resumed run stops where the uninterrupted one does."""
    if best_step is None:
        return 0
    return step // cfg.eval_every - best_step // cfg.eval_every


def patience_ran_out(cfg: TrainConfig, best_step: int | None, step: int) -> bool:
    """``train.patience``: whether a run evaluated at ``step`` (before its last) stops early."""
    return bool(cfg.patience) and step < cfg.max_steps and evaluations_since_best(cfg, best_step, step) >= cfg.patience


def train_loop(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    cfg: TrainConfig,
    accelerator: Any,
    *,
    checkpoint_dir: str | Path | None = None,
    best: BestAdapter | None = None,
    resume: bool = False,
    log_file: str | Path | None = None,
    show_progress: bool = True,
    max_length: int | None = None,
) -> LoopResult:
    """Train ``model`` for ``cfg.max_steps`` optimizer steps on ``batches`` (``grad_accum`` per step, this process's share).

    Every step is :func:`fastpath.train_step`. Losses stay on the device between log points (every
    ``cfg.log_every`` steps), so the loop never waits on the host inside a step. ``best`` evaluates every
    ``cfg.eval_every`` steps and at the end, and keeps the best adapter. ``max_length``: the longest input
    (DePT's s), the cap of the compiled path's length buckets.

    A step with a checkpoint and an evaluation writes the checkpoint first (its state records
    ``evaluated: false``), then evaluates, writes the best adapter (``best.on_best``) and only then marks the
    checkpoint evaluated, with the new best score and step (``state.json`` rewritten atomically): an error in
    evaluation loses no training, and a resumed run runs that evaluation (no training step) before going on.
    Ctrl-C, SIGTERM and SIGHUP (handled here, the previous handlers restored afterwards) save a checkpoint
    at the current step unless it is already saved, then raise :class:`KeyboardInterrupt`
    (:class:`~dept_vl.train.hooks.Terminated` for the signals; ``dept-vl`` exits with 130).
    """
    if cfg.stop_at and checkpoint_dir is None:
        raise ValueError(f"train.stop_at={cfg.stop_at} needs a checkpoint folder to stop into; this run keeps none "
                         f"(dept-vl pretrain does), so drop train.stop_at")
    training = prepare_training(model, cfg, accelerator, max_length)
    optimizer, scheduler, device = training.optimizer, training.scheduler, accelerator.device
    if checkpoint_dir is not None and best is not None:
        best.keep_in_memory = True  # a checkpoint keeps the best adapter's tensors with it
    resumed = _resume(checkpoint_dir, model, optimizer, scheduler, best, accelerator, log_file) if resume else None
    step = resumed.step if resumed else 0
    if training.by_hand:
        broadcast_parameters(training.trainable)  # what DDP does when it wraps a model: every process starts from rank 0's
    log = TrainLog(log_file, accelerator, cfg.max_steps, step, show_progress)
    meter, nonfinite = LossMeter(device), torch.zeros((), dtype=torch.bool, device=device)
    step_times: list[float] = []
    rows, t0 = 0, time.perf_counter()
    saved_step = step if resumed else None  # the step whose checkpoint is on disk
    evaluated_step = None if (resumed and not resumed.evaluated) else step

    def eval_due(at: int) -> bool:
        return best is not None and at > 0 and (at % cfg.eval_every == 0 or at == cfg.max_steps)

    def evaluate(at: int) -> None:
        nonlocal evaluated_step
        training.wrapped.eval()
        log.eval(best(model, at))
        training.wrapped.train()
        evaluated_step = at
        if saved_step == at:
            _mark_evaluated(checkpoint_dir, at, best, accelerator)

    stopped_early = False
    try:
        with signals_as_interrupts():
            if resumed and not resumed.evaluated and eval_due(step):
                evaluate(step)
                stopped_early = patience_ran_out(cfg, best.step, step)  # the evaluation an interruption left ends it
            training.wrapped.train()
            while step < cfg.max_steps and not stopped_early:
                t_step = time.perf_counter()
                micro = [batches[step * cfg.grad_accum + i] for i in range(cfg.grad_accum)]
                tensors = [training.prepare(batch_tensors(model, b)) for b in micro]
                losses = training.step(tensors)
                nonfinite |= ~torch.isfinite(losses).all()
                for batch, loss, t in zip(micro, losses, tensors):
                    meter.add(batch.task, loss, t["input_ids"].shape[0])
                    rows += t["input_ids"].shape[0]
                step += 1
                step_times.append(time.perf_counter() - t_step)
                log.step()
                at_log = step % cfg.log_every == 0 or step == cfg.max_steps
                stopping = 0 < cfg.stop_at == step < cfg.max_steps
                at_save = checkpoint_dir is not None and (stopping or (cfg.save_every > 0 and (step % cfg.save_every == 0 or step == cfg.max_steps)))
                if (at_log or at_save) and bool(nonfinite):  # the one host sync, only at log and save points
                    raise NonFiniteLoss(_nonfinite_message(step, checkpoint_dir))
                if at_log:
                    log.train(meter.record(step, [g["lr"] for g in optimizer.param_groups], cfg.grad_accum, accelerator.num_processes),
                              training.group_names)
                if at_save:  # before the evaluation: an error there loses no training
                    _checkpoint(checkpoint_dir, step, model, optimizer, scheduler, best, accelerator, evaluated=not eval_due(step))
                    saved_step = step
                if eval_due(step):
                    evaluate(step)
                    if patience_ran_out(cfg, best.step, step):
                        stopped_early = True
                        accelerator.print(f"early stop at step {step}: no better dev score in {cfg.patience} evaluations "
                                          f"(train.patience; the best, {best.score:.4f}, at step {best.step} is kept)")
                        break
                if stopping:
                    accelerator.print(f"stopping at step {step} (train.stop_at); continue with --resume")
                    break
    except KeyboardInterrupt as interrupt:
        _on_interrupt(interrupt, checkpoint_dir, step, saved_step, model, optimizer, scheduler, best, accelerator,
                      evaluated=not eval_due(step) or evaluated_step == step)
        raise
    finally:
        log.close()
    median = sorted(step_times)[len(step_times) // 2] if step_times else 0.0
    return LoopResult(
        steps=step, best_score=best.score if best else None, best_step=best.step if best else None, history=log.history,
        seconds=time.perf_counter() - t0, step_time_ms=1000 * median, peak_memory_mb=peak_memory_mb(device),
        examples_per_s=rows / max(1, len(step_times)) * accelerator.num_processes / median if median else 0.0,
        stopped_early=stopped_early,
    )


def _nonfinite_message(step: int, checkpoint_dir: Any) -> str:
    found = latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    return (f"the loss became NaN or infinite before step {step}; lower the learning rates "
            f"(dept.lr_prompt, dept.lr_lowrank) or check the data"
            + (f". The last good checkpoint is kept in {found}" if found is not None else ""))


def _on_interrupt(interrupt: KeyboardInterrupt, checkpoint_dir: Any, step: int, saved_step: int | None, model: Any,
                  optimizer: Any, scheduler: Any, best: BestAdapter | None, accelerator: Any, evaluated: bool) -> None:
    """Ctrl-C, SIGTERM or SIGHUP: a checkpoint at ``step`` unless one is on disk already, and what to do next."""
    why = f"{interrupt.args[0] if interrupt.args else 'signal'}" if isinstance(interrupt, Terminated) else "interrupted"
    if checkpoint_dir is None:
        accelerator.print(f"{why} at step {step}")
        return
    folder = Path(checkpoint_dir) / f"step_{step:07d}"
    if saved_step == step:
        accelerator.print(f"{why} at step {step}: its checkpoint is saved ({folder}); continue with --resume")
        return
    accelerator.print(f"{why} at step {step}: saving a checkpoint")
    # after an interruption no process waits on another: the main process writes its own RNG state alone
    _checkpoint(checkpoint_dir, step, model, optimizer, scheduler, best, accelerator, evaluated=evaluated,
                collective=accelerator.num_processes == 1)
    accelerator.print(f"checkpoint saved ({folder}); continue with --resume")


@dataclass
class Training:
    """What one optimizer step needs, built once by :func:`prepare_training`; :meth:`step` is the loop's step."""

    wrapped: torch.nn.Module  # the model as the accelerator prepared it (DDP-wrapped with several processes)
    optimizer: Any
    scheduler: Any
    loss_fn: Any
    trainable: list[torch.nn.Parameter]
    group_names: list[str]
    compiled: bool
    by_hand: bool  # several processes averaging gradients with one all-reduce (the model stays unwrapped)
    max_length: int | None  # DePT's s: the cap of the length buckets
    max_grad_norm: float
    accelerator: Any

    def prepare(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A collated batch on the device; compiled runs pad it to a length bucket (a multiple of 64)."""
        return fastpath.prepare_batch(tensors, self.accelerator.device, 64 if self.compiled else None, self.max_length)

    def step(self, micro_batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """One optimizer step (:func:`fastpath.train_step`); returns the micro-batches' losses, on the device."""
        return fastpath.train_step(self.loss_fn, self.optimizer, micro_batches, self.scheduler, self.max_grad_norm,
                                   accelerator=self.accelerator, model=self.wrapped,
                                   reduce_gradients=average_gradients if self.by_hand else None)


def batch_tensors(model: Any, batch: Batch) -> dict[str, torch.Tensor]:
    """A batch's tensors, plus what a model that keeps parameters per task adds for the batch's task (its
    ``task_inputs(task, rows)``: MPT's ``task_ids``)."""
    route = getattr(model, "task_inputs", None)
    if route is None:
        return batch.tensors
    return {**batch.tensors, **route(batch.task, int(batch.tensors["input_ids"].shape[0]))}


def prepare_training(model: torch.nn.Module, cfg: TrainConfig, accelerator: Any, max_length: int | None = None) -> Training:
    """Attention kernel, fused AdamW over the model's groups, linear warmup and decay, compilation and the
    gradient sync of several processes: everything the loop's step runs, as the benchmark runs it too."""
    device = accelerator.device
    attention = fastpath.resolve_attention(cfg.attention, model, device)  # T5 on GPU: a fused biased kernel
    fastpath.set_attention(model, attention)
    if cfg.attention == "auto" and attention.startswith("biased_"):
        accelerator.print(f"train.attention=auto: {attention} ({fastpath.why_biased_kernel(attention, model)})")
    optimizer = fastpath.make_optimizer(model.param_groups())
    scheduler = linear_schedule(optimizer, cfg)
    names = [g.get("name", "group") for g in optimizer.param_groups]
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    blocks = len(compiling.repeated_blocks(model)) or compiling.REFERENCE_BLOCKS
    compiled, scope, why = compiling.compile_choice(cfg, device, accelerator.num_processes, blocks)
    if cfg.compile == "auto" and device.type == "cuda":
        accelerator.print(why)
    by_hand = reduce_by_hand(cfg, compiled, accelerator.num_processes)
    if by_hand:  # the model stays unwrapped: its gradients are averaged after the backward pass
        wrapped, optimizer = model, accelerator.prepare(optimizer)
    else:
        wrapped, optimizer = accelerator.prepare(model, optimizer)
    # the fast path: one compiled graph over length buckets (CUDA graphs unless accumulating gradients)
    loss_fn = compiling.compile_loss(wrapped, enabled=compiled, mode="reduce-overhead" if cfg.grad_accum == 1 else "max-autotune-no-cudagraphs",
                                     scope=scope)
    return Training(wrapped, optimizer, scheduler, loss_fn, trainable, names, compiled, by_hand, max_length, cfg.max_grad_norm, accelerator)


def linear_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, min(cfg.warmup_steps, cfg.max_steps), cfg.max_steps)


@dataclass
class Resumed:
    step: int
    evaluated: bool  # False: the checkpoint's step still has its evaluation due


def _resume(checkpoint_dir: Any, model: Any, optimizer: Any, scheduler: Any, best: BestAdapter | None, accelerator: Any,
            log_file: Any = None) -> Resumed | None:
    """Restore the newest complete checkpoint (saying which and why when it is not ``latest``'s), after
    removing what an interrupted save left; put the best adapter and ``log.jsonl`` back in line with it."""
    if checkpoint_dir is None:
        return None
    main = accelerator.is_main_process
    if main:
        clean_leftovers(checkpoint_dir)
    found, note = complete_checkpoint(checkpoint_dir)
    if note:
        accelerator.print(f"--resume: {note}")
    if found is None:
        accelerator.print(f"--resume: no checkpoint in {checkpoint_dir}; starting from step 0")
        if main and log_file is not None:
            truncate_log(log_file, 0)
        return None
    state = load_checkpoint(found, model, optimizer, scheduler, rank=accelerator.process_index)
    step, evaluated = int(state["step"]), bool(state.get("evaluated", True))
    if best is not None:
        best.score, best.step = state.get("best_score"), state.get("best_step")
        best.state = load_best_tensors(found, state)
        if main and best.sync_saved(model, best.state):
            accelerator.print(f"--resume: the best adapter did not match the checkpoint's best (step {best.step}); rewritten")
    if main and log_file is not None:
        truncate_log(log_file, step, evaluated)
    threads, processes = state.get("threads"), state.get("processes")
    if threads is not None and (threads != torch.get_num_threads() or processes != accelerator.num_processes):
        accelerator.print(f"note: the checkpoint was written with {threads} threads and {processes} process(es), this run has "
                          f"{torch.get_num_threads()} and {accelerator.num_processes}; results are bit-exact only at the same "
                          f"thread count and process count")
    accelerator.print(f"resumed from {found} at step {step}" + ("; its evaluation is still due" if not evaluated else ""))
    return Resumed(step, evaluated)


def _checkpoint(checkpoint_dir: Any, step: int, model: Any, optimizer: Any, scheduler: Any, best: BestAdapter | None,
                accelerator: Any, evaluated: bool = True, collective: bool = True) -> None:
    """Every process's RNG state goes in; after Ctrl-C (``collective=False``) no process waits on another,
    so the main process writes its own state alone (the others resume from it). ``evaluated``: False when
    this step's evaluation has not run yet (a resumed run runs it first)."""
    if checkpoint_dir is None:
        return
    rngs = gather([rng_state()], accelerator) if collective else [rng_state()]
    if accelerator.is_main_process:
        state = {"step": step, "best_score": best.score if best else None, "best_step": best.step if best else None,
                 "evaluated": evaluated, "threads": torch.get_num_threads(), "processes": accelerator.num_processes}
        earlier_best = best.state if best is not None and best.step is not None and best.step != step else None
        save_checkpoint(checkpoint_dir, step, model, optimizer, scheduler, state, rng_states=rngs, best_tensors=earlier_best)
    if collective:
        accelerator.wait_for_everyone()


def _mark_evaluated(checkpoint_dir: Any, step: int, best: BestAdapter | None, accelerator: Any) -> None:
    """After step ``step``'s evaluation (and the best adapter written): its checkpoint records the new best."""
    if accelerator.is_main_process and best is not None:
        update_state(Path(checkpoint_dir) / f"step_{step:07d}", best_score=best.score, best_step=best.step, evaluated=True)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

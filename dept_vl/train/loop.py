"""The one training loop: accelerate for devices and processes, the fast path's step, checkpoints, the best adapter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from dept_vl.config import TrainConfig
from dept_vl.train import fastpath
from dept_vl.train.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint
from dept_vl.train.distributed import average_gradients, broadcast_parameters, gather, reduce_by_hand
from dept_vl.train.hooks import BestAdapter, LossMeter, TrainLog
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
    """
    if cfg.stop_at and checkpoint_dir is None:
        raise ValueError(f"train.stop_at={cfg.stop_at} needs a checkpoint folder to stop into; this run keeps none "
                         f"(dept-vl pretrain does), so drop train.stop_at")
    training = prepare_training(model, cfg, accelerator, max_length)
    optimizer, scheduler, device = training.optimizer, training.scheduler, accelerator.device
    step = _resume(checkpoint_dir, model, optimizer, scheduler, best, accelerator) if resume else 0
    if training.by_hand:
        broadcast_parameters(training.trainable)  # what DDP does when it wraps a model: every process starts from rank 0's
    log = TrainLog(log_file, accelerator, cfg.max_steps, step, show_progress)
    meter, nonfinite = LossMeter(device), torch.zeros((), dtype=torch.bool, device=device)
    step_times: list[float] = []
    rows, t0 = 0, time.perf_counter()
    try:
        training.wrapped.train()
        while step < cfg.max_steps:
            t_step = time.perf_counter()
            micro = [batches[step * cfg.grad_accum + i] for i in range(cfg.grad_accum)]
            tensors = [training.prepare(b.tensors) for b in micro]
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
                raise NonFiniteLoss(f"the loss became NaN or infinite before step {step}; lower the learning rates "
                                    f"(dept.lr_prompt, dept.lr_lowrank) or check the data"
                                    + (f". The last good checkpoint is kept in {checkpoint_dir}" if checkpoint_dir else ""))
            if at_log:
                log.train(meter.record(step, [g["lr"] for g in optimizer.param_groups], cfg.grad_accum, accelerator.num_processes),
                          training.group_names)
            if best is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                training.wrapped.eval()
                log.eval(best(model, step))
                training.wrapped.train()
            if at_save:
                _checkpoint(checkpoint_dir, step, model, optimizer, scheduler, best, accelerator)
            if stopping:
                accelerator.print(f"stopping at step {step} (train.stop_at); continue with --resume")
                break
    except KeyboardInterrupt:
        accelerator.print(f"interrupted at step {step}" + (": saving a checkpoint" if checkpoint_dir else ""))
        _checkpoint(checkpoint_dir, step, model, optimizer, scheduler, best, accelerator, collective=accelerator.num_processes == 1)
        raise
    finally:
        log.close()
    median = sorted(step_times)[len(step_times) // 2] if step_times else 0.0
    return LoopResult(
        steps=step, best_score=best.score if best else None, best_step=best.step if best else None, history=log.history,
        seconds=time.perf_counter() - t0, step_time_ms=1000 * median, peak_memory_mb=peak_memory_mb(device),
        examples_per_s=rows / max(1, len(step_times)) * accelerator.num_processes / median if median else 0.0,
    )


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


def prepare_training(model: torch.nn.Module, cfg: TrainConfig, accelerator: Any, max_length: int | None = None) -> Training:
    """Attention kernel, fused AdamW over the model's groups, linear warmup and decay, compilation and the
    gradient sync of several processes: everything the loop's step runs, as the benchmark runs it too."""
    device = accelerator.device
    fastpath.set_attention(model, fastpath.resolve_attention(cfg.attention, model, device))  # T5 on GPU: the fused kernel
    optimizer = fastpath.make_optimizer(model.param_groups())
    scheduler = _linear_schedule(optimizer, cfg)
    names = [g.get("name", "group") for g in optimizer.param_groups]
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    compiled = fastpath.use_compile(cfg, device, accelerator.num_processes)
    by_hand = reduce_by_hand(cfg, compiled, accelerator.num_processes)
    if by_hand:  # the model stays unwrapped: its gradients are averaged after the backward pass
        wrapped, optimizer = model, accelerator.prepare(optimizer)
    else:
        wrapped, optimizer = accelerator.prepare(model, optimizer)
    # the fast path: one compiled graph over length buckets (CUDA graphs unless accumulating gradients)
    loss_fn = fastpath.compile_loss(wrapped, enabled=compiled, mode="reduce-overhead" if cfg.grad_accum == 1 else "max-autotune-no-cudagraphs")
    return Training(wrapped, optimizer, scheduler, loss_fn, trainable, names, compiled, by_hand, max_length, cfg.max_grad_norm, accelerator)


def _linear_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Any:
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, min(cfg.warmup_steps, cfg.max_steps), cfg.max_steps)


def _resume(checkpoint_dir: Any, model: Any, optimizer: Any, scheduler: Any, best: BestAdapter | None, accelerator: Any) -> int:
    found = latest_checkpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if found is None:
        return 0
    state = load_checkpoint(found, model, optimizer, scheduler, rank=accelerator.process_index)
    if best is not None:
        best.score, best.step = state.get("best_score"), state.get("best_step")
    accelerator.print(f"resumed from {found} at step {state['step']}")
    return int(state["step"])


def _checkpoint(checkpoint_dir: Any, step: int, model: Any, optimizer: Any, scheduler: Any, best: BestAdapter | None,
                accelerator: Any, collective: bool = True) -> None:
    """Every process's RNG state goes in; after Ctrl-C (``collective=False``) no process waits on another,
    so the main process writes its own state alone (the others resume from it)."""
    if checkpoint_dir is None:
        return
    rngs = gather([rng_state()], accelerator) if collective else [rng_state()]
    if accelerator.is_main_process:
        state = {"step": step, "best_score": best.score if best else None, "best_step": best.step if best else None}
        save_checkpoint(checkpoint_dir, step, model, optimizer, scheduler, state, rng_states=rngs)
    if collective:
        accelerator.wait_for_everyone()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

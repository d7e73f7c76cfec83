"""The one training loop: accelerate for devices and processes, two (or three) learning rates, checkpoints."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from dept_vl.config import TrainConfig
from dept_vl.train.checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class LoopResult:
    steps: int
    best_score: float | None
    best_step: int | None
    best_state: dict[str, torch.Tensor] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    examples_per_s: float = 0.0
    step_time_ms: float = 0.0
    peak_memory_mb: float = 0.0


COMPILE_AUTO_MIN_STEPS = 1000  # compiling costs minutes up front: worth it only for long runs


def use_compile(cfg: TrainConfig, device: torch.device, num_processes: int) -> bool:
    """``train.compile``: ``on``, ``off``, or ``auto`` = on for single-GPU runs of at least 1,000 steps."""
    if cfg.compile not in ("auto", "on", "off"):
        raise ValueError(f"train.compile={cfg.compile!r}; choose auto, on or off")
    if cfg.compile == "auto":
        return device.type == "cuda" and num_processes == 1 and cfg.max_steps >= COMPILE_AUTO_MIN_STEPS
    return cfg.compile == "on"


def reduce_by_hand(cfg: TrainConfig, compiled: bool, num_processes: int) -> bool:
    """``train.gradient_sync``: how several processes average gradients. ``ddp``: torch's DDP wrapper
    (overlaps the all-reduce with the backward pass through autograd hooks); ``allreduce``: the model stays
    unwrapped and one flat all-reduce of every trainable gradient follows the backward pass (an adapter's
    gradients are a few hundred KB: nothing to overlap); ``auto``: ``allreduce`` when compiled, since DDP's
    hooks break the compiled graph and keep CUDA graphs out, else ``ddp``."""
    if cfg.gradient_sync not in ("auto", "ddp", "allreduce"):
        raise ValueError(f"train.gradient_sync={cfg.gradient_sync!r}; choose auto, ddp or allreduce")
    if num_processes == 1:
        return False
    return cfg.gradient_sync == "allreduce" or (cfg.gradient_sync == "auto" and compiled)


def broadcast_parameters(params: Sequence[torch.Tensor], source: int = 0) -> None:
    """Copy ``params`` from process ``source`` to every process."""
    import torch.distributed as dist

    for p in params:
        dist.broadcast(p.data, source)


def average_gradients(params: Sequence[torch.Tensor]) -> None:
    """Average the gradients of ``params`` over processes with one flat all-reduce (absent ones count as zero)."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
        offset += n


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_loop(
    model: torch.nn.Module,
    batches: Sequence[Any],
    collate: Callable[[Any], dict[str, torch.Tensor]],
    cfg: TrainConfig,
    accelerator: Any,
    *,
    checkpoint_dir: str | Path | None = None,
    evaluate: Callable[[torch.nn.Module], float] | None = None,
    on_best: Callable[[torch.nn.Module, float, int], None] | None = None,
    resume: bool = False,
    log_file: str | Path | None = None,
    keep_best_in_memory: bool = False,
    batch_task: Callable[[Any], str] | None = None,
    show_progress: bool = True,
) -> LoopResult:
    """Train ``model`` on ``batches`` (one entry per optimizer step and micro-batch, already sharded).

    The loss, the NaN check and the per-task losses stay on the device between log points (every
    ``cfg.log_every`` steps), so the loop never waits on the host inside a step. ``evaluate`` returns the
    headline score (higher is better) every ``cfg.eval_every`` steps and at the end.
    """
    from transformers import get_linear_schedule_with_warmup

    from dept_vl.train.fastpath import compile_loss, make_optimizer, pad_to_bucket, resolve_attention, set_attention

    if cfg.stop_at and checkpoint_dir is None:
        raise ValueError(f"train.stop_at={cfg.stop_at} needs a checkpoint folder to stop into; this run keeps none "
                         f"(dept-vl pretrain does), so drop train.stop_at")
    device = accelerator.device
    set_attention(model, resolve_attention(cfg.attention, model, device))  # T5 on GPU: the fused biased kernel
    optimizer = make_optimizer(model.param_groups())
    scheduler = get_linear_schedule_with_warmup(optimizer, min(cfg.warmup_steps, cfg.max_steps), cfg.max_steps)
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    compiled = use_compile(cfg, device, accelerator.num_processes)
    by_hand = reduce_by_hand(cfg, compiled, accelerator.num_processes)
    if by_hand:  # the model stays unwrapped: its gradients are averaged after the backward pass
        wrapped, optimizer = model, accelerator.prepare(optimizer)
    else:
        wrapped, optimizer = accelerator.prepare(model, optimizer)
    # the fast path: one compiled graph over length buckets (CUDA graphs unless accumulating gradients)
    loss_fn = compile_loss(wrapped, enabled=compiled, mode="reduce-overhead" if cfg.grad_accum == 1 else "max-autotune-no-cudagraphs")
    limit = getattr(getattr(model, "dept_config", None), "max_length", None)

    state: dict[str, Any] = {"step": 0, "best_score": None, "best_step": None}
    if resume and checkpoint_dir is not None and (found := latest_checkpoint(checkpoint_dir)) is not None:
        state = load_checkpoint(found, model, optimizer, scheduler, rank=accelerator.process_index)
        accelerator.print(f"resumed from {found} at step {state['step']}")
    if by_hand:
        broadcast_parameters(trainable)  # what DDP does when it wraps a model: every process starts from rank 0's
    best_state = None
    history: list[dict[str, Any]] = []
    logger = open(log_file, "a") if (log_file and accelerator.is_main_process) else None
    board = _tensorboard(Path(log_file).parent / "tensorboard") if logger else None
    step = state["step"]
    running = torch.zeros((), device=device)
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    task_loss: dict[str, torch.Tensor] = {}
    task_count: dict[str, int] = {}
    examples, micro_since_log, t_log, t0 = 0, 0, time.perf_counter(), time.perf_counter()
    step_times: list[float] = []
    total_examples = 0
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not (show_progress and accelerator.is_main_process), dynamic_ncols=True)

    def checkpoint(collective: bool = True) -> None:
        """Every process's RNG state goes in; after Ctrl-C (``collective=False``) no process waits on
        another, so the main process writes its own state alone (the others resume from it)."""
        if checkpoint_dir is not None:
            rngs = [rng_state()]
            if collective and accelerator.num_processes > 1:
                from accelerate.utils import gather_object

                rngs = gather_object(rngs)
            if accelerator.is_main_process:
                save_checkpoint(checkpoint_dir, step, model, optimizer, scheduler, state, rng_states=rngs)
            if collective:
                accelerator.wait_for_everyone()

    def run_eval() -> None:
        nonlocal best_state
        score = evaluate(model)
        improved = state["best_score"] is None or score > state["best_score"]
        if improved:
            state["best_score"], state["best_step"] = score, step
            if keep_best_in_memory:
                best_state = {k: v.detach().clone() for k, v in model.adapter_state_dict().items()}
            if on_best is not None:
                on_best(model, score, step)
        record = {"step": step, "eval": score, "best": state["best_score"]}
        history.append(record)
        if logger:
            logger.write(json.dumps(record) + "\n")
        if board is not None:
            board.add_scalar("eval/headline", score, step)
        if show_progress:
            accelerator.print(f"step {step}: eval {score:.4f} (best {state['best_score']:.4f} at step {state['best_step']})")

    try:
        wrapped.train()
        while step < cfg.max_steps:
            t_step = time.perf_counter()
            for micro in range(cfg.grad_accum):
                spec = batches[step * cfg.grad_accum + micro]
                batch = {k: v.to(device, non_blocking=True) for k, v in collate(spec).items()}
                if compiled:
                    batch = pad_to_bucket(batch, 64, max_length=limit)
                sync = micro == cfg.grad_accum - 1
                with accelerator.no_sync(wrapped) if not sync else _null():
                    loss = loss_fn(**batch)
                    accelerator.backward(loss / cfg.grad_accum)
                detached = loss.detach().clone()  # a copy: a CUDA graph overwrites its outputs
                running += detached
                nonfinite |= ~torch.isfinite(detached)
                if batch_task is not None:
                    name = batch_task(spec)
                    task_loss[name] = task_loss.get(name, torch.zeros((), device=device)) + detached
                    task_count[name] = task_count.get(name, 0) + 1
                examples += batch["input_ids"].shape[0]
                total_examples += batch["input_ids"].shape[0]
                micro_since_log += 1
            if by_hand:
                average_gradients(trainable)
            if cfg.max_grad_norm and cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            state["step"] = step
            step_times.append(time.perf_counter() - t_step)
            bar.update(1)
            at_log = step % cfg.log_every == 0 or step == cfg.max_steps
            stopping = 0 < cfg.stop_at == step < cfg.max_steps
            at_save = checkpoint_dir is not None and (stopping or (cfg.save_every > 0 and (step % cfg.save_every == 0 or step == cfg.max_steps)))
            if at_log or at_save:
                if bool(nonfinite):  # the one host sync, only at log and save points
                    raise NonFiniteLoss(
                        f"the loss became NaN or infinite before step {step}; lower the learning rates "
                        f"(dept.lr_prompt, dept.lr_lowrank) or check the data. The last good checkpoint is kept"
                        + (f" in {checkpoint_dir}" if checkpoint_dir else "")
                    )
            if at_log:
                elapsed = time.perf_counter() - t_log
                record = {"step": step, "loss": running.item() / micro_since_log, "lr": [g["lr"] for g in optimizer.param_groups],
                          "step_time_ms": 1000 * elapsed * cfg.grad_accum / micro_since_log,
                          "examples_per_s": examples / max(elapsed, 1e-9) * accelerator.num_processes}
                if task_loss:
                    record["task_loss"] = {k: v.item() / task_count[k] for k, v in task_loss.items()}
                history.append(record)
                if logger:
                    logger.write(json.dumps(record) + "\n")
                    logger.flush()
                if board is not None:
                    board.add_scalar("train/loss", record["loss"], step)
                    board.add_scalar("train/examples_per_s", record["examples_per_s"], step)
                    for group, lr in zip(optimizer.param_groups, record["lr"]):
                        board.add_scalar(f"lr/{group.get('name', 'group')}", lr, step)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr'][0]:.2g}",
                                step_ms=f"{record['step_time_ms']:.0f}", ex_s=f"{record['examples_per_s']:.0f}")
                running.zero_()
                task_loss.clear()
                task_count.clear()
                examples, micro_since_log, t_log = 0, 0, time.perf_counter()
            if evaluate is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                wrapped.eval()
                run_eval()
                wrapped.train()
            if at_save:
                checkpoint()
            if stopping:
                accelerator.print(f"stopping at step {step} (train.stop_at); continue with --resume")
                break
    except KeyboardInterrupt:
        accelerator.print(f"interrupted at step {step}: saving a checkpoint")
        checkpoint(collective=accelerator.num_processes == 1)
        raise
    finally:
        bar.close()
        if logger:
            logger.close()
        if board is not None:
            board.close()
    seconds = time.perf_counter() - t0
    median_step = sorted(step_times)[len(step_times) // 2] if step_times else 0.0
    rows_per_step = total_examples / max(1, len(step_times))
    return LoopResult(
        steps=step, best_score=state["best_score"], best_step=state["best_step"], best_state=best_state,
        history=history, seconds=seconds, step_time_ms=1000 * median_step,
        examples_per_s=rows_per_step * accelerator.num_processes / median_step if median_step else 0.0,
        peak_memory_mb=peak_memory_mb(device),
    )


def _tensorboard(folder: Path) -> Any:
    """A TensorBoard writer when the tensorboard package is installed (optional), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def make_accelerator(mixed_precision: str = "no", cpu: bool = False, find_unused_parameters: bool = True) -> Any:
    """An Accelerator for this process (DDP under ``accelerate launch``). ``find_unused_parameters``: let
    DDP search the graph for trainable parameters a batch did not use (a text-only batch skips the
    visual projection); it costs a graph walk per step, so runs whose parameters are all used turn it off."""
    import os

    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # several processes without CUDA (torchrun on CPUs): accelerate's gloo backend needs cpu=True
    cpu = cpu or (not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)])
    if accelerator.num_processes > 1:
        _close_process_group_at_exit()
    return accelerator


_CLOSE_REGISTERED = False


def _close_process_group_at_exit() -> None:
    """At exit, wait for every process, then destroy the process group: a process that leaves first with
    its group open can abort ("terminate called without an active exception") and fail the launch."""
    global _CLOSE_REGISTERED
    if _CLOSE_REGISTERED:
        return
    import atexit

    def close() -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    atexit.register(close)
    _CLOSE_REGISTERED = True


def may_skip_parameters(config: Any) -> bool:
    """Whether a batch can leave trainable parameters unused: full fine-tuning, or base modules trained
    beside the prompt (DePT's prompt, A and B, LoRA's matrices and a prompt are used by every batch)."""
    return config.method == "full" or (config.method in ("dept", "prompt_tuning") and bool(config.dept.trainable_modules))


def is_finite(value: float) -> bool:
    return value is not None and math.isfinite(value)

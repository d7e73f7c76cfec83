"""Devices and processes: the Accelerator, and how several processes average gradients."""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from dept_vl.config import TrainConfig


def make_accelerator(mixed_precision: str = "no", cpu: bool = False, find_unused_parameters: bool = True,
                     report_to: Sequence[Any] = (), project_dir: str | None = None) -> Any:
    """An Accelerator for this process (DDP under ``accelerate launch`` or ``torchrun``).

    ``find_unused_parameters``: let DDP search the graph for trainable parameters a batch did not use (a
    text-only batch skips the visual projection); it costs a graph walk per step, so runs whose parameters
    are all used turn it off. ``report_to``: accelerate's trackers (``log_with``; the training log opens them
    per run), ``project_dir`` their folder.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # several processes without CUDA (torchrun on CPUs): accelerate's gloo backend needs cpu=True
    cpu = cpu or (not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu, log_with=list(report_to) or None, project_dir=project_dir,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)])
    if accelerator.num_processes > 1:
        _close_process_group_at_exit()
    return accelerator


def reduce_by_hand(cfg: TrainConfig, compiled: bool, num_processes: int) -> bool:
    """``train.gradient_sync``: how several processes average gradients. ``ddp``: torch's DDP wrapper
    (overlaps the all-reduce with the backward pass through autograd hooks); ``allreduce``: the model stays
    unwrapped and one flat all-reduce of every trainable gradient follows the backward pass (an adapter's
    gradients are a few hundred KB: nothing to overlap); ``auto``: ``allreduce`` when compiled, since DDP's
    hooks break the compiled graph and keep CUDA graphs out, else ``ddp``."""
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


def gather(items: list[Any], accelerator: Any) -> list[Any]:
    """Every process's ``items``, concatenated in rank order (the items themselves with one process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)


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

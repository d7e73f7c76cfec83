"""What the searches of ``adapt`` and ``pretrain`` share: the grid of searched settings, their folder tags, and
the DePT settings of one point of the grid (a shape keeps the parameter budget)."""

from __future__ import annotations

import dataclasses
from typing import Any

from dept_vl.config import SweepOptions
from dept_vl.dept.budget import shape_at_budget
from dept_vl.dept.config import DePTConfig
from dept_vl.report.results import SEARCHED

TAGS = {"lr_prompt": "lrp", "lr_lowrank": "lrl", "num_virtual_tokens": "m", "rank": "r"}


def search_settings(sweep: SweepOptions) -> list[dict[str, Any]]:
    """Every point of the searched grid (``{}`` alone outside a search), in the order of :data:`SEARCHED`; a value
    given twice runs once."""
    grid: list[dict[str, Any]] = [{}]
    for name in SEARCHED:
        values = list(dict.fromkeys(getattr(sweep, name)))
        if values:
            grid = [{**point, name: value} for point in grid for value in values]
    return grid


def setting_tags(searched: dict[str, Any]) -> list[str]:
    """Short names of searched settings, for folder names: ``lrp0.3``, ``lrl0.0001``, ``m40``, ``r45``."""
    return [f"{TAGS[k]}{v:g}" for k, v in searched.items()]


def searched_dept(searched: dict[str, Any], dept: DePTConfig, d_model: int) -> DePTConfig:
    """The DePT settings of one point of the grid: its learning rates, and a searched shape with the other half of
    (m, r) chosen to keep the parameter budget of ``dept`` (:func:`dept_vl.dept.budget.shape_at_budget`)."""
    values = {k: v for k, v in searched.items() if k in ("lr_prompt", "lr_lowrank")}
    if "num_virtual_tokens" in searched or "rank" in searched:
        m, r = shape_at_budget(dept.num_parameters(d_model), d_model, dept.max_length,
                               num_virtual_tokens=searched.get("num_virtual_tokens"), rank=searched.get("rank"))
        values.update(num_virtual_tokens=m, rank=r)
    return dataclasses.replace(dept, **values)


def check_shape_search(sweep: SweepOptions, section: str, method: Any, from_source: str | None = None) -> None:
    """Refuse a shape search where m cannot be traded against r: a method without a rank (prompt tuning, LoRA) or
    a run that takes its shapes from a source adapter."""
    from dept_vl.methods.dept import DePT

    if not (sweep.num_virtual_tokens or sweep.rank):
        return
    if type(method) is not DePT or from_source:
        why = (f"method {method.name!r} has no rank to trade for prompt tokens" if type(method) is not DePT else
               f"adapt.source={from_source!r} fixes m and r (a target run takes its source's shapes)")
        raise ValueError(f"a shape search ({section}.num_virtual_tokens / {section}.rank) trades DePT's prompt tokens "
                         f"against its rank at one parameter budget, from scratch; {why}: use method=dept"
                         + (" with adapt.source=none" if from_source else ""))


def pack_size(sweep: SweepOptions, section: str, config: Any, run: Any, runs: int) -> int:
    """How many runs train together: 1 (one after another) unless ``<section>.pack`` is on, or auto with a GPU and
    a method whose models can share a pass of the base; then ``<section>.pack_size``, or every run up to
    ``<section>.pack_rows`` training rows a step (on a GPU, the first pack then shrinks to what fits in its
    memory: :func:`memory_pack_size`)."""
    from dept_vl.methods import get_method, list_methods

    choice, packable = sweep.pack, run.method.can_pack(config)
    if choice == "off" or runs < 2 or (choice == "auto" and (run.accelerator.device.type != "cuda" or not packable)):
        return 1
    if not packable:
        raise ValueError(f"{section}.pack=on: method {run.method.name!r} cannot train runs together with these settings (only "
                         f"models that change nothing but the input can: {', '.join(m for m in list_methods() if get_method(m).can_pack(config))}); "
                         f"set {section}.pack=off")
    if config.train.grad_accum != 1:
        if choice == "auto":
            return 1
        raise ValueError(f"{section}.pack=on with train.grad_accum={config.train.grad_accum}: packed runs take one "
                         f"micro-batch per step; set train.grad_accum=1 or {section}.pack=off")
    if sweep.pack_size:
        return min(sweep.pack_size, runs)
    return max(1, min(runs, sweep.pack_rows // config.train.batch_size))


def measures_memory(device: Any) -> bool:
    """Whether an automatic pack size is also bounded by a measured step (on a GPU)."""
    return device.type == "cuda"


def memory_pack_size(models: list[Any], first_batches: list[dict[str, Any]], device: Any, share: float = 0.85) -> int:
    """The most of ``models`` that a packed step fits in ``share`` of the GPU memory this process can have (what it
    holds and what is free), measured on each run's first batch (:func:`dept_vl.train.packed.runs_that_fit`)."""
    import torch

    from dept_vl.train.fastpath import prepare_batch
    from dept_vl.train.packed import packed_step_peak, runs_that_fit

    tensors = [prepare_batch(b, device) for b in first_batches]
    free, _ = torch.cuda.mem_get_info(device)
    held, reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    limit = held + int(share * (free + reserved - held))
    rows = [int(t["input_ids"].shape[0]) for t in tensors]
    return runs_that_fit(lambda n: packed_step_peak(models[:n], tensors[:n], device), rows, limit)

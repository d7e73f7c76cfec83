"""Training methods behind one registry: ``get_method("dept")``, ``list_methods()``, ``register_method``.

One file per method: ``dept``, ``prompt_tuning``, ``lora``, ``full``, ``adept``, ``ulpt``, ``attempt``, ``mpt``. A saved adapter records its method, so
:func:`load_adapter_model` needs nothing but the folder and a base model.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dept_vl.adapter import Adapter, read_adapter
from dept_vl.methods import dept, prompt_tuning, lora, full  # noqa: F401, I001  (each registers itself, in this order)
from dept_vl.methods import adept, ulpt, attempt, mpt  # noqa: F401, I001
from dept_vl.methods.registry import Method, get_method, list_methods, register_method


def load_adapter_model(base: nn.Module, adapter: str | Path | Adapter, revision: str | None = None) -> nn.Module:
    """Any saved adapter (DePT, prompt tuning, LoRA, full) on ``base``, frozen for inference: a folder, a hub repo
    ``user/name`` (at ``revision``, cached; see :func:`dept_vl.hub.resolve_folder`) or an :class:`Adapter`."""
    from dept_vl.hub import resolve_folder

    found = adapter if isinstance(adapter, Adapter) else read_adapter(resolve_folder(adapter, revision))
    return get_method(found.method).from_adapter(base, found)


__all__ = ["Method", "get_method", "list_methods", "load_adapter_model", "read_adapter", "register_method"]

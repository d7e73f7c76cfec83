"""The method registry: ``register_method``, ``get_method``, ``list_methods`` (as timm's ``register_model``).

A method tells the pipeline everything that differs between training methods, so that no other part of
dept-vl inspects ``config.method``. A method's model (what :meth:`Method.build` returns) offers:
``forward(**batch)`` (with ``.loss``), ``generate(**batch, **options)``, ``param_groups()`` (AdamW groups with
their own ``lr`` and ``weight_decay``), ``trainable_parameters()``, ``adapter_state_dict()``,
``load_adapter_state(state, parts)`` and ``save_pretrained(folder)`` (the one adapter format,
:mod:`dept_vl.adapter`).
"""

from __future__ import annotations

import difflib
from typing import ClassVar

import torch
from torch import nn

from dept_vl.adapter import Adapter, check_base_model
from dept_vl.config import RunConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Method:
    """What a training method is to the pipeline. Subclass, set the class attributes, register with
    :func:`register_method`."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # results name: ``<label>-transfer`` / ``<label>-scratch``
    frozen_base: ClassVar[bool] = True  # False: base weights train (full precision, autocast on GPU)
    changes_base: ClassVar[bool] = False  # True: the model alters its base (LoRA injects layers): one base per model
    transfer_parts: ClassVar[tuple[str, ...]] = ()  # what a target run can take from a source adapter

    def build(self, config: RunConfig, base: nn.Module, seed: int | None = None) -> nn.Module:
        """Wrap a (frozen) base model for training; ``seed`` overrides the method's own initialisation seed."""
        raise NotImplementedError

    def from_adapter(self, base: nn.Module, adapter: Adapter) -> nn.Module:
        """The model of a saved adapter on ``base``, frozen for inference."""
        raise NotImplementedError

    def can_pack(self, config: RunConfig) -> bool:
        """Whether runs of this method under ``config`` can train and predict together in one pass of the base
        (their models change nothing but the input)."""
        return False

    def check(self, config: RunConfig) -> None:
        """Reject settings that cannot work with this method (called when a run is assembled)."""

    def with_source(self, config: RunConfig, source: Adapter) -> RunConfig:
        """The run config of a target run that starts from ``source``: its shapes replace the run's."""
        raise ValueError(f"method {self.name!r} cannot start from a source adapter (adapt.source={source.path}); "
                         f"transfer is supported for {', '.join(m for m in list_methods() if get_method(m).transfer_parts)}")

    def for_adapter(self, config: RunConfig, adapter: Adapter) -> RunConfig:
        """``config`` with the saved adapter's own settings where they decide how inputs are built (DePT's s)."""
        return config

    def input_limit(self, config: RunConfig) -> int | None:
        """The longest text input this method's model accepts under ``config`` (DePT's ``s``), or None."""
        return None

    def may_skip_parameters(self, config: RunConfig) -> bool:
        """Whether a batch can leave trainable parameters unused (DDP must then search the graph)."""
        return False

    def base_dtype(self, config: RunConfig, device: torch.device) -> torch.dtype:
        """The dtype the base model runs in: ``model.dtype`` for frozen bases, float32 when the base trains."""
        if not self.frozen_base:
            return torch.float32
        if config.model.dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        return DTYPES[config.model.dtype]

    def mixed_precision(self, config: RunConfig, device_type: str) -> str:
        """accelerate's mixed precision: frozen bases run in ``model.dtype`` directly; trained bases autocast."""
        if config.train.mixed_precision != "auto":
            return config.train.mixed_precision
        return "bf16" if (device_type == "cuda" and not self.frozen_base) else "no"

    def results_label(self, transfer: bool) -> str:
        return f"{self.label}-{'transfer' if transfer else 'scratch'}"

    @staticmethod
    def check_base(adapter: Adapter, base: nn.Module) -> None:
        check_base_model(adapter.base_model, base, adapter.path)


_METHODS: dict[str, Method] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method under ``cls.name``.

    Raises:
        ValueError: the name is empty or already taken by another class.
    """
    if not cls.name or not cls.label:
        raise ValueError(f"{cls.__name__} needs a name and a label to be registered")
    if cls.name in _METHODS and type(_METHODS[cls.name]) is not cls:
        raise ValueError(f"method {cls.name!r} is registered twice ({type(_METHODS[cls.name]).__name__} and {cls.__name__})")
    _METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    """The method registered under ``name``; an unknown name gets the closest names and the full list."""
    if name in _METHODS:
        return _METHODS[name]
    close = difflib.get_close_matches(str(name), list(_METHODS), n=2)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ValueError(f"method={name!r} is unknown; {hint}choose one of {', '.join(list_methods())}")


def list_methods() -> list[str]:
    """Names of every registered method, in registration order."""
    return list(_METHODS)



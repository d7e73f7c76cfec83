"""What a model that wraps a Hugging Face base offers as transformers and peft models do: ``get_base_model()``,
``config`` and ``generation_config`` of the base, gradient checkpointing, and a state dict that holds the
adapter only (so that ``Trainer`` saves the adapter, not the frozen base with its tied weights)."""

from __future__ import annotations

from collections import OrderedDict
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn


class AdapterWrapper(nn.Module):
    """Base class of adapter models: ``self.base_model`` is the wrapped model.

    Subclasses have ``trainable_parameters()``, ``save_pretrained(folder)``, name the tensors of their state
    (:meth:`adapter_state_names`) and implement :meth:`disable_adapter`.
    """

    base_model: nn.Module

    # ------------------------------------------------------------ the base
    def get_base_model(self) -> nn.Module:
        """The wrapped base model (as ``peft.PeftModel.get_base_model``)."""
        return self.base_model

    @property
    def config(self) -> Any:
        """The base model's config."""
        return self.base_model.config

    @property
    def generation_config(self) -> Any:
        """The base model's ``GenerationConfig`` (``generate`` uses it); assigning sets the base's."""
        return getattr(self.base_model, "generation_config", None)

    @generation_config.setter
    def generation_config(self, value: Any) -> None:
        self.base_model.generation_config = value

    @property
    def accepts_loss_kwargs(self) -> bool:
        """Whether ``forward`` may receive ``num_items_in_batch`` (read by ``Trainer``): as the base."""
        import inspect

        base = self.base_model
        if hasattr(base, "accepts_loss_kwargs"):
            return bool(base.accepts_loss_kwargs)
        params = inspect.signature(base.forward).parameters.values()
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """Recompute the base's activations in the backward pass (the base's own switch; the name of
        transformers >= 5.25, which ``Trainer`` calls)."""
        base = self.base_model
        enable = getattr(base, "activation_checkpointing_enable", None) or getattr(base, "gradient_checkpointing_enable", None)
        if enable is None:
            raise ValueError(f"{type(base).__name__} has no activation_checkpointing_enable(); gradient checkpointing "
                             f"needs a Hugging Face model or dept-vl's VL model")
        enable(activation_checkpointing_kwargs)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        """:meth:`activation_checkpointing_enable` under its older name (transformers < 5.25)."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self) -> None:
        base = self.base_model
        disable = getattr(base, "activation_checkpointing_disable", None) or getattr(base, "gradient_checkpointing_disable", None)
        if disable is not None:
            disable()

    activation_checkpointing_disable = gradient_checkpointing_disable

    @property
    def is_gradient_checkpointing(self) -> bool:
        base = self.base_model
        name = "is_activation_checkpointing" if hasattr(base, "is_activation_checkpointing") else "is_gradient_checkpointing"
        return bool(getattr(base, name, False))

    def print_trainable_parameters(self) -> None:
        """Trainable and total parameter counts, as peft prints them."""
        trainable = sum(p.numel() for p in self.trainable_parameters().values())
        total = sum(p.numel() for p in self.parameters())
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")

    # ------------------------------------------------------------ the hub
    def push_to_hub(self, repo_id: str, *, tasks: Sequence[str] | None = None, metrics: dict[str, Any] | None = None,
                    command: str | None = None, private: bool | None = None, token: str | bool | None = None,
                    revision: str | None = None, commit_message: str | None = None) -> Any:
        """Upload the adapter (``save_pretrained``'s folder) to the hub repo ``repo_id`` with a model card naming
        the method, the base model, ``tasks``, ``metrics`` and the ``command`` that trained it
        (:func:`dept_vl.hub.push_folder`; a run folder's own facts come with ``dept-vl push-to-hub``)."""
        import tempfile

        from dept_vl.hub import push_folder

        with tempfile.TemporaryDirectory(prefix="dept-vl-adapter-") as folder:
            self.save_pretrained(Path(folder) / "adapter")
            return push_folder(Path(folder) / "adapter", repo_id, tasks=tasks, metrics=metrics, command=command,
                               private=private, token=token, revision=revision, commit_message=commit_message)

    # ------------------------------------------------------------ the state
    def adapter_state_names(self) -> list[str]:
        """The names (as in ``named_parameters``) of the tensors this model's state dict holds."""
        raise NotImplementedError

    def disable_adapter(self) -> AbstractContextManager[None]:
        """A context inside which the model computes exactly what its base computes without the adapter."""
        raise NotImplementedError

    def state_dict(self, *, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> dict[str, Any]:
        """The adapter's tensors only, under their module paths (``prompt``, ``base_model.<module>.<name>``):
        the frozen base is not part of this model's state. ``save_pretrained`` writes the adapter folder."""
        full = super().state_dict(keep_vars=keep_vars)
        out = destination if destination is not None else OrderedDict()
        for name in self.adapter_state_names():
            out[prefix + name] = full[name]
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load adapter tensors; ``strict`` requires exactly :meth:`adapter_state_names` (base tensors, if given,
        load too). Returns torch's ``(missing_keys, unexpected_keys)``, counting adapter tensors only."""
        names = set(self.adapter_state_names())
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        result.missing_keys[:] = [k for k in result.missing_keys if k in names]
        if strict and (result.missing_keys or result.unexpected_keys):
            raise RuntimeError(f"{type(self).__name__}.load_state_dict: missing adapter tensors {result.missing_keys}, "
                               f"unexpected tensors {result.unexpected_keys}; this model's state is {sorted(names)}")
        return result

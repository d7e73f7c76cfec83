"""Serving many DePT and prompt-tuning adapters at once: each row of a batch with its own adapter, one pass
of the frozen base (see :mod:`dept_vl.dept.multi` for how rows with different adapters share it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from dept_vl.dept.model import DePTModel
from dept_vl.dept.multi import IMAGE_KEYS, BareBase, packed_generate, pad_right
from dept_vl.methods import load_adapter_model


class MultiAdapterModel(nn.Module):
    """Named DePT (or prompt-tuning) adapters on one frozen base, served together.

    ``generate(input_ids, attention_mask, adapter_ids=[...])`` gives row i the adapter ``adapter_ids[i]``; each
    row's output equals that adapter's own ``generate`` on the same batch. ``None`` as an id runs that row on
    the bare base.

    Example::

        multi = MultiAdapterModel(base)
        multi.add_adapter("cola", "adapters/cola")
        multi.add_adapter("sst2", "adapters/sst2")
        ids = multi.generate(**batch, adapter_ids=["cola", "sst2", "cola"], max_new_tokens=4)
    """

    def __init__(self, base_model: nn.Module):
        super().__init__()
        self.base_model = base_model
        base_model.requires_grad_(False)
        self.adapters = nn.ModuleDict()

    def add_adapter(self, name: str, adapter: DePTModel | str | Path) -> DePTModel:
        """Add an adapter under ``name``: a model built on this base, or an adapter folder (or hub id) to load."""
        if not name or "." in name:
            raise ValueError(f"adapter name {name!r}: give a non-empty name without dots")
        if name in self.adapters:
            raise ValueError(f"an adapter named {name!r} is already loaded; remove it first or choose another name")
        if not isinstance(adapter, nn.Module):
            adapter = load_adapter_model(self.base_model, adapter)
        if not isinstance(adapter, DePTModel):
            raise ValueError(f"adapter {name!r} is a {type(adapter).__name__}: only DePT and prompt-tuning adapters change "
                             f"nothing but the input, so only they can share a batch")
        if adapter.base_model is not self.base_model:
            raise ValueError(f"adapter {name!r} is built on another base model object; build or load it on this one")
        if adapter.trainable_modules:
            raise ValueError(f"adapter {name!r} trains base modules ({sorted(adapter.trainable_modules)}): rows with other "
                             f"adapters would see them too; serve it alone")
        self.adapters[name] = adapter
        return adapter

    def remove_adapter(self, name: str) -> None:
        del self.adapters[self._known(name)]

    def _known(self, name: str) -> str:
        if name not in self.adapters:
            raise KeyError(f"no adapter named {name!r}; loaded: {sorted(self.adapters)}")
        return name

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                 adapter_ids: Sequence[str | None], **generation_kwargs: Any) -> torch.Tensor:
        """Generate with row i under adapter ``adapter_ids[i]`` (None: the bare base); rows come back in order,
        right-padded to one width with :attr:`pad_token_id`. Image inputs (``pixel_values``, ``image_features``,
        ``image_mask``) are split by row like the text."""
        if len(adapter_ids) != int(input_ids.shape[0]):
            raise ValueError(f"adapter_ids has {len(adapter_ids)} entries for {int(input_ids.shape[0])} rows; give one per row")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        images = {k: generation_kwargs.pop(k) for k in IMAGE_KEYS if generation_kwargs.get(k) is not None}
        order: list[int] = []
        groups: list[tuple[DePTModel, dict[str, Any]]] = []
        for name in dict.fromkeys(adapter_ids):
            rows = [i for i, a in enumerate(adapter_ids) if a == name]
            index = torch.tensor(rows, device=input_ids.device)
            batch = {"input_ids": input_ids[index], "attention_mask": attention_mask[index],
                     **{k: _take(v, rows) for k, v in images.items()}}
            groups.append((self._bare() if name is None else self.adapters[self._known(name)], batch))
            order += rows
        outputs = packed_generate(groups, **generation_kwargs)
        merged = pad_right(outputs, self.pad_token_id)
        back = torch.empty(len(order), dtype=torch.long, device=merged.device)
        back[torch.tensor(order, device=merged.device)] = torch.arange(len(order), device=merged.device)
        return merged[back]

    @property
    def pad_token_id(self) -> int:
        """What generation pads finished rows with: the pad token, else (as generate does) the end token."""
        config = self.base_model.generation_config
        for value in (getattr(config, "pad_token_id", None), getattr(config, "eos_token_id", None)):
            if value is not None:
                return int(value[0] if isinstance(value, (list, tuple)) else value)
        return 0

    def _bare(self) -> BareBase:
        if not hasattr(self, "_bare_model"):
            self._bare_model = BareBase(self.base_model)
        return self._bare_model


def _take(value: Any, rows: list[int]) -> Any:
    if isinstance(value, torch.Tensor):
        return value[torch.tensor(rows, device=value.device)]
    return [value[i] for i in rows]  # a list of images

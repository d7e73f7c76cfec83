"""Many DePT adapters on one frozen base in one pass: every row of a batch carries its own adapter.

DePT's parameters act only on the encoder's input (a prompt in front, ``A @ B`` added to the text), so rows
with different adapters can share every layer of the base. Each group of rows builds its encoder input
exactly as its own :class:`~dept_vl.dept.DePTModel` would (prompt, offset, then the VL model's visual tokens
at that group's own width); the groups are right-padded to one width and run together. Right padding is
masked and comes after every real token, so each row computes what it computes alone (up to the rounding of
differently shaped matrix products).

- :func:`encoder_inputs`: one adapter's encoder input for a batch, as its ``forward`` builds it.
- :func:`packed_forward`: the base's output for several (adapter, batch) groups at once (training).
- :func:`packed_generate`: generation for several (adapter, batch) groups at once (evaluation).

Serving named adapters together (``generate(..., adapter_ids=...)``) is
:class:`dept_vl.methods.serving.MultiAdapterModel`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dept_vl.dept.model import DePTModel

IMAGE_KEYS = ("pixel_values", "image_features", "image_mask")
TEXT_KEYS = ("input_ids", "attention_mask")


def encoder_inputs(model: DePTModel, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's input embeddings and mask for ``batch`` exactly as ``model.forward`` builds them: the
    prompt, the text with ``A @ B`` added, and (for the VL model) the projected visual tokens after the text."""
    embeds, mask = model.prepare_inputs(batch["input_ids"], batch.get("attention_mask"))
    base = model.base_model
    if hasattr(base, "build_encoder_inputs"):  # the VL model appends its visual tokens
        images = {k: batch[k] for k in IMAGE_KEYS if batch.get(k) is not None}
        embeds, mask = base.build_encoder_inputs(inputs_embeds=embeds, attention_mask=mask, **images)
    return embeds, mask


class BareBase(nn.Module):
    """The base without an adapter, as a group of rows can take it: its own input embeddings, no prompt, no
    offset (``prepare_inputs`` as :class:`DePTModel` has it)."""

    def __init__(self, base_model: nn.Module):
        super().__init__()
        self.base_model = base_model

    def prepare_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        embeds = self.base_model.get_input_embeddings()(input_ids)
        return embeds, attention_mask if attention_mask is not None else torch.ones_like(input_ids)


def pad_right(tensors: Sequence[torch.Tensor], value: float | int, width: int | None = None) -> torch.Tensor:
    """Right-pad each tensor's dim 1 to ``width`` (default: the widest) with ``value``; concatenated along dim 0."""
    width = width if width is not None else max(int(t.shape[1]) for t in tensors)
    padded = []
    for t in tensors:
        extra = width - int(t.shape[1])
        if extra:
            shape = list(t.shape)
            shape[1] = extra
            t = torch.cat([t, t.new_full(shape, value)], dim=1)
        padded.append(t)
    return torch.cat(padded, dim=0)


def _packed_encoder_inputs(groups: Sequence[tuple[DePTModel, Mapping[str, Any]]]) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [encoder_inputs(model, batch) for model, batch in groups]
    return pad_right([e for e, _ in parts], 0.0), pad_right([m for _, m in parts], 0)


def _shared_base(groups: Sequence[tuple[DePTModel, Mapping[str, Any]]]) -> nn.Module:
    bases = {id(model.base_model) for model, _ in groups}
    if len(bases) != 1:
        raise ValueError(f"packed adapters must share one base model object; got {len(bases)} different bases")
    return groups[0][0].base_model


def _text_model(base: nn.Module) -> nn.Module:
    """The Hugging Face seq2seq model of ``base`` (the VL model's text model, or ``base`` itself)."""
    return getattr(base, "text_model", base)


def packed_forward(groups: Sequence[tuple[DePTModel, Mapping[str, Any]]]) -> Any:
    """The base's output (logits of every row) for several (adapter, batch) groups in one forward pass.

    Each batch keeps its own text width (and so its visual tokens' positions); labels (and
    ``decoder_attention_mask``) are right-padded with -100 (0) and become the decoder's inputs as the base
    makes them. The output carries logits and no loss (one over every group would mix them, and cost a pass
    over the whole vocabulary): :func:`group_losses` gives each group's own mean."""
    base = _shared_base(groups)
    embeds, mask = _packed_encoder_inputs(groups)
    extra: dict[str, Any] = {"use_cache": False}
    if all(batch.get("labels") is not None for _, batch in groups):
        labels = pad_right([batch["labels"] for _, batch in groups], -100)
        extra["decoder_input_ids"] = _text_model(base).prepare_decoder_input_ids_from_labels(labels=labels)
    if all(batch.get("decoder_attention_mask") is not None for _, batch in groups):
        extra["decoder_attention_mask"] = pad_right([batch["decoder_attention_mask"] for _, batch in groups], 0)
    if hasattr(base, "encode"):  # the VL model: encode the ready input, then its text model
        return base(encoder_outputs=base.encode(embeds, mask), attention_mask=mask, **extra)
    return base(inputs_embeds=embeds, attention_mask=mask, **extra)


def group_losses(logits: torch.Tensor, labels: Sequence[torch.Tensor]) -> torch.Tensor:
    """Each group's loss as the base computes it for that group's batch alone: the mean token cross-entropy
    (-100 ignored) over the group's rows and its own label width. ``labels``: each group's labels, in order."""
    out, start = [], 0
    for group in labels:
        rows, width = int(group.shape[0]), int(group.shape[1])
        part = logits[start : start + rows, :width]
        out.append(F.cross_entropy(part.reshape(-1, part.shape[-1]), group.to(part.device).reshape(-1), ignore_index=-100))
        start += rows
    return torch.stack(out)


@torch.no_grad()
def packed_generate(groups: Sequence[tuple[DePTModel, Mapping[str, Any]]], **generation_kwargs: Any) -> list[torch.Tensor]:
    """Generated token ids for several (adapter, batch) groups in one ``generate`` call; one tensor per group
    (its rows, in order). Every HF generation option works (greedy, beams, ...)."""
    base = _shared_base(groups)
    embeds, mask = _packed_encoder_inputs(groups)
    if hasattr(base, "encode"):  # as VLEncoderDecoder.generate: encode once, then the text model generates
        output = base.text_model.generate(encoder_outputs=base.encode(embeds, mask), attention_mask=mask, **generation_kwargs)
    else:
        output = base.generate(inputs_embeds=embeds, attention_mask=mask, **generation_kwargs)
    out, start = [], 0
    for _, batch in groups:
        size = int(batch["input_ids"].shape[0])
        out.append(output[start:start + size])
        start += size
    return out

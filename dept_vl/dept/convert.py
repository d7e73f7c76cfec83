"""Conversion of released DePT checkpoints to the dept-vl adapter format, without the base model."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from dept_vl.dept.model import ADAPTER_FILE, CONFIG_FILE, FORMAT_NAME, FORMAT_VERSION, initial_lowrank
from dept_vl.dept.official import read_official
from dept_vl.io import save_tensors_atomic, write_json_atomic


def convert_official(directory: str | Path, out: str | Path) -> Path:
    """Write ``out/dept_config.json`` + ``out/adapter.safetensors`` from a released checkpoint folder.

    No base model is needed: the shape facts come from the checkpoint (token_dim); the vocabulary size is
    not recorded, so it is not checked at load. A prompt-only checkpoint gets A and B at their
    initialisation (B = 0) and a warning, as :meth:`DePTModel.from_official` does.
    """
    config, tensors, raw = read_official(directory)
    d_model = int(raw.get("token_dim", tensors["prompt"].shape[1]))
    if config.rank > 0 and ("lowrank_A" not in tensors or "lowrank_B" not in tensors):
        warnings.warn(f"{directory} holds prompt_embeddings only: A and B keep their initialisation (B = 0)", stacklevel=2)
        a, b = initial_lowrank(config, d_model, torch.Generator().manual_seed(config.seed))
        tensors = {"prompt": tensors["prompt"], "lowrank_A": a, "lowrank_B": b}
    facts = {
        "name_or_path": raw.get("base_model_name_or_path", ""),
        "model_type": "t5" if "t5" in str(raw.get("base_model_name_or_path", "")).lower() else "unknown",
        "d_model": d_model,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors_atomic(out / ADAPTER_FILE, tensors, metadata={"format": FORMAT_NAME, "imported_from": "DePT release"})
    write_json_atomic(out / CONFIG_FILE, {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "dept": config.to_dict(), "base_model": facts,
        "imported_from": {"peft_type": raw.get("peft_type"), "task_type": raw.get("task_type")},
    })
    return out

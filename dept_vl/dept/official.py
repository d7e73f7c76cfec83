"""The checkpoints released with the DePT paper (an old peft fork's PROMPT_TUNING_LORA format): load onto a
base model, or convert to a dept-vl adapter folder without one."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dept_vl.adapter import write_adapter
from dept_vl.dept.config import DePTConfig
from dept_vl.dept.model import DePTModel, initial_lowrank

OFFICIAL_CONFIG = "adapter_config.json"
OFFICIAL_WEIGHTS = "adapter_model.bin"
OFFICIAL_PEFT_TYPE = "PROMPT_TUNING_LORA"
RESULT_FILES = ("test_results.json", "eval_results.json", "all_results.json")  # the release's reported metrics
# their tensor names -> ours
TENSOR_NAMES = {
    "prompt_embeddings": "prompt",
    "prompt_encoder.lora_embedding_A": "lowrank_A",
    "prompt_encoder.lora_embedding_B": "lowrank_B",
}


def read_official(directory: str | Path) -> tuple[DePTConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a released checkpoint: (our config, our-named tensors, their raw config).

    The ``.bin`` is a foreign pickle, so it is loaded with ``weights_only=True`` (tensors only, no code). A
    checkpoint holding only ``prompt_embeddings`` gets A and B at their initialisation (B = 0, so A @ B = 0)
    and a warning: it acts as prompt tuning until it is trained.
    """
    directory = Path(directory).expanduser()
    config_path, weights_path = directory / OFFICIAL_CONFIG, directory / OFFICIAL_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: a DePT checkpoint folder holds {OFFICIAL_CONFIG} and {OFFICIAL_WEIGHTS}")
    raw = json.loads(config_path.read_text())
    if raw.get("peft_type") != OFFICIAL_PEFT_TYPE:
        raise ValueError(f"{config_path}: peft_type is {raw.get('peft_type')!r}, expected {OFFICIAL_PEFT_TYPE!r} (a DePT checkpoint)")
    init = str(raw.get("prompt_tuning_init", "TEXT")).lower()
    config = DePTConfig(
        num_virtual_tokens=int(raw["num_virtual_tokens"]),
        rank=int(raw.get("r", 0)),
        max_length=int(raw.get("max_length", 256)),
        alpha=float(raw.get("lora_alpha", 8)),
        init=init if init in ("text", "random") else "random",
        init_text=raw.get("prompt_tuning_init_text") or None if init == "text" else None,
    )
    if config.init == "text" and not config.init_text:
        config.init = "random"
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    tensors = {TENSOR_NAMES[k]: v.float() for k, v in state.items() if k in TENSOR_NAMES}
    if "prompt" not in tensors:
        raise ValueError(f"{weights_path} holds no prompt_embeddings (keys: {sorted(state)}); is it a DePT checkpoint?")
    if config.rank > 0 and ("lowrank_A" not in tensors or "lowrank_B" not in tensors):
        warnings.warn(f"{directory} holds prompt_embeddings only: A and B keep their initialisation (B = 0, so A @ B = 0); "
                      "the imported adapter acts as prompt tuning until it is trained", stacklevel=2)
        d_model = int(raw.get("token_dim", tensors["prompt"].shape[1]))
        a, b = initial_lowrank(config, d_model, torch.Generator().manual_seed(config.seed))
        tensors = {"prompt": tensors["prompt"], "lowrank_A": a, "lowrank_B": b}
    return config, tensors, raw


def official_folder(name_or_path: str | Path, revision: str | None = None) -> Path:
    """The folder of a released checkpoint: a local folder or a hub repo ``user/name`` (cached, offline mode honoured)."""
    from dept_vl.hub import resolve_folder

    return resolve_folder(name_or_path, revision, files=(OFFICIAL_CONFIG, OFFICIAL_WEIGHTS, *RESULT_FILES))


def reported_metrics(directory: Path) -> dict[str, float]:
    """The numbers a release reports beside its checkpoint (``test_results.json`` and the like), by name."""
    found: dict[str, float] = {}
    for name in RESULT_FILES:
        path = directory / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue
            found.update({k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not k.endswith(("runtime", "per_second"))})
    return found


def from_official(base_model: nn.Module, directory: str | Path, revision: str | None = None) -> DePTModel:
    """A :class:`DePTModel` on ``base_model`` from a released checkpoint: a folder or a hub repo ``user/name``."""
    directory = official_folder(directory, revision)
    config, tensors, raw = read_official(directory)
    d_model = int(base_model.get_input_embeddings().weight.shape[1])
    token_dim = int(raw.get("token_dim", tensors["prompt"].shape[1]))
    if token_dim != d_model:
        raise ValueError(
            f"checkpoint {directory} was trained on a base with d_model={token_dim} "
            f"({raw.get('base_model_name_or_path', 'unknown')}), but this base model has d_model={d_model}"
        )
    model = DePTModel(base_model, config, initialize=False)
    model.load_adapter_state(tensors)
    model.base_model_name = raw.get("base_model_name_or_path")
    return model


def convert_official(directory: str | Path, out: str | Path, revision: str | None = None) -> Path:
    """Write a dept-vl adapter folder from a released checkpoint (a folder or a hub repo), without the base model.

    The shape facts come from the checkpoint (``token_dim``); the vocabulary size is not recorded, so it is
    not checked at load. The release's reported metrics are kept in the record (``imported_from``) for the
    model card of ``dept-vl push-to-hub``.
    """
    directory = official_folder(directory, revision)
    config, tensors, raw = read_official(directory)
    name = str(raw.get("base_model_name_or_path", ""))
    facts = {"name_or_path": name, "model_type": "t5" if "t5" in name.lower() else "unknown",
             "text_model_type": "t5" if "t5" in name.lower() else "unknown",
             "d_model": int(raw.get("token_dim", tensors["prompt"].shape[1]))}
    return write_adapter(out, method="dept", settings=config.to_dict(), tensors=tensors, base_model=facts,
                         extra={"imported_from": {"peft_type": raw.get("peft_type"), "task_type": raw.get("task_type"),
                                                 "reported_metrics": reported_metrics(directory)}})

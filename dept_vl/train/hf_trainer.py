"""transformers' ``Trainer`` with dept-vl models: a callback that writes the adapter folder into every checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class SaveAdapterCallback(TrainerCallback):
    """Writes ``model.save_pretrained`` (``adapter_config.json`` + ``adapter_model.safetensors``) into each
    ``checkpoint-<step>`` folder the Trainer saves, so that ``DePTModel.from_pretrained(base, checkpoint)`` and
    ``dept-vl evaluate --adapter checkpoint`` read it. The Trainer's own ``model.safetensors`` there holds the
    same tensors (``state_dict()`` is the adapter's) and is what ``resume_from_checkpoint`` reads."""

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        if model is not None and state.is_world_process_zero:
            model.save_pretrained(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        return control

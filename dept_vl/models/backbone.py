"""Save and load a whole VL backbone (all weights + its spec) without any hub download."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any, Iterator

import torch

from dept_vl.io import atomic_path, write_json_atomic
from dept_vl.models.presets import WORD_LEVEL, VLModelSpec, build_from_spec, build_tokenizer
from dept_vl.models.vl import VLEncoderDecoder

WEIGHTS_FILE = "backbone.safetensors"
CONFIG_FILE = "backbone.json"
TOKENIZER_DIR = "tokenizer"
FORMAT_NAME = "dept-vl-backbone"
FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    import timm
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "timm": timm.__version__}


def save_backbone(model: VLEncoderDecoder | Any, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``backbone.safetensors`` (every weight), ``backbone.json`` (spec, versions, ``extra``) and ``tokenizer/``.

    The spec is saved with the text model's full config and ``image_pretrained=False``, so
    :func:`load_backbone` rebuilds the same structure offline and fills it with these weights.
    """
    from safetensors.torch import save_model

    if getattr(model, "spec", None) is None:
        raise ValueError("this model was built without a preset spec; build it with dept_vl.models.build_vl_model to save it")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = getattr(model, "text_model", model)  # a text-only spec builds the text model itself
    text_config = json.loads(text.config.to_json_string(use_diff=False))
    spec = dataclasses.replace(model.spec, text_config=text_config, image_pretrained=False)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_model(model, str(tmp), metadata={"format": FORMAT_NAME})
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    write_json_atomic(directory / CONFIG_FILE, {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "versions": _versions(),
        **({"extra": extra} if extra else {}),
    })
    return directory


def read_backbone_spec(directory: str | Path) -> tuple[VLModelSpec, dict[str, Any]]:
    """The spec and the whole metadata of a saved backbone, with clear errors for missing or foreign files."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{directory} is not a dept-vl backbone: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    meta = json.loads(config_path.read_text())
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{config_path} has format {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    return VLModelSpec.from_dict(meta["spec"]), meta


def load_backbone(directory: str | Path, device: str | torch.device | None = None) -> VLEncoderDecoder | Any:
    """Rebuild the model saved by :func:`save_backbone` from its spec and load every weight (strict)."""
    from safetensors.torch import load_model

    directory = Path(directory)
    spec, _ = read_backbone_spec(directory)
    tokenizer = None
    if (directory / TOKENIZER_DIR).is_dir():  # the saved tokenizer itself, whatever the code's defaults now
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory / TOKENIZER_DIR))
    elif spec.tokenizer == WORD_LEVEL:  # an older backbone without its tokenizer folder: rebuild it from the words
        tokenizer = build_tokenizer(spec)
    model = build_unfilled(dataclasses.replace(spec, image_pretrained=False), tokenizer)
    missing, unexpected = load_model(model, str(directory / WEIGHTS_FILE), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"backbone {directory} does not match the model its spec builds: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; it was written by other library versions {_versions()}?"
        )
    model.eval()  # as from_pretrained does; call .train() to fine-tune
    return model.to(device) if device is not None else model


RANDOM_FILLS = ("normal_", "uniform_")  # what every random initialisation of torch, transformers and timm draws with


@contextlib.contextmanager
def random_fills_skipped() -> Iterator[None]:
    """Inside, ``Tensor.normal_`` and ``Tensor.uniform_`` leave their tensor as it is: for weights about to be loaded.
    The methods are the process's own, so another thread's draws are skipped too while inside (loading a backbone runs
    before a run starts any thread)."""
    real = {name: getattr(torch.Tensor, name) for name in RANDOM_FILLS}

    def unchanged(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    try:
        for name in RANDOM_FILLS:
            setattr(torch.Tensor, name, unchanged)
        yield
    finally:
        for name, method in real.items():
            setattr(torch.Tensor, name, method)


def build_unfilled(spec: VLModelSpec, tokenizer: Any) -> Any:
    """The spec's model with its weights allocated but not drawn at random, for weights about to be loaded (the random
    initialisation of T5-base's shapes alone takes seconds of host time; every weight the file lacks is an error of
    :func:`load_backbone`). A model that keeps tensors no weights file holds (a non-persistent buffer, a plain tensor
    attribute) is built the ordinary way, so that they hold what its code makes of them."""
    with random_fills_skipped():
        model = build_from_spec(spec, tokenizer=tokenizer)
    saved = set(model.state_dict())
    unsaved_buffers = [name for name, _ in model.named_buffers() if name not in saved]
    plain_tensors = [name for module in model.modules() for name, value in vars(module).items()
                     if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter)]
    if unsaved_buffers or plain_tensors:
        return build_from_spec(spec, tokenizer=tokenizer)
    return model

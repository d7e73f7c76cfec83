"""Inspecting a checkpoint released with the DePT paper: its prompt, its low-rank offset A @ B (norms per
position, singular values) and, when a tokenizer and the base model's embedding matrix are at hand, the
vocabulary tokens nearest to each prompt vector.

The embedding matrix is the base model's input embedding (``shared.weight`` of t5-base, shape 32128 x 768).
With a network, ``transformers.T5ForConditionalGeneration.from_pretrained("t5-base").shared.weight`` gives
it; :func:`load_embedding_matrix` reads it from a file or from the Hugging Face cache, and returns None offline.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import torch

from dept_vl.dept.config import DePTConfig
from dept_vl.dept.official import OFFICIAL_CONFIG, read_official
from dept_vl.report.plots import _finish, _pyplot
from dept_vl.report.results import load_json

HUB_NAMES = ("t5-base", "google-t5/t5-base")
EMBEDDING_KEYS = ("shared.weight", "encoder.embed_tokens.weight", "weight")


@dataclasses.dataclass
class OfficialCheckpoint:
    """A released checkpoint's tensors with our names: ``prompt`` (m x d), ``lowrank_A`` (s x r), ``lowrank_B`` (r x d)."""

    directory: Path
    config: DePTConfig
    raw: dict[str, Any]
    prompt: torch.Tensor
    lowrank_A: torch.Tensor | None
    lowrank_B: torch.Tensor | None
    test_results: dict[str, Any] | None

    @property
    def offset(self) -> torch.Tensor | None:
        """The offset added to the input embeddings: scale x A @ B (s x d), as ``DePTModel.lowrank_update``."""
        if self.lowrank_A is None or self.lowrank_B is None:
            return None
        return self.config.scale * (self.lowrank_A @ self.lowrank_B)


def load_official(directory: str | Path | None) -> OfficialCheckpoint | None:
    """Read the checkpoint in ``directory`` (see ``dept_vl.dept.official.read_official``); None when the folder
    or its ``adapter_config.json`` is missing (the release is not part of every clone)."""
    if not directory or not (Path(directory) / OFFICIAL_CONFIG).is_file():
        return None
    config, tensors, raw = read_official(directory)
    return OfficialCheckpoint(Path(directory), config, raw, tensors["prompt"], tensors.get("lowrank_A"),
                              tensors.get("lowrank_B"), load_json(Path(directory) / "test_results.json"))


def row_norms(matrix: torch.Tensor) -> torch.Tensor:
    """The L2 norm of every row (one per prompt or input position)."""
    return matrix.float().norm(dim=-1)


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values, largest first (at most r of A @ B are non-zero)."""
    return torch.linalg.svdvals(matrix.float())


def energy_rank(values: torch.Tensor, energy: float = 0.9) -> int:
    """How many of the largest singular values hold ``energy`` of the squared total (0 for a zero matrix)."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    squares = values.float() ** 2
    total = float(squares.sum())
    if total == 0:
        return 0
    cumulative = torch.cumsum(squares, 0) / total
    return int((cumulative < energy - 1e-12).sum()) + 1


def checkpoint_summary(ckpt: OfficialCheckpoint) -> list[dict[str, Any]]:
    """Rows ``{field, value}``: the base model, m, r, s, d, alpha, scale, the init text, trainable parameters,
    norms of the prompt and the offset, the offset's singular values, and the reported test results."""
    d = int(ckpt.prompt.shape[1])
    rows = [("base model", ckpt.raw.get("base_model_name_or_path")), ("task type", ckpt.raw.get("task_type")),
            ("m (prompt tokens)", ckpt.config.num_virtual_tokens), ("r (rank)", ckpt.config.rank),
            ("s (max input length)", ckpt.config.max_length), ("d (width)", d), ("alpha", ckpt.config.alpha),
            ("scale of A @ B (alpha / sqrt r)", ckpt.config.scale), ("prompt init text", ckpt.config.init_text),
            ("trainable parameters", ckpt.config.num_parameters(d)),
            ("mean prompt norm", float(row_norms(ckpt.prompt).mean()))]
    offset = ckpt.offset
    if offset is not None:
        values = singular_values(offset)
        rows += [("mean offset norm (scale A @ B)", float(row_norms(offset).mean())),
                 ("largest singular value of scale A @ B", float(values[0])),
                 ("singular values holding 90% of the energy", energy_rank(values))]
    rows += [(f"reported {k}", v) for k, v in (ckpt.test_results or {}).items()]
    return [{"field": k, "value": v} for k, v in rows]


# ------------------------------------------------------------------ tokens
def load_tokenizer(directory: str | Path | None):
    """A fast T5 tokenizer from a folder holding ``tokenizer.json`` (offline), or None."""
    if not directory or not (Path(directory) / "tokenizer.json").is_file():
        return None
    from transformers import T5TokenizerFast

    return T5TokenizerFast(tokenizer_file=str(Path(directory) / "tokenizer.json"))


def init_token_ids(ckpt: OfficialCheckpoint, tokenizer) -> list[int] | None:
    """The token ids whose embeddings initialised each prompt position (the peft fork's TEXT init: the init
    text's ids, end-of-sequence included, repeated and cut to m); None for a random init."""
    if not ckpt.config.init_text or tokenizer is None:
        return None
    ids = list(tokenizer(ckpt.config.init_text)["input_ids"])
    m = ckpt.config.num_virtual_tokens
    return (ids * math.ceil(m / len(ids)))[:m]


def load_embedding_matrix(source: str | Path | None = None) -> torch.Tensor | None:
    """The base model's input embedding matrix (vocab x d), or None when it is not at hand.

    ``source``: a ``.safetensors`` file (key ``shared.weight`` or its only tensor), a ``.pt``/``.bin`` file (a
    tensor or a state dict) or a ``.npy`` file; None looks for t5-base's weights in the Hugging Face cache.
    """
    if source:
        return _read_matrix(Path(source))
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in HUB_NAMES:
        cached = try_to_load_from_cache(name, "model.safetensors")
        if isinstance(cached, str) and os.path.isfile(cached):
            return _read_matrix(Path(cached))
    return None


def _read_matrix(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"embedding matrix file {path} not found")
    if path.suffix == ".npy":
        import numpy as np

        return torch.from_numpy(np.load(path)).float()
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            key = next((k for k in EMBEDDING_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ValueError(f"{path} holds no embedding matrix (none of {EMBEDDING_KEYS} among {keys[:10]})")
            return f.get_tensor(key).float()
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        key = next((k for k in EMBEDDING_KEYS if k in obj), None)
        if key is None:
            raise ValueError(f"{path} holds no embedding matrix (none of {EMBEDDING_KEYS} among {list(obj)[:10]})")
        obj = obj[key]
    return obj.float()


def nearest_tokens(vectors: torch.Tensor, embedding: torch.Tensor, k: int = 5,
                   vocab_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarity of each vector to its ``k`` nearest rows of ``embedding`` (the first ``vocab_size``
    rows only: T5's matrix has 28 padding rows past its 32,100 tokens): ``(similarities, ids)``, both n x k."""
    if vectors.shape[-1] != embedding.shape[-1]:
        raise ValueError(f"vectors have width {vectors.shape[-1]} but the embedding matrix {embedding.shape[-1]}; "
                         "use the embedding matrix of the checkpoint's base model")
    table = embedding[:vocab_size].float() if vocab_size else embedding.float()
    sims = torch.nn.functional.normalize(vectors.float(), dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T
    values, ids = sims.topk(min(k, table.shape[0]), dim=-1)
    return values, ids


def prompt_table(ckpt: OfficialCheckpoint, tokenizer=None, embedding: torch.Tensor | None = None, k: int = 3,
                 positions: int | None = None) -> list[dict[str, Any]]:
    """One row per prompt position (the first ``positions``): its norm, the token it was initialised from, and,
    with an embedding matrix, the cosine to that token's embedding and the ``k`` nearest vocabulary tokens."""
    prompt = ckpt.prompt[:positions] if positions else ckpt.prompt
    norms = row_norms(prompt)
    init = init_token_ids(ckpt, tokenizer)
    vocab = len(tokenizer) if tokenizer is not None else None
    nearest = nearest_tokens(prompt, embedding, k, vocab) if embedding is not None else None
    rows = []
    for i in range(prompt.shape[0]):
        row: dict[str, Any] = {"position": i, "norm": float(norms[i])}
        if init is not None:
            row["init token"] = tokenizer.convert_ids_to_tokens(init[i])
            if embedding is not None:
                row["cosine to init token"] = float(torch.nn.functional.cosine_similarity(prompt[i], embedding[init[i]].float(), dim=0))
        if nearest is not None:
            sims, ids = nearest[0][i], nearest[1][i]
            names = tokenizer.convert_ids_to_tokens(ids.tolist()) if tokenizer is not None else [str(t) for t in ids.tolist()]
            row["nearest tokens (cosine)"] = ", ".join(f"{n} ({s:.2f})" for n, s in zip(names, sims.tolist()))
        rows.append(row)
    return rows


# ------------------------------------------------------------------ the model and a plot
def base_model_for(ckpt: OfficialCheckpoint, layers: int = 1):
    """The checkpoint's base model from the Hugging Face cache when present (``local_files_only``), else a
    stand-in T5 of the same width with ``layers`` layers and random weights: enough to show the import and
    count parameters, not to run the task. Returns ``(model, is_real)``."""
    from transformers import T5Config, T5ForConditionalGeneration

    name = ckpt.raw.get("base_model_name_or_path") or "t5-base"
    try:
        return T5ForConditionalGeneration.from_pretrained(name, local_files_only=True), True
    except (OSError, ValueError):
        d = int(ckpt.prompt.shape[1])
        heads = int(ckpt.raw.get("num_attention_heads") or 12)
        config = T5Config(vocab_size=32128, d_model=d, d_kv=d // heads, num_heads=heads, d_ff=64, num_layers=layers,
                          num_decoder_layers=layers, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
        return T5ForConditionalGeneration(config).eval(), False


def plot_official(ckpt: OfficialCheckpoint, path: str | Path | None = None):
    """Norm per prompt position, norm of scale x A @ B per input position, and its singular values."""
    plt = _pyplot()
    offset = ckpt.offset
    panels = 3 if offset is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.2), squeeze=False)
    axes = axes[0]
    axes[0].plot(row_norms(ckpt.prompt).numpy(), marker=".")
    axes[0].set(title="prompt: norm per position", xlabel="prompt position", ylabel="L2 norm")
    if offset is not None:
        axes[1].plot(row_norms(offset).numpy(), marker=".", markersize=3)
        axes[1].set(title="scale x A @ B: norm per position", xlabel="input position", ylabel="L2 norm")
        values = singular_values(offset)[: max(ckpt.config.rank, 1) + 5].numpy()
        axes[2].bar(range(1, len(values) + 1), values)
        axes[2].set(title=f"singular values of scale x A @ B (r={ckpt.config.rank})", xlabel="index")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(plt, fig, path)

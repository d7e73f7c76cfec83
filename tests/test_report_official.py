"""Inspection of released DePT checkpoints: norms, spectrum, init tokens and nearest tokens, on hand-made tensors
and checkpoint folders; and on the real release when it is beside this checkout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dept_vl.report import official


def write_checkpoint(folder: Path, m: int = 4, r: int = 2, s: int = 5, d: int = 3, text: str | None = "go") -> dict:
    torch.manual_seed(0)
    tensors = {"prompt_embeddings": torch.randn(m, d), "prompt_encoder.lora_embedding_A": torch.randn(s, r),
               "prompt_encoder.lora_embedding_B": torch.randn(r, d)}
    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "PROMPT_TUNING_LORA", "num_virtual_tokens": m, "r": r, "max_length": s, "lora_alpha": 8,
              "token_dim": d, "base_model_name_or_path": "t5-base", "prompt_tuning_init": "TEXT" if text else "RANDOM",
              "prompt_tuning_init_text": text}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    torch.save(tensors, folder / "adapter_model.bin")
    (folder / "test_results.json").write_text(json.dumps({"test_accuracy": 90.0}))
    return tensors


class FakeTokenizer:
    """Ids 0..4 named t0..t4; every text encodes to [2, 3, 1] (two tokens and end-of-sequence)."""

    def __call__(self, text):
        return {"input_ids": [2, 3, 1]}

    def __len__(self):
        return 5

    def convert_ids_to_tokens(self, ids):
        return f"t{ids}" if isinstance(ids, int) else [f"t{i}" for i in ids]


def test_norms_spectrum_and_energy_rank_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    b = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0]])
    assert official.row_norms(a @ b).tolist() == [3.0, 4.0, 0.0]
    values = official.singular_values(a @ b)
    assert values.tolist() == pytest.approx([4.0, 3.0, 0.0])
    assert official.energy_rank(values, 0.5) == 1  # 16 of 25
    assert official.energy_rank(values, 0.9) == 2 and official.energy_rank(values, 1.0) == 2
    assert official.energy_rank(torch.zeros(3)) == 0
    with pytest.raises(ValueError, match="energy must be in"):
        official.energy_rank(values, 0.0)


def test_nearest_tokens_by_cosine():
    embedding = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 0.2]])
    sims, ids = official.nearest_tokens(torch.tensor([[2.0, 0.1]]), embedding, k=2)
    assert ids.tolist() == [[3, 0]] and sims[0, 1].item() == pytest.approx(2 / (4.01 ** 0.5))
    _, ids = official.nearest_tokens(torch.tensor([[2.0, 0.1]]), embedding, k=2, vocab_size=3)  # padding rows left out
    assert ids.tolist() == [[0, 2]]
    with pytest.raises(ValueError, match="width 3 but the embedding matrix 2"):
        official.nearest_tokens(torch.zeros(1, 3), embedding)


def test_load_official_and_its_summary(tmp_path):
    tensors = write_checkpoint(tmp_path / "ckpt")
    ckpt = official.load_official(tmp_path / "ckpt")
    assert torch.equal(ckpt.prompt, tensors["prompt_embeddings"])
    scale = 8 / 2 ** 0.5
    expected = scale * tensors["prompt_encoder.lora_embedding_A"] @ tensors["prompt_encoder.lora_embedding_B"]
    assert torch.allclose(ckpt.offset, expected)
    summary = {row["field"]: row["value"] for row in official.checkpoint_summary(ckpt)}
    assert summary["trainable parameters"] == 4 * 3 + 2 * (5 + 3) and summary["m (prompt tokens)"] == 4
    assert summary["scale of A @ B (alpha / sqrt r)"] == pytest.approx(scale)
    assert summary["mean prompt norm"] == pytest.approx(float(tensors["prompt_embeddings"].norm(dim=1).mean()))
    assert summary["reported test_accuracy"] == 90.0 and summary["singular values holding 90% of the energy"] in (1, 2)
    assert official.load_official(tmp_path / "absent") is None and official.load_official(None) is None


def test_prompt_table_with_init_tokens_and_an_embedding_matrix(tmp_path):
    write_checkpoint(tmp_path / "ckpt", m=4, d=3)
    ckpt = official.load_official(tmp_path / "ckpt")
    tokenizer = FakeTokenizer()
    assert official.init_token_ids(ckpt, tokenizer) == [2, 3, 1, 2]  # the init text's ids, repeated to m
    embedding = torch.cat([ckpt.prompt[:1] * 2, torch.randn(4, 3)])  # token 0 points where prompt vector 0 does
    rows = official.prompt_table(ckpt, tokenizer, embedding, k=2)
    assert len(rows) == 4 and rows[0]["init token"] == "t2"
    assert rows[0]["nearest tokens (cosine)"].startswith("t0 (1.00)")
    assert rows[0]["cosine to init token"] == pytest.approx(float(torch.nn.functional.cosine_similarity(ckpt.prompt[0], embedding[2], dim=0)))
    assert rows[1]["norm"] == pytest.approx(float(ckpt.prompt[1].norm()))
    plain = official.prompt_table(ckpt, positions=2)  # no tokenizer, no embedding: norms only
    assert [set(r) for r in plain] == [{"position", "norm"}] * 2
    write_checkpoint(tmp_path / "random", text=None)
    assert official.init_token_ids(official.load_official(tmp_path / "random"), tokenizer) is None


def test_load_embedding_matrix_from_files(tmp_path):
    from safetensors.torch import save_file

    matrix = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    np.save(tmp_path / "e.npy", matrix.numpy())
    save_file({"shared.weight": matrix, "other": torch.zeros(1)}, str(tmp_path / "e.safetensors"))
    torch.save({"shared.weight": matrix}, tmp_path / "e.pt")
    torch.save({"nothing": matrix}, tmp_path / "bad.pt")
    for name in ("e.npy", "e.safetensors", "e.pt"):
        assert torch.equal(official.load_embedding_matrix(tmp_path / name), matrix), name
    with pytest.raises(ValueError, match="holds no embedding matrix"):
        official.load_embedding_matrix(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        official.load_embedding_matrix(tmp_path / "absent.npy")


def test_the_released_cola_checkpoint(shared_dir, tmp_path):
    folder = shared_dir / "assets" / "official-dept" / "cola"
    if not folder.is_dir():
        pytest.skip("the released checkpoint is not beside this checkout")
    ckpt = official.load_official(folder)
    assert ckpt.prompt.shape == (80, 768) and ckpt.offset.shape == (256, 768)
    assert int((official.singular_values(ckpt.offset) > 1e-3).sum()) <= 15  # rank r at most
    tokenizer = official.load_tokenizer(shared_dir / "assets" / "t5-tokenizer")
    embedding = torch.randn(32128, 768, generator=torch.Generator().manual_seed(0))
    rows = official.prompt_table(ckpt, tokenizer, embedding, k=3)
    assert len(rows) == 80 and rows[0]["init token"] == "▁Class" and rows[10]["init token"] == "</s>"
    assert all(r["nearest tokens (cosine)"].count("(") == 3 for r in rows)
    official.plot_official(ckpt, tmp_path / "official.png")
    assert (tmp_path / "official.png").stat().st_size > 0

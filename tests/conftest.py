"""Shared fixtures: tiny encoder-decoders built from configs (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared"


def tiny_t5(d_model: int = 64, vocab_size: int = 120, seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size, d_model=d_model, d_ff=2 * d_model, num_layers=2, num_decoder_layers=2,
        num_heads=4, d_kv=d_model // 4, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    return T5ForConditionalGeneration(config).eval()


def tiny_bart(d_model: int = 64, vocab_size: int = 120, seed: int = 0):
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    config = BartConfig(
        vocab_size=vocab_size, d_model=d_model, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=2 * d_model, decoder_ffn_dim=2 * d_model, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, max_position_embeddings=128,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None,
    )
    return BartForConditionalGeneration(config).eval()


def tiny_mt5(d_model: int = 64, vocab_size: int = 120, seed: int = 0):
    from transformers import MT5Config, MT5ForConditionalGeneration

    torch.manual_seed(seed)
    config = MT5Config(
        vocab_size=vocab_size, d_model=d_model, d_ff=2 * d_model, num_layers=2, num_decoder_layers=2,
        num_heads=4, d_kv=d_model // 4, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )
    return MT5ForConditionalGeneration(config).eval()


TINY_BASES = {"t5": tiny_t5, "bart": tiny_bart, "mt5": tiny_mt5}


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def fast_demo_run(tmp_path_factory) -> Path:
    """One `dept-vl demo --fast` run per test session, shared by the demo and notebook tests."""
    from dept_vl.demo.run import DemoSettings, run_demo

    out = tmp_path_factory.mktemp("fast_demo") / "demo"
    run_demo(DemoSettings.fast(str(out)))
    return out

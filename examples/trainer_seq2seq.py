"""Train a DePT adapter with transformers' ``Seq2SeqTrainer``: two learning rates, adapter-only checkpoints.

Runs offline in seconds on a tiny T5 built from a config and a word-level tokenizer::

    python examples/trainer_seq2seq.py --out runs/trainer-example

With a real model, build the base and tokenizer with ``AutoModelForSeq2SeqLM.from_pretrained("t5-base")`` and
``AutoTokenizer.from_pretrained("t5-base")`` instead of :func:`tiny_t5_and_tokenizer`; nothing else changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, T5Config, T5ForConditionalGeneration

from dept_vl.dept import DePTConfig, DePTModel
from dept_vl.models import word_level_tokenizer
from dept_vl.train.hf_trainer import SaveAdapterCallback

COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle"]


def tiny_t5_and_tokenizer(seed: int = 0) -> tuple[Any, Any]:
    """A 2+2-layer T5 with d_model 64 (random weights) and a word-level tokenizer: nothing is downloaded."""
    tokenizer = word_level_tokenizer(["colour", "of", "the", "is", "?"] + COLOURS + SHAPES)
    torch.manual_seed(seed)
    config = T5Config(vocab_size=len(tokenizer), d_model=64, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                      d_kv=16, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5ForConditionalGeneration(config), tokenizer


def toy_dataset(tokenizer: Any) -> list[dict[str, list[int]]]:
    """"colour of the red circle ?" -> "red": one example per colour and shape."""
    pairs = [(f"colour of the {c} {s} ?", c) for c in COLOURS for s in SHAPES]
    return [{"input_ids": tokenizer(x)["input_ids"], "labels": tokenizer(y)["input_ids"]} for x, y in pairs]


def build_trainer(model: DePTModel, tokenizer: Any, output_dir: str | Path, max_steps: int = 20) -> Seq2SeqTrainer:
    """A ``Seq2SeqTrainer`` whose AdamW has DePT's groups: the prompt at ``lr_prompt``, A and B at ``lr_lowrank``.

    The Trainer's linear schedule with warm-up scales each group from its own learning rate. Checkpoints hold
    the adapter only (``model.safetensors`` from ``state_dict()``, and the adapter folder from the callback).
    """
    args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=4, warmup_steps=2,
        lr_scheduler_type="linear", logging_steps=5, save_steps=max_steps, report_to="none", use_cpu=True,
        seed=0, predict_with_generate=True, generation_max_length=4,
    )
    optimizer = torch.optim.AdamW(model.param_groups())  # two learning rates, DePT's weight decay in both
    return Seq2SeqTrainer(model=model, args=args, train_dataset=toy_dataset(tokenizer),
                          data_collator=DataCollatorForSeq2Seq(tokenizer), processing_class=tokenizer,
                          optimizers=(optimizer, None), callbacks=[SaveAdapterCallback()])


def main(output_dir: str | Path, max_steps: int = 20) -> DePTModel:
    """Train, then save the adapter to ``<output_dir>/adapter``; returns the trained model."""
    base, tokenizer = tiny_t5_and_tokenizer()
    config = DePTConfig(num_virtual_tokens=4, rank=2, max_length=16, init="text", init_text="colour of the",
                        lr_prompt=0.3, lr_lowrank=1e-2)
    model = DePTModel(base, config, tokenizer)
    build_trainer(model, tokenizer, output_dir, max_steps).train()
    model.save_pretrained(Path(output_dir) / "adapter")
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/trainer-example")
    parser.add_argument("--steps", type=int, default=20)
    cli = parser.parse_args()
    main(cli.out, cli.steps)
    print(f"adapter: {Path(cli.out) / 'adapter'}")

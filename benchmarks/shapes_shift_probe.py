"""Probe of the synthetic world's design: does the shifted format conflict with a backbone that was
trained on plain inputs only?

A text-only stand-in for the demo's backbone (a small T5 reading the scene description instead of
the picture) is trained on every synthetic task in its plain form, then scored on dev, without any
adapter, in the plain and in the shifted format (exact match). A good shift leaves plain scores
high and shifted scores low for every task.

    PYTHONPATH=. python benchmarks/shapes_shift_probe.py --steps 4000 --device cuda

On one H100 (4,000 steps of 256, 260 s) it gave, plain -> shifted: caption 1.00 -> 0.10,
color 0.71 -> 0.43, exist 0.84 -> 0.10, nli 0.84 -> 0.25, count 0.89 -> 0.43, spatial 0.80 -> 0.24,
caption_short 1.00 -> 0.24, para 0.83 -> 0.13, accept 0.89 -> 0.03, sim 0.54 -> 0.15.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from dept_vl.data.shapes import SPECS, split_words, vocabulary
from dept_vl.tasks import get_task

SPECIAL = ["<pad>", "</s>", "<unk>"]


def text_of(example) -> str:
    """The input, with the picture replaced by its description (after the question)."""
    text = example.input_text
    if example.image is not None:
        text += " scene: " + example.meta["scene"]
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dev", type=int, default=300)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    from transformers import T5Config, T5ForConditionalGeneration

    words = SPECIAL + vocabulary() + ["scene"]
    index = {w: i for i, w in enumerate(words)}

    def encode(text: str) -> list[int]:
        return [index.get(w, 2) for w in split_words(text)] + [1]

    train = [(encode(text_of(e)), encode(e.target_text))
             for name in SPECS for e in get_task(name).load("train", fmt="plain")]
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(words), d_model=128, d_ff=512, num_layers=3, num_decoder_layers=3,
                      num_heads=4, d_kv=32, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
                      eos_token_id=1)
    model = T5ForConditionalGeneration(config).to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 200) * max(0.0, 1 - s / args.steps))

    def pad(rows: list[list[int]], fill: int) -> torch.Tensor:
        width = max(map(len, rows))
        return torch.tensor([r + [fill] * (width - len(r)) for r in rows], device=args.device)

    rng = random.Random(0)
    start = time.time()
    model.train()
    for step in range(args.steps):
        batch = rng.sample(train, args.batch)
        ids = pad([b[0] for b in batch], 0)
        labels = pad([b[1] for b in batch], -100)
        with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.device != "cpu"):
            loss = model(input_ids=ids, attention_mask=(ids != 0).long(), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 500 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - start:.0f}s", flush=True)

    model.eval()
    print(f"{'task':22s} {'plain':>6s} {'shifted':>8s}  (exact match on {args.dev} dev examples)")
    for name in SPECS:
        row = []
        for fmt in ("plain", "shifted"):
            examples = get_task(name).load("dev", fmt=fmt, num_examples=args.dev)
            ids = pad([encode(text_of(e)) for e in examples], 0)
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=(ids != 0).long(), max_new_tokens=60,
                                     do_sample=False, num_beams=1)
            preds = [" ".join(words[t] for t in seq if t > 2) for seq in out.tolist()]
            gold = [" ".join(split_words(e.target_text)) for e in examples]
            row.append(sum(p == g for p, g in zip(preds, gold)) / len(gold))
            if fmt == "shifted":
                print(f"    e.g. {examples[0].input_text[:90]!r} -> {preds[0]!r} (gold {gold[0]!r})")
        print(f"{name:22s} {row[0]:6.2f} {row[1]:8.2f}", flush=True)


if __name__ == "__main__":
    main()

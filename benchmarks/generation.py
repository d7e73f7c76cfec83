"""Evaluation's generation against transformers' own ``generate`` (dynamic cache: the baseline), side by side in one
run: ``eval.cache=dynamic`` (the default: beam search reorders only the decoder's cache), ``static`` (a preallocated
decoder cache; transformers compiles greedy decoding's step on a GPU) and ``compiled`` (beam search's steps
compiled). VQA-style generation on the VL model at T5-base shapes, a DePT adapter, image features as the
evaluation's feature store gives them.

Every mode but the baseline calls what evaluation calls for a batch: the adapter's ``generate`` with
:func:`dept_vl.train.predict.generation_options` of an ``EvalConfig`` that differs only in ``cache``, inside
:func:`dept_vl.train.decoding.beam_decoding`; every call
also gets ``min_new_tokens`` = ``max_new_tokens`` so that random weights generate the full length in both. The
first call of each mode is timed apart (the static cache's compilation and CUDA-graph capture), then the median of
``--repeats``; it prints examples/s, the ratios to the baseline, and the rows whose tokens are identical to the baseline's.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/generation.py --out benchmarks/results/generation-t5-base.json
    python benchmarks/generation.py --smoke     # CPU, tiny preset (no CUDA graphs: equality, not speed)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import time
from pathlib import Path


# "transformers": transformers' own generate with its dynamic cache (the baseline); the others: eval.cache's values,
# each through beam_decoding, as evaluation runs them
MODES = ("transformers", "dynamic", "static", "compiled")


def main() -> None:
    import torch

    import dept_vl.tasks  # noqa: F401 - registers the synthetic world's vocabulary for the word-level presets
    from dept_vl.config import EvalConfig
    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.models import build_vl_model
    from dept_vl.train.decoding import DECODING_COMPILE, beam_decoding
    from dept_vl.train.predict import generation_options

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="t5-base-random")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--length", type=int, default=16, help="text tokens per question")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--beams", type=int, nargs="+", default=[5, 1])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode of eval.cache=compiled (default: "
                        "reduce-overhead on a GPU); 'default' compiles without CUDA graphs")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.preset, args.batch_size, args.max_new_tokens, args.repeats, args.beams = "tiny", 8, 6, 1, [2, 1]

    if args.compile_mode:
        DECODING_COMPILE["mode"] = args.compile_mode
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    base = build_vl_model(args.preset).to(device=device, dtype=dtype).eval()
    model = DePTModel(base, DePTConfig(num_virtual_tokens=60, rank=30, max_length=96, init="random")).eval()
    with torch.no_grad():
        model.lowrank_B.normal_(std=0.02)
    vocab = base.get_input_embeddings().weight.shape[0]
    ids = torch.randint(3, vocab, (args.batch_size, args.length), device=device)
    mask = torch.ones_like(ids)
    features = torch.randn(args.batch_size, base.num_visual_tokens, base.config.image_width, device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    figures: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
                     "preset": args.preset, "batch_size": args.batch_size, "length": args.length,
                     "max_new_tokens": args.max_new_tokens, "results": []}
    for beams in args.beams:
        row: dict = {"beams": beams}
        tokens = {}
        for cache in MODES:
            cfg = dataclasses.replace(EvalConfig(), num_beams=beams, cache="dynamic" if cache == "transformers" else cache)
            options = {**generation_options(cfg, args.max_new_tokens), "min_new_tokens": args.max_new_tokens}
            setup = contextlib.nullcontext if cache == "transformers" else lambda: beam_decoding(model, cfg)

            def call() -> torch.Tensor:
                with torch.no_grad(), setup():
                    return model.generate(input_ids=ids, attention_mask=mask, image_features=features, **options)

            sync()
            start = time.perf_counter()
            call()
            sync()
            row[f"{cache}_first_call_s"] = time.perf_counter() - start
            times = []
            for _ in range(args.repeats):
                sync()
                start = time.perf_counter()
                tokens[cache] = call()
                sync()
                times.append(time.perf_counter() - start)
            row[f"{cache}_s"] = statistics.median(times)
            row[f"{cache}_examples_per_s"] = args.batch_size / row[f"{cache}_s"]
        parts = [f"transformers {row['transformers_examples_per_s']:.0f} examples/s (first call {row['transformers_first_call_s']:.1f} s)"]
        for cache in MODES[1:]:
            row[f"{cache}_speedup"] = row["transformers_s"] / row[f"{cache}_s"]
            same = tokens["transformers"].shape == tokens[cache].shape
            row[f"{cache}_rows_with_identical_tokens"] = int((tokens["transformers"] == tokens[cache]).all(dim=1).sum()) if same else 0
            parts.append(f"{cache} {row[f'{cache}_examples_per_s']:.0f} examples/s ({row[f'{cache}_speedup']:.2f}x, first call "
                         f"{row[f'{cache}_first_call_s']:.1f} s, identical tokens in {row[f'{cache}_rows_with_identical_tokens']} "
                         f"of {args.batch_size} rows)")
        figures["results"].append(row)
        print(f"beams={beams}: " + "; ".join(parts), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

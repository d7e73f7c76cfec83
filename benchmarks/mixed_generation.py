"""Mixed-adapter generation against one adapter at a time, side by side in one run: N DePT adapters on one
frozen base, the same requests (each row with its own adapter), served by ``MultiAdapterModel.generate`` in one
call per batch against each adapter's own ``generate`` on its rows.

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/mixed_generation.py --out benchmarks/results/mixed-generation-t5-base.json
    python benchmarks/mixed_generation.py --smoke      # CPU, tiny
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    import torch

    import dept_vl.tasks  # noqa: F401 - registers the synthetic world's vocabulary for the word-level presets
    from dept_vl.dept import DePTConfig, DePTModel
    from dept_vl.methods.serving import MultiAdapterModel
    from dept_vl.models import build_vl_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="t5-base-random")
    parser.add_argument("--adapters", type=int, default=16)
    parser.add_argument("--rows-per-adapter", type=int, default=16)
    parser.add_argument("--length", type=int, default=24, help="text tokens per request")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.smoke:
        args.preset, args.adapters, args.rows_per_adapter, args.repeats, args.beams = "tiny", 4, 4, 1, [1, 2]

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    base = build_vl_model(args.preset).to(device=device, dtype=dtype).eval()
    multi = MultiAdapterModel(base)
    for i in range(args.adapters):
        model = DePTModel(base, DePTConfig(num_virtual_tokens=60, rank=30, max_length=96, seed=i, init="random")).eval()
        with torch.no_grad():
            model.lowrank_B.normal_(std=0.02)
        multi.add_adapter(f"a{i}", model)
    rows = args.adapters * args.rows_per_adapter
    vocab = base.get_input_embeddings().weight.shape[0]
    ids = torch.randint(3, vocab, (rows, args.length), device=device)
    mask = torch.ones_like(ids)
    features = torch.randn(rows, base.num_visual_tokens, base.config.image_width, device=device, dtype=dtype)
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(0)).tolist()
    adapter_ids = [f"a{order[r] % args.adapters}" for r in range(rows)]  # rows of every adapter, interleaved

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def one_at_a_time(beams: int) -> dict[int, torch.Tensor]:
        out = {}
        for name in multi.adapters:
            picked = [r for r, a in enumerate(adapter_ids) if a == name]
            index = torch.tensor(picked, device=device)
            tokens = multi.adapters[name].generate(input_ids=ids[index], attention_mask=mask[index], image_features=features[index],
                                                   max_new_tokens=args.max_new_tokens, num_beams=beams, do_sample=False)
            out.update({r: tokens[j] for j, r in enumerate(picked)})
        return out

    def mixed(beams: int) -> dict[int, torch.Tensor]:
        tokens = multi.generate(ids, mask, adapter_ids=adapter_ids, image_features=features,
                                max_new_tokens=args.max_new_tokens, num_beams=beams, do_sample=False)
        return dict(enumerate(tokens))

    figures: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
                     "preset": args.preset, "adapters": args.adapters, "rows": rows, "length": args.length,
                     "max_new_tokens": args.max_new_tokens, "results": []}
    for beams in args.beams:
        row = {"beams": beams}
        outputs = {}
        for label, fn in (("one_at_a_time", one_at_a_time), ("mixed", mixed)):
            fn(beams)  # warm-up
            times = []
            for _ in range(args.repeats):
                sync()
                t = time.perf_counter()
                outputs[label] = fn(beams)
                sync()
                times.append(time.perf_counter() - t)
            row[f"{label}_s"] = statistics.median(times)
            row[f"{label}_rows_per_s"] = rows / row[f"{label}_s"]
        same = sum(torch.equal(outputs["mixed"][r][: len(outputs["one_at_a_time"][r])], outputs["one_at_a_time"][r])
                   for r in range(rows))
        row["speedup"] = row["one_at_a_time_s"] / row["mixed_s"]
        row["rows_with_identical_tokens"] = same
        figures["results"].append(row)
        print(f"beams={beams}: one adapter at a time {row['one_at_a_time_s'] * 1e3:.0f} ms, mixed {row['mixed_s'] * 1e3:.0f} ms "
              f"({row['speedup']:.2f}x, {row['mixed_rows_per_s']:.0f} rows/s); identical tokens in {same} of {rows} rows", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

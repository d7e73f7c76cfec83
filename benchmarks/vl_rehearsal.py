"""The full-size VL rehearsal: image features, pretrain, adapt and evaluate through the functions users run, on a
generated VQA v2 / COCO data set (``vl_rehearsal_data.py``), with t5-base shapes and CLIP encoder structures, all with
random weights and the real T5 tokenizer (offline: the figures are about speed and scale, not accuracy).

    python benchmarks/vl_rehearsal_data.py --out rehearsal/data --images 20000
    PYTHONPATH=. python3 benchmarks/vl_rehearsal.py features --tokenizer TOK --out rehearsal/features.json
    PYTHONPATH=. python3 benchmarks/vl_rehearsal.py pretrain --tokenizer TOK --out rehearsal/pretrain.json
    PYTHONPATH=. python3 benchmarks/vl_rehearsal.py adapt    --tokenizer TOK --out rehearsal/adapt.json
    PYTHONPATH=. python3 benchmarks/vl_rehearsal.py evaluate --tokenizer TOK --out rehearsal/evaluate.json
    python benchmarks/vl_rehearsal.py score-captions --data DATA --predictions PRED --out captions.json   # CPU, pycocoevalcap
    python benchmarks/vl_rehearsal.py --smoke --out smoke.json      # every stage at tiny size on the CPU

Stages: ``features`` (``Run.collator``'s feature store and extraction for every image, with each encoder: decode
images/s, the pipeline's encode images/s, the encoder alone on random tensors at the same batch size, store size, host
memory at ``--memory-at`` images and at all), ``pretrain`` (``run_pretrain`` on VQA + COCO captions), ``adapt``
(``run_adapt``: k=16, 3 seeds on VQA from the pretrained adapter, 5 beams; counts the images its runs had encoded,
into a fresh feature folder), ``evaluate`` (``run_evaluate`` on the test split: VQA scored, caption predictions written
unscored where pycocoevalcap is missing) and ``score-captions`` (the task's own scorer on those predictions).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.measuring import memory_mb, recorded, sync  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded: every model is built here
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RECIPE = "vqa_coco_pretrain"
TASKS = ("vqa_v2", "coco_captions")
ENCODERS = {"vit-b16": {"image_encoder": "vit_base_patch16_clip_224.openai", "pool_size": 7},
            "rn101": {"image_encoder": "resnet101_clip.openai", "pool_size": 6, "pool_mode": "max", "image_preprocessing": "vl-adapter"}}
SMOKE_ENCODERS = {"vit-b16": {"image_encoder": "vit_tiny_patch16_224", "pool_size": 7},
                  "rn101": {"image_encoder": "resnet18", "pool_size": 6, "pool_mode": "max", "image_preprocessing": "vl-adapter"}}
T5_BASE = {"d_model": 768, "d_ff": 3072, "num_layers": 12, "num_decoder_layers": 12, "num_heads": 12, "d_kv": 64}
T5_TINY = {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4, "d_kv": 16}
FULL = {"images": 20000, "memory_at": 5000, "decode_images": 4000, "steps": 300, "eval_every": 100, "dev_size": 500,
        "test_size": 2000, "adapt_steps": 100, "batch_size": 32, "eval_batch_size": 128, "repeats": 10}
SMOKE = {"images": 32, "memory_at": 8, "decode_images": 16, "steps": 6, "eval_every": 3, "dev_size": 8, "test_size": 12,
         "adapt_steps": 4, "batch_size": 4, "eval_batch_size": 8, "repeats": 2}
STAGES = ("features", "pretrain", "adapt", "evaluate", "score-captions")


# ------------------------------------------------------------------ measuring
def extractions() -> Any:
    """Record every ``extract_features`` call (what ``Run.collator`` runs): images asked for, encoded, time split."""
    from dept_vl.models import feature_extraction

    def describe(result: Any, store: Any, model: Any, images: Any, **_: Any) -> dict[str, Any]:
        return {"ids": sorted(images), "encoded": result.encoded, "decode_wait_s": result.decode_s,
                "encode_s": result.encode_s, "write_s": result.write_s, "folder": str(store.folder)}

    return recorded(feature_extraction, "extract_features", describe)


def predictions() -> contextlib.ExitStack:
    """Record generation calls (``Run.predict`` and packed prediction): rows and seconds."""
    from dept_vl.train import packed, run

    stack = contextlib.ExitStack()
    calls = stack.enter_context(recorded(run, "predict", lambda r, model, examples, *a, **k: {"rows": len(examples), "runs": 1}))
    stack.calls = calls  # type: ignore[attr-defined]
    packed_calls = stack.enter_context(recorded(packed, "predict_packed", lambda r, models, sets, *a, **k: {
        "rows": sum(len(s) for s in sets), "runs": len(models)}))
    stack.packed_calls = packed_calls  # type: ignore[attr-defined]
    return stack


def rate(calls: list[dict[str, Any]], rows_per_run: int | None = None) -> dict[str, Any]:
    """Rows, seconds and rows/s of the generation calls (those of ``rows_per_run`` rows a run, when given)."""
    chosen = [c for c in calls if rows_per_run is None or c["rows"] == c["runs"] * rows_per_run]
    rows, seconds = sum(c["rows"] for c in chosen), sum(c["seconds"] for c in chosen)
    return {"calls": len(chosen), "rows": rows, "seconds": round(seconds, 3), "examples_per_s": round(rows / seconds, 1) if seconds else None}


# ------------------------------------------------------------------ settings
def paths(args: argparse.Namespace) -> dict[str, Path]:
    work = Path(args.work).expanduser()
    return {"work": work, "data": Path(args.data).expanduser() if args.data else work / "data", "text": work / "t5-random",
            "features": work / "features", "pretrain": work / "pretrain", "adapt": work / "adapt",
            "adapt_features": work / "features-adapt", "evaluate": work / "evaluate"}


def text_model_folder(args: argparse.Namespace) -> Path:
    """A T5 folder of t5-base's shapes (tiny with --smoke), random weights, with the tokenizer files of ``--tokenizer``."""
    folder = paths(args)["text"]
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer_dir = Path(args.tokenizer).expanduser()
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"--tokenizer {tokenizer_dir}: no tokenizer_config.json; give a folder with the T5 tokenizer's files")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    import torch

    torch.manual_seed(0)
    shapes = T5_TINY if args.smoke else T5_BASE
    config = T5Config(vocab_size=32128, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **shapes)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    T5ForConditionalGeneration(config).save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder


def settings(args: argparse.Namespace, encoder: str = "vit-b16") -> list[str]:
    """The overrides of the recipe shared by every stage: the local T5 folder, an encoder with random weights, the data."""
    p, sizes = paths(args), args.sizes
    model = [f"model.{key}={value}" for key, value in (SMOKE_ENCODERS if args.smoke else ENCODERS)[encoder].items()]
    return ["model.preset=auto", f"model.text_model={text_model_folder(args)}", "model.image_pretrained=false", *model,
            f"data.data_dir={p['data']}", f"data.feature_dir={p['features']}", f"train.num_workers={args.workers}",
            f"eval.batch_size={sizes['eval_batch_size']}", f"train.batch_size={sizes['batch_size']}",
            f"data.tasks=[{','.join(TASKS)}]", *args.set]


def machine() -> dict[str, Any]:
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
            "transformers": transformers.__version__, "cpu_cores": len(os.sched_getaffinity(0))}


# ------------------------------------------------------------------ stages
def stage_features(args: argparse.Namespace) -> dict[str, Any]:
    """Every image through ``Run.collator``'s extraction, per encoder; decode and encoder-only rates side by side."""
    import torch

    from dept_vl.config import load_config
    from dept_vl.models.feature_extraction import decode_batches
    from dept_vl.train.loader import images_by_id
    from dept_vl.train.run import Run

    sizes, figures = args.sizes, {"encoders": {}}
    store_root = paths(args)["features"]
    if store_root.exists():  # a cold extraction is what this stage measures: an earlier stage's stored images go
        print(f"features: emptying {store_root} (this stage times extraction from an empty store)", flush=True)
        shutil.rmtree(store_root)
    for name in args.encoders:
        began = time.perf_counter()
        config = load_config(RECIPE, settings(args, name))
        run = Run.setup(config, list(TASKS), scored=[])  # extraction scores nothing: no metric package needed
        sets = [run.load(task, split, None) for task in TASKS for split in ("train", "dev", "test")]
        images = images_by_id(sets)
        ids = sorted(images)
        setup_s = time.perf_counter() - began
        row: dict[str, Any] = {"encoder": run.base.config.image_encoder, "visual_tokens": run.base.num_visual_tokens,
                               "width": run.base.config.image_width, "images": len(ids), "examples": sum(map(len, sets)),
                               "batch_size": config.eval.batch_size, "workers": args.workers, "setup_s": round(setup_s, 1)}
        sample = [images[i] for i in ids[: sizes["decode_images"]]]
        start = time.perf_counter()
        count = sum(b.shape[0] for b in decode_batches(sample, run.base.image_transform, config.eval.batch_size, args.workers))
        row["decode"] = {"images": count, "images_per_s": round(count / (time.perf_counter() - start), 1)}
        encoder = next(run.base.image_encoder.parameters())
        pixels = torch.randn(config.eval.batch_size, *run.base.image_transform.input_size, device=encoder.device, dtype=encoder.dtype)
        times = []
        with torch.no_grad():
            for repeat in range(args.sizes["repeats"] + 1):
                sync()
                t = time.perf_counter()
                run.base.encode_images(pixels).to("cpu")
                sync()
                times.append(time.perf_counter() - t)
        encoder_rate = config.eval.batch_size / statistics.median(times[1:])  # the first call warms up
        row["encoder_only"] = {"images_per_s": round(encoder_rate, 1), "batch_ms": round(statistics.median(times[1:]) * 1e3, 2)}
        first = set(ids[: sizes["memory_at"]])
        part = [[e for e in s if e.image_id in first] for s in sets]
        with extractions() as calls:
            row["memory_mb"], row["lookup"] = {}, {}
            for label, chosen in ((f"at_{len(first)}", part), (f"at_{len(ids)}", sets)):
                collate = run.collator(chosen)
                row["lookup"][label] = lookups(collate, chosen, config.eval.batch_size)
                row["memory_mb"][label] = memory_mb()
        wall = sum(c["seconds"] for c in calls)
        encoded = sum(c["encoded"] for c in calls)
        encode_s = sum(c["encode_s"] for c in calls)
        folder = Path(calls[-1]["folder"]) if calls and calls[-1]["folder"] != "None" else None
        store = sum(f.stat().st_size for f in folder.glob("*")) if folder else 0
        ceiling = min(encoder_rate, row["decode"]["images_per_s"])
        row["extraction"] = {"encoded": encoded, "seconds": round(wall, 2), "images_per_s": round(encoded / wall, 1) if wall else None,
                             "encode_images_per_s": round(encoded / encode_s, 1) if encode_s else None,
                             "decode_wait_s": round(sum(c["decode_wait_s"] for c in calls), 2), "encode_s": round(encode_s, 2),
                             "write_s": round(sum(c["write_s"] for c in calls), 2),
                             "vs_encoder_only": round(encoded / wall / encoder_rate, 3) if wall else None,
                             "limited_by": "encoder" if encoder_rate <= row["decode"]["images_per_s"] else "decoding",
                             "vs_limit": round(encoded / wall / ceiling, 3) if wall else None}
        row["store"] = {"folder": str(folder), "bytes": store, "bytes_per_image": round(store / max(1, len(ids)))}
        rss = [m.get("VmRSS", 0.0) for m in row["memory_mb"].values()]
        private = [m.get("RssAnon", 0.0) for m in row["memory_mb"].values()]
        row["memory_ratio"] = round(private[1] / private[0], 3) if private[0] else None  # the process's own memory
        row["resident_ratio"] = round(rss[1] / rss[0], 3) if rss[0] else None  # with the store's shared page cache
        row["wall_s"] = round(time.perf_counter() - began, 1)
        figures["encoders"][name] = row
        e = row["extraction"]
        print(f"features {name} ({row['encoder']}, {row['visual_tokens']} x {row['width']}): {len(ids)} images; decode "
              f"{row['decode']['images_per_s']:.0f} img/s ({args.workers} workers), encoder alone {encoder_rate:.0f} img/s; "
              f"extraction {e['images_per_s']} img/s (encode {e['encode_images_per_s']} img/s, {e['vs_limit']:.0%} of the "
              f"{e['limited_by']}'s rate); store {store / 2**20:.1f} MiB; private memory {private[0]:.0f} -> {private[1]:.0f} MiB "
              f"({row['memory_ratio']}x), resident with the mapped store {rss[0]:.0f} -> {rss[1]:.0f} MiB "
              f"({row['resident_ratio']}x); {row['wall_s']} s", flush=True)
        del run, collate, sets, images
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return figures


def lookups(collate: Any, example_sets: list[list[Any]], batch_size: int) -> dict[str, Any]:
    """Collate one example of every image, in batches, as training reads them: images/s."""
    one: dict[str, Any] = {}
    for examples in example_sets:
        for e in examples:
            one.setdefault(e.image_id, e)
    rows = list(one.values())
    start = time.perf_counter()
    for first in range(0, len(rows), batch_size):
        collate(rows[first : first + batch_size])
    seconds = time.perf_counter() - start
    return {"images": len(rows), "images_per_s": round(len(rows) / seconds, 1) if seconds else None}


def dev_tasks(args: argparse.Namespace) -> list[str]:
    """The tasks pretraining scores on dev: both where pycocoevalcap is installed, VQA alone where it is not."""
    if args.dev_tasks != "auto":
        return args.dev_tasks.split(",")
    return list(TASKS) if importlib.util.find_spec("pycocoevalcap") else ["vqa_v2"]


def stage_pretrain(args: argparse.Namespace) -> dict[str, Any]:
    """``run_pretrain`` on VQA v2 + COCO captions for ``steps`` steps."""
    from dept_vl.config import load_config
    from dept_vl.recipes.pretrain import run_pretrain

    p, s, dev = paths(args), args.sizes, dev_tasks(args)
    config = load_config(RECIPE, settings(args) + [
        f"output_dir={p['pretrain']}", f"data.dev_tasks=[{','.join(dev)}]", f"train.max_steps={s['steps']}",
        f"train.eval_every={s['eval_every']}", f"train.save_every={s['steps']}", f"train.log_every={s['eval_every']}",
        f"train.warmup_steps={max(1, s['steps'] // 10)}", f"data.eval_size={s['dev_size']}"])
    start = time.perf_counter()
    with extractions() as calls, predictions() as gen:
        summary = run_pretrain(config, overwrite=True, show_progress=False)
    wall = time.perf_counter() - start
    figures = {key: summary[key] for key in ("steps", "step_time_ms", "examples_per_s", "seconds", "best_score", "best_step",
                                              "final_dev", "peak_memory_mb", "trainable_parameters", "mixture_rates")}
    figures.update(dev_tasks=dev, wall_s=round(wall, 1), images_encoded=sum(c["encoded"] for c in calls),
                   dev_generation=rate(gen.calls + gen.packed_calls), adapter=str(p["pretrain"] / "adapter"))
    print(f"pretrain: {summary['steps']} steps of {s['batch_size']}, {summary['step_time_ms']:.1f} ms a step, "
          f"{summary['examples_per_s']:.0f} examples/s; dev on {', '.join(dev)} (5 beams, "
          f"{figures['dev_generation']['examples_per_s']} examples/s); {figures['images_encoded']} images encoded; "
          f"wall {wall:.0f} s", flush=True)
    return figures


def stage_adapt(args: argparse.Namespace) -> dict[str, Any]:
    """``run_adapt`` k=16 x 3 seeds on VQA from the pretrained adapter, into a fresh feature folder."""
    from dept_vl.config import load_config
    from dept_vl.recipes.adapt import run_adapt

    p, s = paths(args), args.sizes
    seeds, k = [0, 1, 2], 16
    shutil.rmtree(p["adapt_features"], ignore_errors=True)  # fresh: every image the runs touch is encoded, and counted
    config = load_config(RECIPE, settings(args) + [
        f"output_dir={p['adapt']}", f"adapt.source={p['pretrain'] / 'adapter'}", "adapt.task=vqa_v2", f"adapt.k=[{k}]",
        f"adapt.seeds=[{','.join(map(str, seeds))}]", f"data.feature_dir={p['adapt_features']}", f"data.eval_size={s['test_size']}",
        f"train.max_steps={s['adapt_steps']}", f"train.eval_every={max(1, s['adapt_steps'] // 4)}",
        f"train.log_every={max(1, s['adapt_steps'] // 4)}", f"train.warmup_steps={max(1, s['adapt_steps'] // 10)}"])
    start = time.perf_counter()
    with extractions() as calls, predictions() as gen:
        result = run_adapt(config, overwrite=True, show_progress=False)
    wall = time.perf_counter() - start
    records = result["records"]
    asked = {i for c in calls for i in c["ids"]}
    test_images = set()
    for seed in seeds:
        for line in (p["adapt"] / "runs" / f"dept-transfer_k{k}_seed{seed}" / "predictions.jsonl").read_text().splitlines():
            test_images.add(json.loads(line)["image_id"])
    questions = json.loads((p["data"] / "v2_OpenEnded_mscoco_train2014_questions.json").read_text())["questions"]
    pool_images = len({q["image_id"] for q in questions})
    stored = stored_ids(p["adapt_features"])
    own = len(seeds) * 2 * k  # each run's k shots and k dev examples
    figures = {
        "runs": len(records), "k": k, "seeds": seeds, "test_size": records[0]["test_size"], "pack_size": records[0]["pack_size"],
        "scores": [r["score"] for r in records], "step_time_ms": [r["step_time_ms"] for r in records],
        "train_seconds": [r["train_seconds"] for r in records], "wall_s": round(wall, 1),
        "images": {"pool": pool_images, "test": len(test_images), "asked": len(asked), "encoded": sum(c["encoded"] for c in calls),
                   "stored": stored, "beyond_test": len(asked - test_images), "own_limit": own,
                   "only_its_own": test_images <= asked and len(asked - test_images) <= own and stored == len(asked)},
        "test_generation": rate(gen.calls + gen.packed_calls, records[0]["test_size"]),
        "dev_generation": rate(gen.calls + gen.packed_calls, records[0]["dev_size"]),
    }
    i, g = figures["images"], figures["test_generation"]
    print(f"adapt: {len(records)} runs (k={k}, pack of {figures['pack_size']}), {wall:.0f} s; images asked {i['asked']} "
          f"(test {i['test']} + {i['beyond_test']} shots/dev, at most {own}) of a pool of {i['pool']}, {i['encoded']} encoded, "
          f"{i['stored']} stored: only its own {i['only_its_own']}; test generation (5 beams) {g['examples_per_s']} examples/s "
          f"over {g['rows']} rows", flush=True)
    return figures


def stored_ids(folder: Path) -> int:
    """Image ids held by the shards under ``folder`` (read from the shards' headers)."""
    from safetensors import safe_open

    ids: set[str] = set()
    for shard in folder.glob("*/shard-*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            ids.update(json.loads((f.metadata() or {})["ids"]))
    return len(ids)


def stage_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """``run_evaluate`` of the pretrained adapter on the test split: VQA scored; captions scored only with pycocoevalcap."""
    from dept_vl.config import load_config
    from dept_vl.recipes.evaluate import run_evaluate

    p, s = paths(args), args.sizes
    config = load_config(RECIPE, settings(args))
    figures: dict[str, Any] = {}
    for task, size in (("vqa_v2", s["test_size"]), ("coco_captions", None)):
        score = task != "coco_captions" or (importlib.util.find_spec("pycocoevalcap") is not None and not args.unscored_captions)
        start = time.perf_counter()
        with predictions() as gen:
            result = run_evaluate(config, p["pretrain"] / "adapter", task, "test", out=p["evaluate"] / task, size=size,
                                  overwrite=True, score=score)
        wall = time.perf_counter() - start
        figures[task] = {"examples": result["examples"], "metrics": result["metrics"], "scored": score, "wall_s": round(wall, 1),
                         "generation": rate(gen.calls + gen.packed_calls), "predictions": str(p["evaluate"] / task / "predictions.jsonl")}
        print(f"evaluate {task} test: {result['examples']} examples, 5 beams, {figures[task]['generation']['examples_per_s']} "
              f"examples/s; {'headline ' + format(result['metrics']['headline'], '.4f') if score else 'predictions written, not scored'}; "
              f"wall {wall:.0f} s", flush=True)
    return figures


def stage_score_captions(args: argparse.Namespace) -> dict[str, Any]:
    """Score caption predictions (``predictions.jsonl`` of ``evaluate``) against the official Karpathy file, with the
    coco_captions task's own scorer (pycocoevalcap)."""
    from dept_vl.tasks import get_task

    p = paths(args)
    file = Path(args.predictions).expanduser() if args.predictions else p["evaluate"] / "coco_captions" / "predictions.jsonl"
    if not file.is_file():
        raise FileNotFoundError(f"--predictions {file}: no such file; run the evaluate stage first (it writes it)")
    task = get_task("coco_captions")
    by_id = {e.id: e for e in task.load("test", data_dir=str(p["data"]), fmt="default")}
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    strangers = [r["id"] for r in rows if r["id"] not in by_id]
    if strangers:
        raise ValueError(f"{file}: {len(strangers)} predictions (e.g. {strangers[0]!r}) are not of the test split of "
                         f"{p['data'] / 'dataset_coco.json'}: is it the same data set?")
    start = time.perf_counter()
    metrics = task.evaluate([r["prediction"] for r in rows], [by_id[r["id"]] for r in rows])
    figures = {"examples": len(rows), "of": len(by_id), "metrics": metrics, "seconds": round(time.perf_counter() - start, 1)}
    print(f"score-captions: {len(rows)} of {len(by_id)} test images; CIDEr-D {metrics.get('cider', float('nan')):.4f} "
          f"({', '.join(f'{k} {v:.4f}' for k, v in sorted(metrics.items()) if k != 'headline')})", flush=True)
    return figures


RUNNERS = {"features": stage_features, "pretrain": stage_pretrain, "adapt": stage_adapt, "evaluate": stage_evaluate,
           "score-captions": stage_score_captions}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", nargs="?", default="all", choices=(*STAGES, "all"), help="all: every stage in turn")
    parser.add_argument("--work", default="rehearsal", help="folder of the model, feature stores and runs")
    parser.add_argument("--data", default=None, help="the generated data set (default: WORK/data)")
    parser.add_argument("--tokenizer", default=str(Path(__file__).resolve().parents[2] / "shared" / "assets" / "t5-tokenizer"),
                        help="folder of the T5 tokenizer's files")
    parser.add_argument("--encoders", default=",".join(ENCODERS), help=f"features: of {', '.join(ENCODERS)}")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="decoding workers (train.num_workers)")
    parser.add_argument("--dev-tasks", default="auto", help="pretrain's dev tasks: auto (VQA alone without pycocoevalcap) or a list")
    parser.add_argument("--unscored-captions", action="store_true", help="evaluate: write caption predictions unscored even "
                        "where pycocoevalcap is installed (as on a machine without it)")
    parser.add_argument("--predictions", default=None, help="score-captions: the predictions.jsonl (default: evaluate's)")
    parser.add_argument("--set", nargs="*", default=[], help="extra key=value settings for every run")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU; with stage all, in a temporary folder")
    parser.add_argument("--out", default=None, help="JSON file for the figures")
    args = parser.parse_args(argv)
    args.sizes = dict(SMOKE if args.smoke else FULL)
    args.encoders = args.encoders.split(",")
    stages = STAGES if args.stage == "all" else (args.stage,)
    temporary = tempfile.mkdtemp(prefix="vl-rehearsal-") if args.smoke and args.stage == "all" else None
    figures: dict[str, Any] = {"machine": machine(), "sizes": args.sizes, "settings": None}
    try:
        if temporary:  # as on the GPU machine: dev on VQA alone, caption predictions scored by score-captions
            args.work, args.dev_tasks, args.unscored_captions = temporary, "vqa_v2", True
            args.workers = min(args.workers, 2)
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from vl_rehearsal_data import generate

            start = time.perf_counter()
            figures["data"] = generate(paths(args)["data"], args.sizes["images"], (160, 120), workers=args.workers, progress=False)
            print(f"data: {args.sizes['images']} JPEGs of 160x120 and the official files, {time.perf_counter() - start:.1f} s", flush=True)
        if set(stages) - {"score-captions"}:
            figures["settings"] = settings(args)
        for stage in stages:
            start = time.perf_counter()
            figures[stage] = RUNNERS[stage](args)
            figures[stage]["stage_wall_s"] = round(time.perf_counter() - start, 1)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    if args.out:
        Path(args.out).expanduser().parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).expanduser().write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return figures


if __name__ == "__main__":
    main()

"""Image feature extraction in images/s: decoding alone, the encoder alone and the whole extraction into a feature
store, measured in one run on generated JPEGs (random-weight encoder: the figures are about speed only).

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/feature_extraction.py --images 5000 --workers 0 8 16 \\
        --out benchmarks/results/feature-extraction-vit-b16.json
    python benchmarks/feature_extraction.py --smoke      # CPU, tiny encoder, 64 small JPEGs

Reported: ``decode`` (JPEG -> pixel values through the model's image transform, per worker count),
``encoder_only`` (the encoder on ready pixel values on the device, the ceiling), ``extraction`` (the whole
pipeline into a fresh store with ``--extract-workers`` workers: images/s, where its time went, the ratio to the
encoder-only rate), ``store`` (size on disk) and ``lookup`` (collator-side reads of every image in batches,
and how much the process's anonymous memory grew doing it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SMOKE = dict(images=64, size=(320, 240), encoder=None, batch_size=16, workers=[0, 2], extract_workers=2, repeats=2)


def write_jpegs(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> dict[str, str]:
    """``count`` JPEGs of ``size`` with photo-like structure (smooth colour fields plus grain); id -> path."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for i in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
        pixels = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (size[1], size[0], 3))
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths[f"bench-{i:06d}"] = str(path)
    return paths


def anonymous_mb() -> float | None:
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    line = next((l for l in status.read_text().splitlines() if l.startswith("RssAnon")), None)
    return int(line.split()[1]) / 1024 if line else None


def build_model(args: argparse.Namespace, device: Any, dtype: Any) -> Any:
    import torch

    from dept_vl.models import build_vl_model

    torch.manual_seed(0)
    words = ["what", "is", "it"]
    if args.encoder is None:  # smoke: the tiny preset's 2-layer ViT on 48x48 images
        model = build_vl_model("tiny", vocabulary=words)
    else:  # a real encoder's structure with random weights, behind the tiny text model (not used here)
        model = build_vl_model("tiny", vocabulary=words, image_encoder=args.encoder, image_pretrained=False,
                               pool_size=args.pool_size or None)
    return model.to(device=device, dtype=dtype).eval()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="JPEGs to generate (or read from --image-dir)")
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--image-dir", default=None, help="reuse the JPEGs of an earlier run (written here if absent)")
    parser.add_argument("--encoder", default="vit_base_patch16_clip_224.openai", help="timm name, random weights")
    parser.add_argument("--pool-size", type=int, default=7, help="pool to this x this tokens (0: every patch)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per encoder call")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 4, 8, 16], help="decoding worker counts to time")
    parser.add_argument("--extract-workers", type=int, default=16)
    parser.add_argument("--dtype", default="auto", help="store dtype: auto, bfloat16, float16, float32")
    parser.add_argument("--repeats", type=int, default=5, help="timed encoder-only passes")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    work = Path(tempfile.mkdtemp(prefix="feature-bench-"))
    try:
        figures = measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the store and generated JPEGs (--image-dir keeps its JPEGs)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import torch

    from dept_vl.models import FeatureStore, extract_features
    from dept_vl.models.feature_cache import computed_dtype
    from dept_vl.models.feature_extraction import decode_batches
    from dept_vl.models.feature_store import resolve_dtype

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = build_model(args, device, dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    image_dir = Path(args.image_dir).expanduser() if args.image_dir else work / "jpg"
    start = time.perf_counter()
    existing = sorted(image_dir.glob("*.jpg"))[: args.images] if image_dir.is_dir() else []
    if len(existing) >= args.images:
        images = {f"bench-{p.stem}": str(p) for p in existing}
    else:
        images = write_jpegs(image_dir, args.images, tuple(args.size))
    figures: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
        "cpu_cores": len(os.sched_getaffinity(0)), "encoder": model.config.image_encoder,
        "visual_tokens": model.num_visual_tokens, "width": model.config.image_width, "images": len(images),
        "image_size": list(args.size), "batch_size": args.batch_size, "model_dtype": str(dtype).removeprefix("torch."),
        "jpegs_written_s": round(time.perf_counter() - start, 2), "decode": []}
    print(f"{len(images)} JPEGs of {args.size[0]}x{args.size[1]}; encoder {figures['encoder']} "
          f"({figures['visual_tokens']} tokens x {figures['width']}) on {figures['device']}", flush=True)

    sources = [images[i] for i in sorted(images)]
    for workers in args.workers:  # decoding alone
        start = time.perf_counter()
        count = sum(batch.shape[0] for batch in decode_batches(sources, model.image_transform, args.batch_size, workers))
        seconds = time.perf_counter() - start
        figures["decode"].append({"workers": workers, "images_per_s": count / seconds, "seconds": seconds})
        print(f"decode, {workers:2d} workers: {count / seconds:8.1f} images/s", flush=True)

    pixels = torch.randn(args.batch_size, *model.image_transform.input_size, device=device, dtype=dtype)
    with torch.no_grad():  # the encoder alone, on ready pixel values
        model.encode_images(pixels)
        sync()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.encode_images(pixels).to("cpu")
            sync()
            times.append(time.perf_counter() - start)
    encoder_rate = args.batch_size / statistics.median(times)
    figures["encoder_only"] = {"images_per_s": encoder_rate, "batch_ms_median": statistics.median(times) * 1e3}
    print(f"encoder only:         {encoder_rate:8.1f} images/s", flush=True)

    store = FeatureStore(work / "features", model.feature_key, resolve_dtype(args.dtype, computed_dtype(model)))
    start = time.perf_counter()
    done = extract_features(store, model, images, num_workers=args.extract_workers, batch_size=args.batch_size, show_progress=True)
    wall = time.perf_counter() - start
    size = sum(p.stat().st_size for p in store.folder.glob("*"))
    figures["extraction"] = {
        "workers": args.extract_workers, "images_per_s": done.encoded / wall, "seconds": wall,
        "decode_wait_s": done.decode_s, "encode_s": done.encode_s, "write_s": done.write_s,
        "vs_encoder_only": done.encoded / wall / encoder_rate, "store_dtype": str(store.dtype).removeprefix("torch.")}
    figures["store"] = {"bytes": size, "bytes_per_image": size / len(images), "shards": len(list(store.folder.glob("shard-*")))}
    print(f"extraction, {args.extract_workers} workers: {done.encoded / wall:8.1f} images/s ({done.encoded / wall / encoder_rate:.0%} "
          f"of encoder only; waiting for decoding {done.decode_s:.1f} s, encoding {done.encode_s:.1f} s, writing "
          f"{done.write_s:.1f} s); store {size / 2**20:.1f} MiB", flush=True)

    reader = FeatureStore(work / "features", model.feature_key, store.dtype)  # a training process's view
    before, ids = anonymous_mb(), sorted(images)
    start = time.perf_counter()
    for first in range(0, len(ids), 64):
        reader.stack(ids[first : first + 64])
    seconds = time.perf_counter() - start
    after = anonymous_mb()
    figures["lookup"] = {"images_per_s": len(ids) / seconds, "anonymous_mb_growth": None if before is None else after - before,
                         "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(f"lookup (batches of 64): {len(ids) / seconds:8.1f} images/s; anonymous memory grew "
          f"{figures['lookup']['anonymous_mb_growth']} MB reading every image; peak RSS "
          f"{figures['lookup']['max_rss_mb']:.0f} MB", flush=True)
    return figures


if __name__ == "__main__":
    main()

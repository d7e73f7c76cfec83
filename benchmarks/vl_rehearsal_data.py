"""A generated VQA v2 / COCO captions data set in the official files' layout, for the full-size rehearsal.

Writes under ``--out``: ``train2014/COCO_train2014_<id>.jpg`` and ``val2014/COCO_val2014_<id>.jpg`` (photo-like
JPEGs: smooth colour fields, grain and a few shapes, so that they weigh and decode like photos), the VQA v2
files ``v2_OpenEnded_mscoco_{train,val}2014_questions.json`` and ``v2_mscoco_{train,val}2014_annotations.json``
(10 human answers per question) and the Karpathy split file ``dataset_coco.json`` (5 captions per image; val2014
split into val, test and restval). Questions, answers and captions describe the shapes drawn. Images are drawn
by a process pool; existing images are kept (a killed run continues), so a rerun only writes the JSON files.
``--json-only`` writes the JSON files and empty image folders: enough to score predictions made elsewhere.

    python benchmarks/vl_rehearsal_data.py --out rehearsal/data --images 20000      # all cores
    python benchmarks/vl_rehearsal_data.py --out rehearsal/data --images 20000 --json-only   # to score captions
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from multiprocessing import Pool
from pathlib import Path
from typing import Any

COLOURS = {"red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200), "yellow": (220, 200, 40),
           "white": (235, 235, 235), "black": (20, 20, 20), "orange": (230, 130, 30), "purple": (130, 50, 160)}
SHAPES = ("circle", "square", "triangle")
NUMBERS = ("zero", "one", "two", "three", "four", "five")
QUESTIONS_FILE = "v2_OpenEnded_mscoco_{coco}_questions.json"
ANNOTATIONS_FILE = "v2_mscoco_{coco}_annotations.json"
KARPATHY_FILE = "dataset_coco.json"


def layout(images: int, val_fraction: float = 0.25) -> list[tuple[int, str]]:
    """(COCO image id, ``train2014`` or ``val2014``) of every image: ids 1..n, the last ``val_fraction`` in val2014."""
    val = max(1, round(images * val_fraction)) if images > 1 else 0
    return [(i + 1, "train2014" if i < images - val else "val2014") for i in range(images)]


def image_path(root: Path, image_id: int, coco: str) -> Path:
    """The official file name of a COCO image: ``<coco>/COCO_<coco>_<12-digit id>.jpg``."""
    return root / coco / f"COCO_{coco}_{image_id:012d}.jpg"


def scene(image_id: int, seed: int) -> list[dict[str, Any]]:
    """The shapes of one image (colour, kind, centre and radius as fractions of the image), the same in every process."""
    import numpy as np

    rng = np.random.default_rng([seed, image_id])
    shapes = []
    for _ in range(int(rng.integers(1, 5))):
        shapes.append({"colour": str(rng.choice(list(COLOURS))), "shape": str(rng.choice(SHAPES)),
                       "x": float(rng.uniform(0.15, 0.85)), "y": float(rng.uniform(0.15, 0.85)),
                       "r": float(rng.uniform(0.05, 0.15))})
    return shapes


def render(image_id: int, seed: int, size: tuple[int, int], quality: int = 90) -> bytes:
    """One JPEG of ``size`` (W, H): a smooth colour field, grain, the scene's shapes, encoded at ``quality``."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    width, height = size
    rng = np.random.default_rng([seed, image_id, 1])
    field = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    draw = ImageDraw.Draw(field)
    unit = min(width, height)
    for s in scene(image_id, seed):
        x, y, r = s["x"] * width, s["y"] * height, s["r"] * unit
        box = [x - r, y - r, x + r, y + r]
        if s["shape"] == "circle":
            draw.ellipse(box, fill=COLOURS[s["colour"]])
        elif s["shape"] == "square":
            draw.rectangle(box, fill=COLOURS[s["colour"]])
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=COLOURS[s["colour"]])
    pixels = np.asarray(field.filter(ImageFilter.GaussianBlur(1.2)), dtype=np.int16)
    pixels = pixels + rng.normal(0, 6, (height, width, 1)).astype(np.int16)  # luminance grain, as a sensor's
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _write_one(job: tuple[str, int, str, int, tuple[int, int]]) -> int:
    """Write one image atomically unless it exists; returns its size in bytes (0: it existed)."""
    root, image_id, coco, seed, size = job
    path = image_path(Path(root), image_id, coco)
    if path.is_file() and path.stat().st_size > 0:
        return 0
    data = render(image_id, seed, size)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


def questions_of(image_id: int, seed: int, count: int) -> list[tuple[str, str, str, list[str]]]:
    """``count`` (question, question type, answer type, 10 answers) about the scene; a few answers disagree."""
    import numpy as np

    shapes = scene(image_id, seed)
    rng = np.random.default_rng([seed, image_id, 2])
    out = []
    for n in range(count):
        s = shapes[n % len(shapes)]
        kind = n % 3
        if kind == 0:
            q, qtype, atype, answer, others = f"What color is the {s['shape']}?", "what color is the", "other", s["colour"], list(COLOURS)
        elif kind == 1:
            number = sum(t["shape"] == s["shape"] for t in shapes)
            q, qtype, atype, answer, others = f"How many {s['shape']}s are there?", "how many", "number", str(number), [str(i) for i in range(6)]
        else:
            asked = str(rng.choice(SHAPES))
            answer = "yes" if any(t["shape"] == asked for t in shapes) else "no"
            q, qtype, atype, others = f"Is there a {asked} in the picture?", "is there a", "yes/no", ["yes", "no"]
        answers = [answer if rng.random() < 0.8 else str(rng.choice(others)) for _ in range(10)]
        out.append((q, qtype, atype, answers))
    return out


def captions_of(image_id: int, seed: int) -> list[str]:
    """Five captions of the scene in different words."""
    shapes = scene(image_id, seed)
    first, rest = shapes[0], shapes[1:]
    names = [f"a {s['colour']} {s['shape']}" for s in shapes]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    count = NUMBERS[len(shapes)] if len(shapes) < len(NUMBERS) else str(len(shapes))
    return [f"A picture with {listed}.", f"{count.capitalize()} shapes on a blurry background.",
            f"There is {names[0]} in this image.", f"An image of {listed} on a coloured field.",
            f"A {first['colour']} {first['shape']} next to {len(rest)} other shapes." if rest else f"A single {first['shape']}."]


def vqa_files(images: list[tuple[int, str]], coco: str, seed: int, per_image: int) -> tuple[dict, dict]:
    """The VQA v2 questions and annotations of one COCO split, in the official files' fields."""
    questions, annotations = [], []
    for image_id, where in images:
        if where != coco:
            continue
        for n, (q, qtype, atype, answers) in enumerate(questions_of(image_id, seed, per_image)):
            qid = image_id * 1000 + n  # as the official ids: image id, then the question's number
            questions.append({"image_id": image_id, "question": q, "question_id": qid})
            annotations.append({"question_type": qtype, "multiple_choice_answer": Counter(answers).most_common(1)[0][0],
                                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
                                "image_id": image_id, "answer_type": atype, "question_id": qid})
    head = {"info": {"description": "generated for the dept-vl rehearsal"}, "license": {}, "data_subtype": coco}
    return ({**head, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions},
            {**head, "data_type": "mscoco", "annotations": annotations})


def karpathy_file(images: list[tuple[int, str]], seed: int) -> dict:
    """``dataset_coco.json``: train2014 images are ``train``; val2014's first quarter ``val``, second ``test``, rest ``restval``."""
    val = [i for i, where in images if where == "val2014"]
    quarter = max(1, len(val) // 4)
    split_of = {i: "val" for i in val[:quarter]} | {i: "test" for i in val[quarter : 2 * quarter]}
    records, sentence = [], 0
    for index, (image_id, coco) in enumerate(images):
        split = "train" if coco == "train2014" else split_of.get(image_id, "restval")
        sentences = []
        for raw in captions_of(image_id, seed):
            sentences.append({"tokens": raw.lower().rstrip(".").replace(",", "").split(), "raw": raw, "imgid": index, "sentid": sentence})
            sentence += 1
        records.append({"filepath": coco, "sentids": [s["sentid"] for s in sentences], "filename": image_path(Path(), image_id, coco).name,
                        "imgid": index, "split": split, "sentences": sentences, "cocoid": image_id})
    return {"images": records, "dataset": "coco"}


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def generate(out: str | Path, images: int = 20000, size: tuple[int, int] = (640, 480), questions: int = 3, seed: int = 0,
             workers: int | None = None, progress: bool = True, json_only: bool = False) -> dict[str, Any]:
    """Write the data set (see the module docstring); returns what was written and how fast. ``json_only``: no images.

    Raises:
        ValueError: fewer than 2 images, or no question per image.
    """
    if images < 2 or questions < 1:
        raise ValueError(f"images={images}, questions={questions}: need at least 2 images and 1 question per image")
    root = Path(out).expanduser()
    for coco in ("train2014", "val2014"):
        (root / coco).mkdir(parents=True, exist_ok=True)
    plan = layout(images)
    workers = workers or len(os.sched_getaffinity(0))
    jobs = [] if json_only else [(str(root), image_id, coco, seed, tuple(size)) for image_id, coco in plan]
    start = last = time.perf_counter()
    written = done = total_bytes = 0
    with Pool(workers) as pool:
        for nbytes in pool.imap_unordered(_write_one, jobs, chunksize=16):
            done += 1
            written += nbytes > 0
            total_bytes += nbytes
            now = time.perf_counter()
            if progress and (now - last > 2 or done == len(jobs)):
                rate = written / (now - start) if now > start else 0.0
                print(f"images {done}/{len(jobs)} ({written} written, {rate:.0f} img/s, {now - start:.0f} s)", file=sys.stderr, flush=True)
                last = now
    image_seconds = time.perf_counter() - start
    for coco in ("train2014", "val2014"):
        qs, anns = vqa_files(plan, coco, seed, questions)
        _write_json(root / QUESTIONS_FILE.format(coco=coco), qs)
        _write_json(root / ANNOTATIONS_FILE.format(coco=coco), anns)
    _write_json(root / KARPATHY_FILE, karpathy_file(plan, seed))
    summary = {"out": str(root), "images": images, "train2014": sum(c == "train2014" for _, c in plan),
               "val2014": sum(c == "val2014" for _, c in plan), "size": list(size), "questions_per_image": questions,
               "written": written, "kept": len(jobs) - written, "json_only": json_only, "workers": workers,
               "image_seconds": round(image_seconds, 2),
               "images_per_s": round(written / image_seconds, 1) if written else None,
               "mean_jpeg_kb": round(total_bytes / written / 1024, 1) if written else None,
               "seconds": round(time.perf_counter() - start, 2)}
    _write_json(root / "rehearsal_data.json", summary)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the images and the official JSON files")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--questions", type=int, default=3, help="VQA questions per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="processes drawing images (default: every core)")
    parser.add_argument("--json-only", action="store_true", help="the JSON files and empty image folders, no images")
    args = parser.parse_args(argv)
    summary = generate(args.out, args.images, tuple(args.size), args.questions, args.seed, args.workers, json_only=args.json_only)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()

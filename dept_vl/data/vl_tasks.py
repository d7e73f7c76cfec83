"""Vision-language tasks read from their official files: VQA v2, GQA (balanced), COCO captions
(Karpathy split). Images are returned as paths (loaded later by the model's image pipeline).

Each needs ``data_dir`` (these sets are large and mostly not on the Hugging Face hub in a stable
form); ``image_dir`` (option) points at the images when they live elsewhere. ``~`` is expanded in both.
A record without a field the loader needs is a ValueError naming the file, the record and the field.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

from dept_vl.data.example import Example


def require_dir(task: str, data_dir: str | None, what: str) -> Path:
    """``data_dir`` as a Path, or a ValueError that says what the folder must hold."""
    if data_dir is None:
        raise ValueError(f"{task} needs data_dir=, a folder with {what}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise ValueError(f"{task}: data_dir {path} does not exist; it must hold {what}")
    return path


def find_file(task: str, folders: list[Path], name: str, what: str) -> Path:
    """The first ``folder/name`` that exists, or a ValueError naming the paths tried."""
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    tried = " or ".join(str(f / name) for f in folders)
    raise ValueError(f"{task}: expected {tried} ({what})")


def check_options(task: str, options: dict[str, Any], known: set[str]) -> None:
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"{task}: unknown options {sorted(unknown)}; known: {sorted(known)}")


def image_dir_option(options: dict[str, Any], default: Path) -> Path:
    """The ``image_dir`` option (``~`` expanded), or ``default``."""
    return Path(options["image_dir"]).expanduser() if options.get("image_dir") else default


def _load_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error}); download the file again") from None


def _records(task: str, path: Path, data: Any, key: str) -> list[dict[str, Any]]:
    """``data[key]``, a list of JSON objects, or a ValueError naming the file."""
    records = data.get(key) if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{task}: {path} has no {key!r} list of records; is it the official file?")
    return records


def _need(task: str, path: Path, record: Any, what: str, fields: tuple[str, ...]) -> None:
    """Raise a ValueError naming the file, the record (``what``) and the first of ``fields`` it lacks."""
    if not isinstance(record, dict):
        raise ValueError(f"{task}: {path}: {what} is a {type(record).__name__}, expected a JSON object; "
                         "the file is damaged or not the official release")
    for name in fields:
        if name not in record:
            raise ValueError(f"{task}: {path}: {what} has no {name!r} field; the file is damaged or not the "
                             "official release (download it again)")


# ---------------------------------------------------------------- VQA v2
VQA_WHAT = ("the official VQA v2 files (v2_OpenEnded_mscoco_{train,val}2014_questions.json, "
            "v2_mscoco_{train,val}2014_annotations.json) and COCO images in train2014/ and val2014/")


def load_vqa_v2(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
    """VQA v2: train = train2014; val2014 is split by image into two halves, dev and test (the
    test-dev answers are hidden). Input ``"vqa: <question>"``, target the most common answer,
    references the 10 human answers."""
    check_options("vqa_v2", options, {"image_dir", "split_seed", "limit"})
    root = require_dir("vqa_v2", data_dir, VQA_WHAT)
    coco = "train2014" if split == "train" else "val2014"
    questions_path = find_file("vqa_v2", [root], f"v2_OpenEnded_mscoco_{coco}_questions.json", VQA_WHAT)
    annotations_path = find_file("vqa_v2", [root], f"v2_mscoco_{coco}_annotations.json", VQA_WHAT)
    questions = _records("vqa_v2", questions_path, _load_json(questions_path), "questions")
    annotations = _records("vqa_v2", annotations_path, _load_json(annotations_path), "annotations")
    for i, q in enumerate(questions):
        _need("vqa_v2", questions_path, q, f"record {i}", ("question_id",))
        _need("vqa_v2", questions_path, q, f"question {q['question_id']}", ("image_id", "question"))
    for i, a in enumerate(annotations):
        _need("vqa_v2", annotations_path, a, f"record {i}", ("question_id",))
        _need("vqa_v2", annotations_path, a, f"question {a['question_id']}", ("multiple_choice_answer", "answers"))
        answers = a["answers"]
        if not isinstance(answers, list) or not all(isinstance(x, dict) and "answer" in x for x in answers):
            raise ValueError(f"vqa_v2: {annotations_path}: question {a['question_id']} has 'answers' that are not "
                             "a list of {\"answer\": ...} records; the file is damaged or not the official release")
    image_root = image_dir_option(options, root) / coco
    if not image_root.is_dir():
        raise ValueError(f"vqa_v2: expected the COCO images in {image_root} (COCO_{coco}_<id>.jpg); "
                         "pass image_dir= the folder that holds train2014/ and val2014/")
    by_qid = {a["question_id"]: a for a in annotations}
    orphans = len(set(by_qid) - {q["question_id"] for q in questions})
    if orphans:
        warnings.warn(f"vqa_v2: {orphans} annotations in {annotations_path} are for question ids that are not in "
                      f"{questions_path.name}; they are ignored (are the two files of the same release and split?)",
                      stacklevel=2)
    keep: set[int] | None = None
    if split != "train":
        images = sorted({q["image_id"] for q in questions})
        random.Random(int(options.get("split_seed", 0))).shuffle(images)
        half = len(images) // 2
        keep = set(images[:half] if split == "dev" else images[half:])
    out = []
    for q in questions:
        if keep is not None and q["image_id"] not in keep:
            continue
        ann = by_qid.get(q["question_id"])
        if ann is None:
            raise ValueError(f"vqa_v2: question {q['question_id']} of {questions_path} has no annotation in "
                             f"{annotations_path}")
        out.append(Example(
            id=f"vqa_v2-{split}-{q['question_id']}",
            input_text=f"vqa: {q['question'].strip()}",
            target_text=ann["multiple_choice_answer"],
            image=str(image_root / f"COCO_{coco}_{q['image_id']:012d}.jpg"),
            image_id=f"coco-{q['image_id']}",
            references=[a["answer"] for a in ann["answers"]],
            meta={"question_type": ann.get("question_type", ""), "answer_type": ann.get("answer_type", "")},
        ))
    return out[: options["limit"]] if options.get("limit") else out


# ---------------------------------------------------------------- GQA
GQA_WHAT = ("the GQA balanced question files ({train,val,testdev}_balanced_questions.json) and the "
            "images folder images/<imageId>.jpg")
_GQA_FILES = {"train": "train_balanced_questions.json", "dev": "val_balanced_questions.json",
              "test": "testdev_balanced_questions.json"}


def load_gqa(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
    """GQA balanced: train = train_balanced, dev = val_balanced, test = testdev_balanced.
    Input ``"gqa: <question>"``, target the answer (scored by exact match)."""
    check_options("gqa", options, {"image_dir", "limit"})
    root = require_dir("gqa", data_dir, GQA_WHAT)
    path = find_file("gqa", [root, root / "questions1.2"], _GQA_FILES[split], GQA_WHAT)
    questions = _load_json(path)
    if not isinstance(questions, dict):
        raise ValueError(f"gqa: {path} must hold a JSON object of question id -> question, got "
                         f"{type(questions).__name__}; is it the official file?")
    for qid, q in questions.items():
        _need("gqa", path, q, f"question {qid}", ("question", "answer", "imageId"))
    image_root = image_dir_option(options, root / "images")
    if not image_root.is_dir():
        raise ValueError(f"gqa: expected the images in {image_root}; pass image_dir= the folder "
                         "that holds <imageId>.jpg")
    out = []
    for qid, q in questions.items():
        out.append(Example(
            id=f"gqa-{split}-{qid}",
            input_text=f"gqa: {q['question'].strip()}",
            target_text=q["answer"],
            image=str(image_root / f"{q['imageId']}.jpg"),
            image_id=f"gqa-{q['imageId']}",
            references=[q["answer"]],
            meta={"full_answer": q.get("fullAnswer", ""),
                  "structural": (q.get("types") or {}).get("structural", "")},
        ))
    return out[: options["limit"]] if options.get("limit") else out


# ---------------------------------------------------------------- COCO captions (Karpathy)
COCO_WHAT = "the Karpathy split file dataset_coco.json and the COCO images (train2014/, val2014/)"
_KARPATHY = {"train": ("train", "restval"), "dev": ("val",), "test": ("test",)}


def load_coco_captions(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
    """COCO captions, Karpathy split: train = train + restval (one example per caption unless
    ``per_caption=False``), dev = val, test = test (one example per image, all references)."""
    check_options("coco_captions", options, {"image_dir", "per_caption", "limit"})
    root = require_dir("coco_captions", data_dir, COCO_WHAT)
    data_path = find_file("coco_captions", [root], "dataset_coco.json", COCO_WHAT)
    images = _records("coco_captions", data_path, _load_json(data_path), "images")
    image_root = image_dir_option(options, root)
    per_caption = bool(options.get("per_caption", split == "train"))
    out = []
    for index, img in enumerate(images):
        name = f"image {img.get('cocoid', img.get('imgid', f'#{index}'))}"
        _need("coco_captions", data_path, img, name, ("split",))
        if img["split"] not in _KARPATHY[split]:
            continue
        _need("coco_captions", data_path, img, name, ("sentences", "filename"))
        sentences = img["sentences"]
        if not isinstance(sentences, list) or not all(isinstance(x, dict) and "raw" in x for x in sentences):
            raise ValueError(f"coco_captions: {data_path}: {name} has 'sentences' that are not a list of "
                             "{\"raw\": ...} records; the file is damaged or not the Karpathy split file")
        if not sentences:
            raise ValueError(f"coco_captions: {data_path}: {name} has no captions (its 'sentences' list is empty); "
                             "the file is damaged or not the Karpathy split file")
        captions = [s["raw"].strip() for s in sentences]
        path = image_root / img.get("filepath", "") / img["filename"]
        cocoid = img.get("cocoid", img.get("imgid"))
        targets = list(enumerate(captions)) if per_caption else [(0, captions[0])]
        for i, caption in targets:
            suffix = f"-{i}" if per_caption else ""
            out.append(Example(
                id=f"coco_captions-{split}-{cocoid}{suffix}", input_text="caption:",
                target_text=caption, image=str(path), image_id=f"coco-{cocoid}",
                references=captions,
            ))
    if out and not Path(out[0].image).parent.is_dir():
        raise ValueError(f"coco_captions: expected the images under {Path(out[0].image).parent}; "
                         "pass image_dir= the folder that holds train2014/ and val2014/")
    return out[: options["limit"]] if options.get("limit") else out

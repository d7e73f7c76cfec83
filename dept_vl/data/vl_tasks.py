"""Vision-language tasks read from their official files: VQA v2, GQA (balanced), COCO captions
(Karpathy split). Images are returned as paths (loaded later by the model's image pipeline).

The official files live in ``data_dir``; ``image_dir`` (option) points at the images when they live elsewhere.
``~`` is expanded in both. A record without a field the loader needs is a ValueError naming the file, the record
and the field. VQA v2 and COCO captions also read hub copies through ``datasets`` (``source=hub``, the default
without ``data_dir``; see :mod:`dept_vl.data.hub_vl`), into the same examples.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

from dept_vl.data import hub_vl
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


VQA_HUB = "lmms-lab/VQAv2"  # the VQA v2 schema with images; its card lists the validation split (214,354 questions)
VQA_HUB_SPLITS = {"train": "train", "dev": "validation", "test": "validation"}


def vqa_example(task: str, split: str, qid: Any, question: str, image_id: int, image: Any, answer: str,
                answers: list[str], question_type: str = "", answer_type: str = "") -> Example:
    """One VQA example, the same from the official files and from a hub copy."""
    return Example(
        id=f"{task}-{split}-{qid}", input_text=f"vqa: {question.strip()}", target_text=answer, image=image,
        image_id=f"coco-{image_id}", references=list(answers),
        meta={"question_type": question_type or "", "answer_type": answer_type or ""},
    )


def half_of_images(image_ids: list[int], split: str, seed: int) -> set[int]:
    """The dev (first) or test (second) half of val2014's images, shuffled with ``seed``."""
    images = sorted(set(image_ids))
    random.Random(seed).shuffle(images)
    half = len(images) // 2
    return set(images[:half] if split == "dev" else images[half:])


def load_vqa_v2(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
    """VQA v2: train = train2014; val2014 is split by image into two halves, dev and test (the
    test-dev answers are hidden). Input ``"vqa: <question>"``, target the most common answer,
    references the 10 human answers. From the official files or a hub copy (``source``, ``hub_id``: default
    ``lmms-lab/VQAv2``, whose ``train``/``validation`` splits stand for train2014/val2014)."""
    check_options("vqa_v2", options, {"image_dir", "split_seed", "limit"} | hub_vl.HUB_OPTIONS)
    if hub_vl.wants_hub("vqa_v2", data_dir, options):
        return _vqa_v2_hub(split, options)
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
    keep = None if split == "train" else half_of_images([q["image_id"] for q in questions], split, int(options.get("split_seed", 0)))
    out = []
    for q in questions:
        if keep is not None and q["image_id"] not in keep:
            continue
        ann = by_qid.get(q["question_id"])
        if ann is None:
            raise ValueError(f"vqa_v2: question {q['question_id']} of {questions_path} has no annotation in "
                             f"{annotations_path}")
        out.append(vqa_example("vqa_v2", split, q["question_id"], q["question"], q["image_id"],
                               str(image_root / f"COCO_{coco}_{q['image_id']:012d}.jpg"), ann["multiple_choice_answer"],
                               [a["answer"] for a in ann["answers"]], ann.get("question_type", ""), ann.get("answer_type", "")))
    return out[: options["limit"]] if options.get("limit") else out


VQA_COLUMNS = ("question_id", "question", "image_id", "multiple_choice_answer", "answers", "image")


def _vqa_v2_hub(split: str, options: dict[str, Any]) -> list[Example]:
    """VQA v2 from a hub copy in the official schema (``question_id question image_id multiple_choice_answer answers
    question_type answer_type image``), split as the files are."""
    data = hub_vl.open_split("vqa_v2", options, VQA_HUB, VQA_HUB_SPLITS[split], ["image"])
    hub_vl.need_columns("vqa_v2", data, VQA_COLUMNS, options.get("hub_id") or VQA_HUB)
    rows = hub_vl.hub_rows(data, skip=["image"])
    keep = None if split == "train" else half_of_images([r["image_id"] for r in rows], split, int(options.get("split_seed", 0)))
    out = [vqa_example("vqa_v2", split, r["question_id"], r["question"], r["image_id"], hub_vl.HubImage(data, i, "image"),
                       r["multiple_choice_answer"], [a["answer"] if isinstance(a, dict) else a for a in r["answers"]],
                       r.get("question_type", ""), r.get("answer_type", ""))
           for i, r in enumerate(rows) if keep is None or r["image_id"] in keep]
    return out[: options["limit"]] if options.get("limit") else out


# ---------------------------------------------------------------- GQA
GQA_WHAT = ("the GQA balanced question files ({train,val,testdev}_balanced_questions.json) and the "
            "images folder images/<imageId>.jpg")
_GQA_FILES = {"train": "train_balanced_questions.json", "dev": "val_balanced_questions.json",
              "test": "testdev_balanced_questions.json"}


GQA_HUB = "lmms-lab/GQA"  # questions and images in separate configurations: <split>_balanced_instructions / _images
GQA_HUB_SPLITS = {"train": "train", "dev": "val", "test": "testdev"}


def gqa_example(split: str, qid: Any, q: dict[str, Any], image: Any) -> Example:
    """One GQA question, the same from the official files and from a hub copy."""
    types = q.get("types") or {}
    return Example(
        id=f"gqa-{split}-{qid}",
        input_text=f"gqa: {q['question'].strip()}",
        target_text=q["answer"],
        image=image,
        image_id=f"gqa-{q['imageId']}",
        references=[q["answer"]],
        meta={"full_answer": q.get("fullAnswer") or "", "structural": (types.get("structural") if isinstance(types, dict) else "") or ""},
    )


def load_gqa(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
    """GQA balanced: train = train_balanced, dev = val_balanced, test = testdev_balanced.
    Input ``"gqa: <question>"``, target the answer (scored by exact match). From the official files under
    ``data_dir``, or from a hub copy (``source=hub``; default :data:`GQA_HUB`, whose questions and images are the
    configurations ``<split>_balanced_instructions`` and ``<split>_balanced_images``, joined on ``imageId``)."""
    check_options("gqa", options, {"image_dir", "limit"} | hub_vl.HUB_OPTIONS)
    if hub_vl.wants_hub("gqa", data_dir, options):
        out = _gqa_hub(split, options)
        return out[: options["limit"]] if options.get("limit") else out
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
    out = [gqa_example(split, qid, q, str(image_root / f"{q['imageId']}.jpg")) for qid, q in questions.items()]
    return out[: options["limit"]] if options.get("limit") else out


def _gqa_hub(split: str, options: dict[str, Any]) -> list[Example]:
    hub_id, name = options.get("hub_id") or GQA_HUB, GQA_HUB_SPLITS[split]
    questions = hub_vl.open_split("gqa", options, GQA_HUB, name, config=f"{name}_balanced_instructions")
    hub_vl.need_columns("gqa", questions, ("id", "imageId", "question", "answer"), hub_id)
    images = hub_vl.open_split("gqa", options, GQA_HUB, name, ["image"], config=f"{name}_balanced_images")
    hub_vl.need_columns("gqa", images, ("id", "image"), hub_id)
    row_of = {str(image_id): i for i, image_id in enumerate(images["id"])}
    out = []
    for q in hub_vl.hub_rows(questions):
        if str(q["imageId"]) not in row_of:
            raise ValueError(f"gqa: question {q['id']} of the hub copy {hub_id} names image {q['imageId']!r}, which its "
                             f"{name}_balanced_images configuration lacks")
        out.append(gqa_example(split, q["id"], q, hub_vl.HubImage(images, row_of[str(q["imageId"])], "image")))
    return out


# ---------------------------------------------------------------- COCO captions (Karpathy)
COCO_WHAT = "the Karpathy split file dataset_coco.json and the COCO images (train2014/, val2014/)"
_KARPATHY = {"train": ("train", "restval"), "dev": ("val",), "test": ("test",)}


COCO_HUB = "yerevann/coco-karpathy"  # dataset_coco.json's fields per image; images from image_dir when it has none
COCO_HUB_SPLITS = {"train": ("train", "restval"), "dev": ("validation",), "test": ("test",)}


def coco_examples(split: str, cocoid: Any, captions: list[str], image: Any, per_caption: bool) -> list[Example]:
    """The examples of one image (one per caption, or one with the first caption as target), files or hub alike."""
    targets = list(enumerate(captions)) if per_caption else [(0, captions[0])]
    return [Example(id=f"coco_captions-{split}-{cocoid}{f'-{i}' if per_caption else ''}", input_text="caption:",
                    target_text=caption, image=image, image_id=f"coco-{cocoid}", references=captions)
            for i, caption in targets]


def load_coco_captions(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
    """COCO captions, Karpathy split: train = train + restval (one example per caption unless
    ``per_caption=False``), dev = val, test = test (one example per image, all references). From
    ``dataset_coco.json`` or a hub copy (``source``, ``hub_id``: default ``yerevann/coco-karpathy``)."""
    check_options("coco_captions", options, {"image_dir", "per_caption", "limit"} | hub_vl.HUB_OPTIONS)
    if hub_vl.wants_hub("coco_captions", data_dir, options):
        return _coco_hub(split, data_dir, options)
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
        out += coco_examples(split, img.get("cocoid", img.get("imgid")), captions, str(path), per_caption)
    if out and not Path(out[0].image).parent.is_dir():
        raise ValueError(f"coco_captions: expected the images under {Path(out[0].image).parent}; "
                         "pass image_dir= the folder that holds train2014/ and val2014/")
    return out[: options["limit"]] if options.get("limit") else out


def _captions_of(value: Any) -> list[str]:
    """A hub row's captions: a list of strings, of ``{"raw": ...}`` records, or one record of lists."""
    if isinstance(value, dict):
        value = value.get("raw", [])
    return [(v["raw"] if isinstance(v, dict) else v).strip() for v in ([value] if isinstance(value, str) else value)]


def _coco_hub(split: str, data_dir: str | None, options: dict[str, Any]) -> list[Example]:
    """COCO captions from a hub copy with dataset_coco.json's fields per image (``cocoid sentences`` and, for images,
    an ``image`` column or ``filepath filename`` under ``image_dir``/``data_dir``)."""
    per_caption = bool(options.get("per_caption", split == "train"))
    hub_id = options.get("hub_id") or COCO_HUB
    folder = options.get("image_dir") or data_dir
    out: list[Example] = []
    for hub_split in COCO_HUB_SPLITS[split]:
        data = hub_vl.open_split("coco_captions", options, COCO_HUB, hub_split, ["image"])
        hub_vl.need_columns("coco_captions", data, ("cocoid", "sentences"), hub_id)
        with_images = "image" in data.column_names
        if not with_images and not folder:
            raise ValueError(f"coco_captions: the hub copy {hub_id} has no image column; pass image_dir= the folder "
                             "that holds train2014/ and val2014/ (its filepath/filename columns name the files)")
        for i, row in enumerate(hub_vl.hub_rows(data, skip=["image"])):
            if row.get("split") is not None and row["split"] not in _KARPATHY[split]:
                continue
            image = (hub_vl.HubImage(data, i, "image") if with_images
                     else str(Path(folder).expanduser() / row.get("filepath", "") / row["filename"]))
            out += coco_examples(split, row["cocoid"], _captions_of(row["sentences"]), image, per_caption)
    return out[: options["limit"]] if options.get("limit") else out

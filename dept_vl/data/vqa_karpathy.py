"""VQA v2 on the Karpathy split, as VL-T5 and VL-Adapter train and test it.

The split comes from VL-T5's files ``karpathy_train.json``, ``karpathy_val.json`` and ``karpathy_test.json``: each a
JSON list of records ``{"img_id": "COCO_val2014_000000393225", "sent": <question>, "question_id": <int>,
"label": {<answer>: <score>}, "answer_type", "question_type"}``. train = karpathy_train (train2014 and most of
val2014), dev = karpathy_val, test = karpathy_test (5,000 val2014 images each for val and test); no question of one
split is in another. The split files are read from ``split_dir`` (a folder, or a hub dataset repo that holds them),
else from ``data_dir`` or ``data_dir/vqa``.

The 10 human answers (references, scored as VL-T5's ``evaluate_raw`` does with the official annotations), the most
common answer (the target) and the image come from the official files in ``data_dir``
(``v2_mscoco_{train,val}2014_annotations.json``, COCO ``train2014/``, ``val2014/``), or, with ``source=hub`` (the
default when ``data_dir`` lacks those annotations), from a hub copy of VQA v2 joined by question id.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dept_vl.data import hub_vl
from dept_vl.data.example import Example
from dept_vl.data.vl_tasks import (VQA_HUB, _load_json, _need, _records, check_options, find_file, image_dir_option,
                                   vqa_example)

TASK = "vqa_v2_karpathy"
SPLIT_FILES = {"train": "karpathy_train.json", "dev": "karpathy_val.json", "test": "karpathy_test.json"}
SPLIT_WHAT = "VL-T5's VQA split files karpathy_{train,val,test}.json"
ANNOTATIONS = ("v2_mscoco_train2014_annotations.json", "v2_mscoco_val2014_annotations.json")
HUB_SPLITS = ("train", "validation")  # the copy's train2014 and val2014 questions
_IMG_ID = re.compile(r"^COCO_(train2014|val2014)_(\d+)$")


def _split_folder(data_dir: str | None, options: dict[str, Any]) -> list[Path]:
    where = options.get("split_dir")
    if where and not Path(where).expanduser().is_dir() and "/" in str(where) and not str(where).startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download  # a hub dataset repo that holds the split files

        return [Path(snapshot_download(repo_id=str(where), repo_type="dataset", allow_patterns=["*karpathy_*.json"]))]
    if where:
        return [Path(where).expanduser()]
    if data_dir is None:
        raise ValueError(f"{TASK} needs {SPLIT_WHAT}: pass data_dir= (or split_dir=) a folder that holds them")
    root = Path(data_dir).expanduser()
    return [root, root / "vqa"]


def split_records(task: str, split: str, data_dir: str | None, options: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of one Karpathy split file, checked for the fields the loader reads."""
    path = find_file(task, _split_folder(data_dir, options), SPLIT_FILES[split], SPLIT_WHAT)
    data = _load_json(path)
    records = _records(task, path, {"records": data} if isinstance(data, list) else data, "records")
    for i, record in enumerate(records):
        _need(task, path, record, f"record {i}", ("question_id",))
        _need(task, path, record, f"question {record['question_id']}", ("img_id", "sent"))
        if not _IMG_ID.match(str(record["img_id"])):
            raise ValueError(f"{task}: {path}: question {record['question_id']} has img_id {record['img_id']!r}; expected "
                             "COCO_<train2014|val2014>_<12 digits>, as in VL-T5's split files")
    return records


def _use_hub(data_dir: str | None, options: dict[str, Any]) -> bool:
    if options.get("source"):
        return hub_vl.wants_hub(TASK, data_dir, options)
    return data_dir is None or not all((Path(data_dir).expanduser() / name).is_file() for name in ANNOTATIONS)


def load_vqa_karpathy(split: str, data_dir: str | None, fmt: str, **options: Any) -> list[Example]:
    """VQA v2 on the Karpathy split (see the module's docstring); input ``"vqa: <question>"`` as for ``vqa_v2``."""
    task = TASK
    check_options(task, options, {"image_dir", "split_dir", "limit"} | hub_vl.HUB_OPTIONS)
    records = split_records(task, split, data_dir, options)
    if options.get("limit"):
        records = records[: options["limit"]]
    if _use_hub(data_dir, options):
        answers, images = _from_hub(task, options, {r["question_id"] for r in records})
    else:
        answers, images = _from_files(task, data_dir, options)
    out = []
    for r in records:
        coco, number = _IMG_ID.match(r["img_id"]).groups()  # type: ignore[union-attr]
        if r["question_id"] not in answers:
            raise ValueError(f"{task}: question {r['question_id']} of {SPLIT_FILES[split]} has no answers in "
                             f"{'the hub copy' if isinstance(images, dict) else 'the official annotations'}; are they of VQA v2?")
        ann = answers[r["question_id"]]
        image = images[r["question_id"]] if isinstance(images, dict) else str(images / coco / f"{r['img_id']}.jpg")
        out.append(vqa_example(task, split, r["question_id"], r["sent"], int(number), image, ann["multiple_choice_answer"],
                               [a["answer"] if isinstance(a, dict) else a for a in ann["answers"]],
                               r.get("question_type") or ann.get("question_type", ""),
                               r.get("answer_type") or ann.get("answer_type", "")))
    return out


def _from_files(task: str, data_dir: str | None, options: dict[str, Any]) -> tuple[dict[int, Any], Path]:
    """Answers by question id from both official annotation files, and the folder of train2014/ and val2014/."""
    if data_dir is None:
        raise ValueError(f"{task}: source=files needs data_dir= the folder of {', '.join(ANNOTATIONS)}")
    root = Path(data_dir).expanduser()
    answers: dict[int, Any] = {}
    for name in ANNOTATIONS:
        path = find_file(task, [root], name, "the official VQA v2 annotations")
        for a in _records(task, path, _load_json(path), "annotations"):
            _need(task, path, a, f"question {a.get('question_id')}", ("question_id", "multiple_choice_answer", "answers"))
            answers[a["question_id"]] = a
    image_root = image_dir_option(options, root)
    if not (image_root / "val2014").is_dir():
        raise ValueError(f"{task}: expected the COCO images in {image_root / 'val2014'}; pass image_dir= the folder that "
                         "holds train2014/ and val2014/")
    return answers, image_root


def _from_hub(task: str, options: dict[str, Any], wanted: set[int]) -> tuple[dict[int, Any], dict[int, Any]]:
    """Answers and lazy images of the ``wanted`` questions from a hub copy of VQA v2 (train and validation splits)."""
    answers: dict[int, Any] = {}
    images: dict[int, Any] = {}
    for hub_split in HUB_SPLITS:
        data = hub_vl.open_split(task, options, VQA_HUB, hub_split, ["image"])
        hub_vl.need_columns(task, data, ("question_id", "multiple_choice_answer", "answers", "image"),
                            options.get("hub_id") or VQA_HUB)
        for i, row in enumerate(hub_vl.hub_rows(data, skip=["image"])):
            if row["question_id"] in wanted:
                answers[row["question_id"]], images[row["question_id"]] = row, hub_vl.HubImage(data, i, "image")
    return answers, images

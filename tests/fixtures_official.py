"""Writers of tiny data files in the official release formats (GLUE TSV, SuperGLUE JSONL,
VQA v2 JSON, GQA JSON, Karpathy dataset_coco.json), for the task tests."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def write_tsv(path: Path, header: list[str] | None, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)


def write_vqa_v2(root: Path, coco_split: str, items: list[tuple[int, int, str, list[str]]]) -> None:
    """items: (question_id, image_id, question, ten answers)."""
    questions = {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco",
                 "data_subtype": coco_split, "license": {},
                 "questions": [{"image_id": i, "question": q, "question_id": qid}
                               for qid, i, q, _ in items]}
    annotations = {"info": {}, "license": {}, "data_subtype": coco_split, "annotations": [
        {"question_id": qid, "image_id": i, "question_type": "what color", "answer_type": "other",
         "multiple_choice_answer": max(set(ans), key=ans.count),
         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                     for k, a in enumerate(ans)]}
        for qid, i, _, ans in items]}
    root.mkdir(parents=True, exist_ok=True)
    (root / f"v2_OpenEnded_mscoco_{coco_split}_questions.json").write_text(json.dumps(questions))
    (root / f"v2_mscoco_{coco_split}_annotations.json").write_text(json.dumps(annotations))
    for _, image_id, _, _ in items:
        write_image(root / coco_split / f"COCO_{coco_split}_{image_id:012d}.jpg")

"""VL tasks from hub copies through `datasets` (parquet files written here in the copies' schemas, read through the
same code path as a hub id) give the examples of the official files; VQA v2 on VL-T5's Karpathy split."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from dept_vl.models import load_image
from dept_vl.tasks import get_task
from tests.fixtures_official import write_vqa_v2

datasets = pytest.importorskip("datasets")

ANSWERS = ["red"] * 6 + ["dark red"] * 2 + ["maroon", "red."]
TRAIN = [(1001, 9, "What color is the bus?", ANSWERS), (1002, 11, "Is it raining?", ["no"] * 9 + ["yes"])]
VAL = [(2000 + i, 100 + i, f"How many cats {i}?", [str(i % 3)] * 10) for i in range(6)]


def _colour(image_id: int) -> tuple[int, int, int]:
    return (image_id * 7 % 256, image_id * 13 % 256, image_id * 29 % 256)


def _png(image_id: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), _colour(image_id)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def vqa_files(tmp_path):
    """The official files, each image a colour of its own (a wrong pairing shows)."""
    root = tmp_path / "vqa"
    for coco, items in (("train2014", TRAIN), ("val2014", VAL)):
        write_vqa_v2(root, coco, items)
        for _, image_id, _, _ in items:
            (root / coco / f"COCO_{coco}_{image_id:012d}.jpg").write_bytes(_png(image_id))  # PNG bytes: lossless
    return root


def _vqa_parquet(path, items, coco):
    """The same questions as a hub copy in lmms-lab/VQAv2's schema (images as bytes)."""
    features = datasets.Features({
        "question_type": datasets.Value("string"), "multiple_choice_answer": datasets.Value("string"),
        "answers": [{"answer": datasets.Value("string"), "answer_confidence": datasets.Value("string"),
                     "answer_id": datasets.Value("int64")}],
        "image_id": datasets.Value("int64"), "answer_type": datasets.Value("string"),
        "question_id": datasets.Value("int64"), "question": datasets.Value("string"), "image": datasets.Image()})
    rows = [{"question_type": "what color", "multiple_choice_answer": max(set(a), key=a.count),
             "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": k + 1} for k, x in enumerate(a)],
             "image_id": i, "answer_type": "other", "question_id": q, "question": text,
             "image": {"bytes": _png(i), "path": f"COCO_{coco}_{i:012d}.jpg"}} for q, i, text, a in items]
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    return str(path)


@pytest.fixture
def vqa_hub(tmp_path):
    return {"train": _vqa_parquet(tmp_path / "train.parquet", TRAIN, "train2014"),
            "validation": _vqa_parquet(tmp_path / "validation.parquet", VAL, "val2014")}


def _same(files, hub):
    """Every field equal, and each example's image the same picture."""
    assert [(e.id, e.input_text, e.target_text, e.image_id, e.references, e.meta, e.label) for e in files] == \
           [(e.id, e.input_text, e.target_text, e.image_id, e.references, e.meta, e.label) for e in hub]
    for a, b in zip(files, hub):
        assert list(load_image(a.image).getdata()) == list(load_image(b.image).getdata()), a.id


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_vqa_v2_from_the_hub_equals_the_official_files(vqa_files, vqa_hub, split):
    task = get_task("vqa_v2")
    files = task.load(split, data_dir=str(vqa_files))
    hub = task.load(split, source="hub", hub_files=vqa_hub)
    assert len(files) == {"train": 2, "dev": 3, "test": 3}[split]
    _same(files, hub)
    assert load_image(hub[0].image).getpixel((0, 0)) == _colour(int(hub[0].image_id.split("-")[1]))


def test_a_hub_copy_without_the_schema_names_its_columns(tmp_path):
    path = tmp_path / "other.parquet"
    datasets.Dataset.from_list([{"question": "q", "answer": "a"}]).to_parquet(str(path))
    with pytest.raises(ValueError, match=r"has no column\(s\) \['question_id', 'image_id'"):
        get_task("vqa_v2").load("train", source="hub", hub_files={"train": str(path)})
    with pytest.raises(ValueError, match="source='web' is unknown"):
        get_task("vqa_v2").load("train", source="web")


def test_coco_captions_from_the_hub_equals_dataset_coco_json(tmp_path):
    root = tmp_path / "coco"
    records = [(1, "train", ["A dog runs.", "A dog is running."]), (2, "restval", ["Two cats sleep."]),
               (3, "test", ["A red bus.", "A bus that is red."]), (5, "val", ["A plate of food."])]
    images = [{"filepath": "val2014", "filename": f"COCO_val2014_{c:012d}.jpg", "imgid": c, "split": s, "cocoid": c,
               "sentences": [{"raw": x, "tokens": x.split()} for x in caps]} for c, s, caps in records]
    (root / "val2014").mkdir(parents=True)
    (root / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": images}))
    for c, _, _ in records:
        (root / "val2014" / f"COCO_val2014_{c:012d}.jpg").write_bytes(_png(c))
    hub_split = {"train": "train", "restval": "restval", "test": "test", "val": "validation"}
    files_by_split: dict[str, list] = {}
    for c, s, caps in records:  # one row per image, in dataset_coco.json's fields, with the image
        files_by_split.setdefault(hub_split[s], []).append(
            {"filepath": "val2014", "filename": f"COCO_val2014_{c:012d}.jpg", "imgid": c, "split": s, "cocoid": c,
             "sentences": caps, "image": {"bytes": _png(c), "path": None}})
    hub = {}
    for name, rows in files_by_split.items():
        features = datasets.Features({"filepath": datasets.Value("string"), "filename": datasets.Value("string"),
                                      "imgid": datasets.Value("int64"), "split": datasets.Value("string"),
                                      "cocoid": datasets.Value("int64"), "sentences": [datasets.Value("string")],
                                      "image": datasets.Image()})
        datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / f"{name}.parquet"))
        hub[name] = str(tmp_path / f"{name}.parquet")
    task = get_task("coco_captions")
    for split in ("train", "dev", "test"):
        _same(task.load(split, data_dir=str(root)), task.load(split, source="hub", hub_files=hub))
    assert [e.target_text for e in task.load("train", source="hub", hub_files=hub)] == \
           ["A dog runs.", "A dog is running.", "Two cats sleep."]  # train = train + restval, one example per caption


# ---------------------------------------------------------------- VQA v2 on the Karpathy split
def _karpathy(root, split, items, coco):
    """VL-T5's split file format: img_id, sent, question_id, label {answer: score}, answer_type, question_type."""
    records = [{"answer_type": "other", "img_id": f"COCO_{coco}_{i:012d}", "label": {max(set(a), key=a.count): 1},
                "question_id": q, "question_type": "how many", "sent": text} for q, i, text, a in items]
    (root / f"karpathy_{split}.json").write_text(json.dumps(records))


@pytest.fixture
def karpathy_dir(vqa_files):
    # train: train2014 and part of val2014; val and test: other val2014 images (as VL-T5's files are)
    _karpathy(vqa_files, "train", TRAIN, "train2014")
    records = json.loads((vqa_files / "karpathy_train.json").read_text())
    records += json.loads(json.dumps([{"answer_type": "number", "img_id": "COCO_val2014_000000000100", "label": {"0": 1},
                                       "question_id": 2000, "question_type": "how many", "sent": "How many cats 0?"}]))
    (vqa_files / "karpathy_train.json").write_text(json.dumps(records))
    _karpathy(vqa_files, "val", VAL[1:3], "val2014")
    _karpathy(vqa_files, "test", VAL[3:], "val2014")
    return vqa_files


def test_karpathy_split_follows_the_split_files_and_nothing_leaks(karpathy_dir):
    task = get_task("vqa_v2_karpathy")
    splits = {s: task.load(s, data_dir=str(karpathy_dir)) for s in ("train", "dev", "test")}
    ids = {s: [e.id.rsplit("-", 1)[1] for e in ex] for s, ex in splits.items()}
    assert ids == {"train": ["1001", "1002", "2000"], "dev": ["2001", "2002"], "test": ["2003", "2004", "2005"]}
    assert splits["train"][2].image.endswith("val2014/COCO_val2014_000000000100.jpg")  # a val2014 image in train
    assert splits["train"][0].image.endswith("train2014/COCO_train2014_000000000009.jpg")
    ex = splits["train"][0]
    assert (ex.input_text, ex.target_text, ex.references, ex.image_id) == ("vqa: What color is the bus?", "red", ANSWERS, "coco-9")
    assert task.evaluate(["dark red"], [ex])["accuracy"] == pytest.approx(0.6)  # the 10 official answers score it
    vlt5 = get_task("vqa_v2_karpathy_vlt5")
    assert vlt5.evaluate(["Red."], [ex])["accuracy"] == 1.0


def test_karpathy_answers_and_images_from_the_hub_equal_the_files(karpathy_dir, vqa_hub, tmp_path):
    task = get_task("vqa_v2_karpathy")
    split_only = tmp_path / "splits"
    split_only.mkdir()
    for name in ("train", "val", "test"):  # only the split files: answers and images come from the hub copy
        (split_only / f"karpathy_{name}.json").write_text((karpathy_dir / f"karpathy_{name}.json").read_text())
    for split in ("train", "dev", "test"):
        _same(task.load(split, data_dir=str(karpathy_dir)), task.load(split, data_dir=str(split_only), hub_files=vqa_hub))


def test_karpathy_errors_name_what_is_missing(tmp_path, karpathy_dir):
    task = get_task("vqa_v2_karpathy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="karpathy_val.json"):
        task.load("dev", data_dir=str(tmp_path / "empty"))
    records = json.loads((karpathy_dir / "karpathy_test.json").read_text())
    records[0]["img_id"] = "393225"
    (karpathy_dir / "karpathy_test.json").write_text(json.dumps(records))
    with pytest.raises(ValueError, match="question 2003 has img_id '393225'; expected COCO_<train2014|val2014>_"):
        task.load("test", data_dir=str(karpathy_dir))


GQA_QUESTIONS = {  # question id -> the official file's record; images n1..n3, each its own colour
    "301": {"imageId": "n1", "question": "Is the cup red?", "answer": "yes", "fullAnswer": "Yes, it is.",
            "types": {"structural": "verify", "semantic": "attr", "detailed": "verifyAttr"}},
    "302": {"imageId": "n2", "question": "What is left of the bowl?", "answer": "spoon", "fullAnswer": "A spoon.",
            "types": {"structural": "query", "semantic": "rel", "detailed": "relS"}},
    "303": {"imageId": "n1", "question": "Which color is the cup?", "answer": "red", "fullAnswer": "It is red.",
            "types": {"structural": "query", "semantic": "attr", "detailed": "color"}},
    "304": {"imageId": "n3", "question": "Are there plates?", "answer": "no", "fullAnswer": "No, there are none.",
            "types": {"structural": "verify", "semantic": "obj", "detailed": "exist"}},
}


def test_gqa_from_the_hub_equals_the_official_files(tmp_path):
    """lmms-lab/GQA's layout: questions (``testdev_balanced_instructions``) and images (``testdev_balanced_images``)
    in separate configurations, joined on imageId; the images stored in another order than the questions name them."""
    root = tmp_path / "gqa"
    (root / "images").mkdir(parents=True)
    (root / "testdev_balanced_questions.json").write_text(json.dumps(GQA_QUESTIONS))
    for number in (1, 2, 3):
        (root / "images" / f"n{number}.jpg").write_bytes(_png(number))  # PNG bytes: lossless
    instructions = [{"id": qid, "imageId": q["imageId"], "question": q["question"], "answer": q["answer"],
                     "fullAnswer": q["fullAnswer"], "isBalanced": True, "types": q["types"]} for qid, q in GQA_QUESTIONS.items()]
    datasets.Dataset.from_list(instructions).to_parquet(str(tmp_path / "instructions.parquet"))
    images = [{"id": f"n{number}", "image": {"bytes": _png(number), "path": None}} for number in (3, 1, 2)]
    datasets.Dataset.from_list(images, features=datasets.Features({"id": datasets.Value("string"), "image": datasets.Image()})
                               ).to_parquet(str(tmp_path / "images.parquet"))
    hub = {"testdev_balanced_instructions": str(tmp_path / "instructions.parquet"),
           "testdev_balanced_images": str(tmp_path / "images.parquet")}
    task = get_task("gqa")
    files, from_hub = task.load("test", data_dir=str(root)), task.load("test", source="hub", hub_files=hub)
    _same(files, from_hub)
    assert [e.target_text for e in from_hub] == ["yes", "spoon", "red", "no"]
    assert from_hub[0].image_id == from_hub[2].image_id == "gqa-n1"  # two questions on one image: one image id
    with pytest.raises(ValueError, match="hub_files has no entry for the hub split 'val_balanced_instructions'"):
        task.load("dev", source="hub", hub_files=hub)

"""VQA v2, GQA and COCO captions read from tiny files in their official formats."""

import json

import pytest

from dept_vl.tasks import get_task
from tests.fixtures_official import write_image, write_vqa_v2

ANSWERS = ["red"] * 6 + ["dark red"] * 2 + ["maroon", "red."]


@pytest.fixture
def vqa_dir(tmp_path):
    root = tmp_path / "vqa"
    write_vqa_v2(root, "train2014", [(1001, 9, "What color is the bus?", ANSWERS)])
    write_vqa_v2(root, "val2014", [(2000 + i, 100 + i, f"How many cats {i}?", ["2"] * 10) for i in range(6)])
    return root


def test_vqa_v2_examples(vqa_dir):
    task = get_task("vqa_v2")
    (ex,) = task.load("train", data_dir=str(vqa_dir))
    assert ex.input_text == "vqa: What color is the bus?"
    assert ex.target_text == "red" and ex.references == ANSWERS and ex.label is None
    assert ex.image.endswith("train2014/COCO_train2014_000000000009.jpg") and ex.image_id == "coco-9"
    assert ex.id == "vqa_v2-train-1001" and task.has_images and task.kind == "vqa"
    scores = task.evaluate(["Red", "dark red"][:1], [ex])
    assert scores["headline"] == pytest.approx(1.0)
    # "dark red": 2 matches among 10 answers -> 0.6
    assert task.evaluate(["dark red"], [ex])["accuracy"] == pytest.approx(0.6)


def test_vqa_v2_val_is_split_by_image(vqa_dir):
    task = get_task("vqa_v2")
    dev = task.load("dev", data_dir=str(vqa_dir))
    test = task.load("test", data_dir=str(vqa_dir))
    assert len(dev) == 3 and len(test) == 3
    assert {e.image_id for e in dev}.isdisjoint({e.image_id for e in test})
    assert task.load("dev", data_dir=str(vqa_dir)) == dev  # deterministic


def test_vqa_v2_errors(tmp_path, vqa_dir):
    task = get_task("vqa_v2")
    with pytest.raises(ValueError, match="needs data_dir"):
        task.load("train", source="files")  # without data_dir the default source is the hub (tests/test_tasks_hub.py)
    with pytest.raises(ValueError, match="v2_OpenEnded_mscoco_train2014_questions.json"):
        task.load("train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="COCO images"):
        task.load("train", data_dir=str(vqa_dir), image_dir=str(tmp_path / "nowhere"))


def test_gqa_examples(tmp_path):
    root = tmp_path / "gqa"
    questions = {"201": {"imageId": "n161313", "question": "Is the sky blue?", "answer": "yes",
                         "fullAnswer": "Yes, the sky is blue.", "types": {"structural": "verify"}},
                 "202": {"imageId": "n161314", "question": "What is on the table?", "answer": "cup",
                         "fullAnswer": "The cup is on the table.", "types": {"structural": "query"}}}
    (root / "questions1.2").mkdir(parents=True)
    (root / "questions1.2" / "val_balanced_questions.json").write_text(json.dumps(questions))
    write_image(root / "images" / "n161313.jpg")
    task = get_task("gqa")
    ex = task.load("dev", data_dir=str(root))
    assert [e.input_text for e in ex] == ["gqa: Is the sky blue?", "gqa: What is on the table?"]
    assert [e.target_text for e in ex] == ["yes", "cup"]
    assert ex[0].image.endswith("images/n161313.jpg") and ex[0].image_id == "gqa-n161313"
    assert task.evaluate(["Yes.", "a cup"], ex)["accuracy"] == 1.0
    assert task.evaluate(["no", "cup"], ex)["headline"] == 0.5
    with pytest.raises(ValueError, match="testdev_balanced_questions.json"):
        task.load("test", data_dir=str(root))


def test_coco_karpathy_examples(tmp_path, monkeypatch):
    monkeypatch.setattr("dept_vl.metrics.captions._java_available", lambda: False)  # no METEOR JVM
    root = tmp_path / "coco"
    def image(cocoid, split, caps):
        return {"filepath": "val2014", "filename": f"COCO_val2014_{cocoid:012d}.jpg", "imgid": cocoid,
                "split": split, "cocoid": cocoid, "sentences": [{"raw": c, "tokens": c.split()} for c in caps]}
    data = {"dataset": "coco", "images": [
        image(1, "train", ["A dog runs.", "A dog is running."]),
        image(2, "restval", ["Two cats sleep."]),
        image(3, "test", ["A red bus.", "A bus that is red."]),
        image(4, "test", ["A man surfing.", "Someone on a surfboard."]),
        image(5, "val", ["A plate of food."])]}
    root.mkdir()
    (root / "dataset_coco.json").write_text(json.dumps(data))
    (root / "val2014").mkdir()
    task = get_task("coco_captions")
    train = task.load("train", data_dir=str(root))
    assert [e.target_text for e in train] == ["A dog runs.", "A dog is running.", "Two cats sleep."]
    assert train[0].input_text == "caption:" and train[0].image_id == "coco-1"
    test = task.load("test", data_dir=str(root))
    assert [e.id for e in test] == ["coco_captions-test-3", "coco_captions-test-4"]
    assert test[0].references == ["A red bus.", "A bus that is red."]
    assert test[0].image.endswith("val2014/COCO_val2014_000000000003.jpg")
    scores = task.evaluate(["a red bus", "a man surfing"], test)
    assert scores["headline"] == scores["cider"] > 1.0 and 0 < scores["bleu4"] <= 1.0
    assert "meteor" not in scores
    with pytest.raises(ValueError, match="dataset_coco.json"):
        task.load("test", data_dir=str(tmp_path))


# ---------------------------------------------------------------- damaged files name file, record and field
def _rewrite(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_vqa_v2_missing_fields_name_the_file_the_question_and_the_field(vqa_dir):
    task = get_task("vqa_v2")
    questions = vqa_dir / "v2_OpenEnded_mscoco_train2014_questions.json"
    annotations = vqa_dir / "v2_mscoco_train2014_annotations.json"
    _rewrite(questions, lambda d: d["questions"][0].pop("question"))
    with pytest.raises(ValueError, match=r"questions\.json.*question 1001 has no 'question'") as err:
        task.load("train", data_dir=str(vqa_dir))
    assert str(questions) in str(err.value)
    _rewrite(questions, lambda d: d["questions"][0].update(question="What color is the bus?"))
    _rewrite(annotations, lambda d: d["annotations"][0].pop("answers"))
    with pytest.raises(ValueError, match=r"annotations\.json.*question 1001 has no 'answers'") as err:
        task.load("train", data_dir=str(vqa_dir))
    assert str(annotations) in str(err.value)
    _rewrite(annotations, lambda d: d.pop("annotations"))
    with pytest.raises(ValueError, match="no 'annotations' list"):
        task.load("train", data_dir=str(vqa_dir))


def test_vqa_v2_annotations_without_a_question_are_counted_in_one_warning(vqa_dir):
    annotations = vqa_dir / "v2_mscoco_val2014_annotations.json"

    def orphans(data):
        for qid in (9001, 9002, 9003):
            data["annotations"].append({**data["annotations"][0], "question_id": qid})

    _rewrite(annotations, orphans)
    with pytest.warns(UserWarning) as caught:
        dev = get_task("vqa_v2").load("dev", data_dir=str(vqa_dir))
    assert len(dev) == 3
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "3 annotations" in messages[0] and str(annotations) in messages[0]


@pytest.mark.parametrize("missing", ["question", "answer", "imageId"])
def test_gqa_missing_fields_name_the_file_the_question_and_the_field(tmp_path, missing):
    root = tmp_path / "gqa"
    record = {"imageId": "n1", "question": "Is the sky blue?", "answer": "yes"}
    root.mkdir()
    path = root / "train_balanced_questions.json"
    path.write_text(json.dumps({"201": dict(record), "202": {k: v for k, v in record.items() if k != missing}}))
    write_image(root / "images" / "n1.jpg")
    with pytest.raises(ValueError, match=f"question 202 has no '{missing}'") as err:
        get_task("gqa").load("train", data_dir=str(root))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("missing", ["sentences", "filename"])
def test_coco_karpathy_missing_fields_name_the_file_the_image_and_the_field(tmp_path, missing):
    root = tmp_path / "coco"
    (root / "val2014").mkdir(parents=True)
    good = {"filepath": "val2014", "filename": "a.jpg", "cocoid": 3, "split": "test", "sentences": [{"raw": "A bus."}]}
    bad = {k: v for k, v in {**good, "cocoid": 4, "filename": "b.jpg"}.items() if k != missing}
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": [good, bad]}))
    with pytest.raises(ValueError, match=f"image 4 has no '{missing}'") as err:
        get_task("coco_captions").load("test", data_dir=str(root))
    assert str(path) in str(err.value)


def test_coco_karpathy_image_without_captions_is_a_clear_error(tmp_path):
    root = tmp_path / "coco"
    (root / "val2014").mkdir(parents=True)
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": [{"filepath": "val2014", "filename": "a.jpg", "cocoid": 3,
                                            "split": "test", "sentences": []}]}))
    with pytest.raises(ValueError, match="image 3 has no captions") as err:
        get_task("coco_captions").load("test", data_dir=str(root))
    assert str(path) in str(err.value)

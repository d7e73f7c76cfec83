"""NLVR2 from its official JSON lines and from a hub copy: labels, the two images of each example, formats, scoring."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from dept_vl.models import load_image
from dept_vl.tasks import get_task
from tests.fixtures_official import write_jsonl

ROWS = {
    "train": [{"identifier": "train-10171-0-0", "sentence": "An image shows one leather pencil case.", "label": "False",
               "directory": "71"},
              {"identifier": "train-10171-0-1", "sentence": "There are two cases. ", "label": "True", "directory": "71"}],
    "dev": [{"identifier": "dev-850-0-0", "sentence": "The left image contains twice as many dogs as the right.",
             "label": "True"},
            {"identifier": "dev-850-1-0", "sentence": "One image shows exactly two dogs.", "label": "False"}],
    "test": [{"identifier": "test1-0-1-1", "sentence": "Both images show a bird.", "label": "True"}],
}
FILES = {"train": "train.json", "dev": "dev.json", "test": "test1.json"}
FOLDERS = {"train": "train/71", "dev": "dev", "test": "test1"}


def _colour(name: str) -> tuple[int, int, int]:
    value = sum(map(ord, name))
    return (value % 256, value * 3 % 256, value * 7 % 256)


def _png(name: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (5, 3), _colour(name)).save(buffer, format="PNG")
    return buffer.getvalue()


def _names(identifier: str) -> tuple[str, str]:
    stem = identifier.rsplit("-", 1)[0]
    return f"{stem}-img0.png", f"{stem}-img1.png"


@pytest.fixture
def nlvr_dir(tmp_path):
    root = tmp_path / "nlvr2"
    for split, rows in ROWS.items():
        write_jsonl(root / "data" / FILES[split], rows)  # the release keeps them in data/
        for row in rows:
            for name in _names(row["identifier"]):
                path = root / "images" / FOLDERS[split] / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_png(name))
    return root


def test_examples_labels_and_the_image_pair(nlvr_dir):
    task = get_task("nlvr2")
    dev = task.load("dev", data_dir=str(nlvr_dir))
    assert [e.id for e in dev] == ["nlvr2-dev-dev-850-0-0", "nlvr2-dev-dev-850-1-0"]
    assert [(e.target_text, e.label) for e in dev] == [("true", "true"), ("false", "false")]  # "True" -> true
    assert dev[0].input_text == "nlvr: The left image contains twice as many dogs as the right."
    left, right = dev[0].image
    assert left.endswith("images/dev/dev-850-0-img0.png") and right.endswith("images/dev/dev-850-0-img1.png")
    assert dev[0].image_id == ("nlvr2-dev-850-0-img0", "nlvr2-dev-850-0-img1")
    assert load_image(left).getpixel((0, 0)) == _colour("dev-850-0-img0.png")
    train = task.load("train", data_dir=str(nlvr_dir))
    assert train[1].input_text == "nlvr: There are two cases." and train[1].target_text == "true"
    assert train[0].image[1].endswith("images/train/71/train-10171-0-img1.png")  # train images sit in <directory>/
    (test,) = task.load("test", data_dir=str(nlvr_dir))  # test = test1.json
    assert test.id == "nlvr2-test-test1-0-1-1" and test.image[0].endswith("images/test1/test1-0-1-img0.png")
    assert task.kind == "classification" and task.label_words == ["true", "false"] and task.balance_field == "label"


def test_scoring_is_accuracy_on_true_and_false(nlvr_dir):
    task = get_task("nlvr2")
    dev = task.load("dev", data_dir=str(nlvr_dir))
    assert task.evaluate(["True", "false"], dev)["headline"] == 1.0
    assert task.evaluate(["false", "false"], dev)["accuracy"] == 0.5
    assert task.evaluate(["yes", "no"], dev)["accuracy"] == 0.0


def test_bad_files_name_the_problem(nlvr_dir, tmp_path):
    task = get_task("nlvr2")
    write_jsonl(nlvr_dir / "data" / "dev.json", [{"identifier": "dev-1-0-0", "sentence": "x", "label": "maybe"}])
    with pytest.raises(ValueError, match="example dev-1-0-0 has label 'maybe'; expected True or False"):
        task.load("dev", data_dir=str(nlvr_dir))
    write_jsonl(nlvr_dir / "data" / "dev.json", [{"identifier": "dev-1-0-0", "label": "True"}])
    with pytest.raises(ValueError, match="dev.json line 1 has no 'sentence' field"):
        task.load("dev", data_dir=str(nlvr_dir))
    with pytest.raises(ValueError, match="does not exist; pass image_dir="):
        task.load("train", data_dir=str(nlvr_dir), image_dir=str(tmp_path))
    with pytest.raises(ValueError, match="test1.json"):
        task.load("test", data_dir=str(tmp_path))


@pytest.mark.parametrize("layout", ["left_right", "images", "no_images"])
def test_the_hub_copy_gives_the_examples_of_the_files(nlvr_dir, tmp_path, layout):
    datasets = pytest.importorskip("datasets")
    task = get_task("nlvr2")
    hub = {}
    for split, hub_split in (("train", "train"), ("dev", "validation"), ("test", "test")):
        rows, features = [], {"identifier": datasets.Value("string"), "sentence": datasets.Value("string"),
                              "label": datasets.Value("bool")}
        for row in ROWS[split]:
            left, right = _names(row["identifier"])
            new = {"identifier": row["identifier"], "sentence": row["sentence"], "label": row["label"] == "True"}
            if "directory" in row:
                new["directory"] = row["directory"]
                features["directory"] = datasets.Value("string")
            if layout == "left_right":
                new.update(left_image={"bytes": _png(left), "path": None}, right_image={"bytes": _png(right), "path": None})
                features.update(left_image=datasets.Image(), right_image=datasets.Image())
            elif layout == "images":
                new["images"] = [{"bytes": _png(left), "path": None}, {"bytes": _png(right), "path": None}]
                features["images"] = datasets.Sequence(datasets.Image())
            rows.append(new)
        path = tmp_path / f"{hub_split}.parquet"
        datasets.Dataset.from_list(rows, features=datasets.Features(features)).to_parquet(str(path))
        hub[hub_split] = str(path)
    image_dir = {"image_dir": str(nlvr_dir / "images")} if layout == "no_images" else {}
    for split in ("train", "dev", "test"):
        files = task.load(split, data_dir=str(nlvr_dir))
        from_hub = task.load(split, source="hub", hub_files=hub, **image_dir)
        assert [(e.id, e.input_text, e.target_text, e.label, e.image_id) for e in files] == \
               [(e.id, e.input_text, e.target_text, e.label, e.image_id) for e in from_hub]
        for a, b in zip(files, from_hub):
            for side in (0, 1):  # left with left, right with right
                assert load_image(a.image[side]).getpixel((0, 0)) == load_image(b.image[side]).getpixel((0, 0)), (a.id, side)

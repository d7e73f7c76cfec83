"""The task registry: listing, lookup errors, the table behind `dept-vl tasks`, task validation."""

import pytest

import dept_vl.tasks
from dept_vl.data import registry
from dept_vl.data.task import Task

GLUE = ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"]
SHAPES = ["shapes_accept", "shapes_caption", "shapes_caption_short", "shapes_color", "shapes_count",
          "shapes_exist", "shapes_nli", "shapes_para", "shapes_sim", "shapes_spatial"]


def test_every_task_is_listed():
    names = dept_vl.tasks.list_tasks()
    assert names == sorted(names)
    assert set(GLUE + SHAPES + ["boolq", "cb", "vqa_v2", "gqa", "coco_captions"]) <= set(names)


def test_get_task_and_its_contract():
    task = dept_vl.tasks.get_task("mrpc")
    assert task.name == "mrpc" and task.kind == "classification"
    assert task.label_words == ["not_equivalent", "equivalent"]
    assert task.balance_field == "label" and not task.has_images
    assert dept_vl.tasks.get_task("shapes_count").has_images


def test_unknown_task_suggests_the_closest():
    expected = r"unknown task 'shapes_cout'; did you mean shapes_count.*known tasks:.*vqa_v2"
    with pytest.raises(ValueError, match=expected):
        dept_vl.tasks.get_task("shapes_cout")


def test_task_table_and_its_text():
    rows = dept_vl.tasks.task_table()
    assert {"name", "source", "metric", "kind"} <= set(rows[0])
    by_name = {r["name"]: r for r in rows}
    assert by_name["cola"]["metric"].startswith("matthews_correlation")
    assert by_name["shapes_count"]["role"] == "target" and by_name["shapes_color"]["role"] == "source"
    text = dept_vl.tasks.format_task_table()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["NAME", "KIND", "ROLE"] and len(lines) == len(rows) + 1
    assert any(line.startswith("vqa_v2 ") for line in lines)


def _dummy(name="dummy_task", kind="generation"):
    return Task(name=name, kind=kind, source="test", headline_metric="accuracy",
                loader=lambda split, data_dir, fmt, **o: [], scorer=lambda p, e: {"accuracy": 1.0})


def test_duplicate_names_from_another_module_are_refused():
    registry.load_definitions()
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_task(_dummy(name="cola"))


def test_task_validation_and_errors():
    with pytest.raises(ValueError, match="kind 'image'"):
        _dummy(kind="image")
    task = _dummy()
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        task.load("validation")
    with pytest.raises(ValueError, match="no format 'shifted'"):
        task.load("train", fmt="shifted")
    with pytest.raises(ValueError, match="2 predictions for 0 examples"):
        task.evaluate(["a", "b"], [])


def test_definitions_package_is_importable():
    registry.load_definitions()
    import dept_vl.task_defs.glue  # noqa: F401  (installed name of the tasks/ folder)

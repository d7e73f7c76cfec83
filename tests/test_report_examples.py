"""Predictions joined with their examples, question types and metric breakdowns, on hand-made run folders of the
synthetic world (its examples and images regenerate deterministically)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dept_vl.data.example import Example
from dept_vl.data.registry import get_task
from dept_vl.data.shapes.text import question_type as shapes_question_type
from dept_vl.report import (attach_examples, breakdown, examples_table, list_runs, method_breakdown, pick_run,
                            plot_examples_grid, question_type, run_tasks)

# shapes_count test examples 0-5 (shifted): their questions are about triangles, large, red objects, squares,
# all objects and small objects; their headers are spatial, exist, color, spatial, caption, caption_short
COUNT_TYPES = ["how many: shape", "how many: size", "how many: colour", "how many: shape", "how many: all", "how many: size"]


def write_run(run_dir: Path, task: str, method: str, k: int, seed: int, predictions: list[str], size: int = 6) -> None:
    arm = run_dir / "adapt" / task / method
    (arm / "runs" / f"k{k}_seed{seed}").mkdir(parents=True, exist_ok=True)
    (arm / "config.yaml").write_text(yaml.safe_dump({"data": {"format": "shifted", "data_dir": None, "eval_size": size},
                                                     "eval": {"split": "test"}}))
    examples = get_task(task).load("test", fmt="shifted", size=size)
    lines = [json.dumps({"id": e.id, "input": e.input_text, "prediction": p, "reference": e.target_text, "image_id": e.image_id})
             for e, p in zip(examples, predictions)]
    (arm / "runs" / f"k{k}_seed{seed}" / "predictions.jsonl").write_text("\n".join(lines) + "\n")


def answers(task: str, right: set[int], size: int = 6) -> list[str]:
    return [e.target_text if i in right else "wrong" for i, e in enumerate(get_task(task).load("test", fmt="shifted", size=size))]


@pytest.fixture
def count_run(tmp_path) -> Path:
    write_run(tmp_path, "shapes_count", "dept-transfer", 4, 0, answers("shapes_count", {0, 1, 2, 4}))
    write_run(tmp_path, "shapes_count", "dept-transfer", 4, 1, answers("shapes_count", set(range(6))))
    write_run(tmp_path, "shapes_count", "dept-scratch", 4, 0, answers("shapes_count", set()))
    write_run(tmp_path, "shapes_count", "dept-transfer", 8, 0, answers("shapes_count", set()))
    return tmp_path


def item(question: str, meta: dict | None = None) -> dict:
    example = Example(id="x", input_text=question, target_text="", meta=meta or {})
    return {"question": question, "example": example, "references": ["1"]}


def shapes_item(question: str) -> dict:
    """An item whose example carries its question type as the synthetic world's visual questions do."""
    return item(question, {"question_type": shapes_question_type(question)})


def test_question_type_of_the_synthetic_questions_and_of_vqa_v2():
    assert question_type(shapes_item("question: how many objects are there?")) == "how many: all"
    assert question_type(shapes_item("question: how many red objects are there?")) == "how many: colour"
    assert question_type(shapes_item("question: how many large objects are there?")) == "how many: size"
    assert question_type(shapes_item("question: how many triangles are there?")) == "how many: shape"
    assert question_type(shapes_item("question: what is left of the red circle?")) == "what is left of"
    assert question_type(item("what color is the bus?")) == "what color"
    assert question_type(item("question: how many objects are there?")) == "how many"  # no type: the first two words
    assert question_type(item("anything", {"question_type": "is this"})) == "is this"


def test_runs_are_listed_and_picked(count_run):
    runs = list_runs(count_run)
    assert [(r["method"], r["k"], r["seed"]) for r in runs] == [("dept-scratch", 4, 0), ("dept-transfer", 4, 0),
                                                                ("dept-transfer", 4, 1), ("dept-transfer", 8, 0)]
    assert run_tasks(count_run) == ["shapes_count"] and run_tasks(count_run, ("caption",)) == []
    assert (pick_run(count_run, "shapes_count")["k"], pick_run(count_run, "shapes_count")["seed"]) == (8, 0)  # middle of [4, 8]
    assert pick_run(count_run, "shapes_count", k=4, seed=1)["seed"] == 1
    with pytest.raises(ValueError, match="no run of task 'shapes_count', method 'lora'"):
        pick_run(count_run, "shapes_count", "lora")


def test_attach_examples_joins_images_and_strips_the_header(count_run):
    items = attach_examples(count_run, pick_run(count_run, "shapes_count", k=4, seed=0))
    assert [i["correct"] for i in items] == [True, True, True, False, True, False]
    first = items[0]
    assert first["header"] == "question: what is above the triangle?" and first["question"] == "question: how many triangles are there?"
    assert first["image"] is not None and first["image"].size == (48, 48) and first["references"] == ["0"]
    assert [question_type(i) for i in items] == COUNT_TYPES
    table = examples_table(items, n=2)
    assert [r["correct"] for r in table] == [True, True] and table[0]["input"] == first["question"]


def test_breakdown_by_question_type_answer_and_header(count_run):
    items = attach_examples(count_run, pick_run(count_run, "shapes_count", k=4, seed=0))  # right: 0, 1, 2, 4
    rows = {r["question_type"]: (r["n"], r["score"]) for r in breakdown("shapes_count", items)}
    assert rows == {"how many: all": (1, 1.0), "how many: colour": (1, 1.0), "how many: shape": (2, 0.5),
                    "how many: size": (2, 0.5), "(all)": (6, pytest.approx(4 / 6))}
    headers = {r["header_type"]: r["score"] for r in breakdown("shapes_count", items, "header_type")}
    assert headers == {"caption": 1.0, "caption_short": 0.0, "color": 1.0, "exist": 1.0, "spatial": 0.5, "(all)": pytest.approx(4 / 6)}
    parity = breakdown("shapes_count", items, lambda i: "even" if int(i["id"].rsplit("-", 1)[1]) % 2 == 0 else "odd")
    assert [(r["group"], r["n"], r["score"]) for r in parity] == [("even", 3, 1.0), ("odd", 3, pytest.approx(1 / 3)),
                                                                  ("(all)", 6, pytest.approx(4 / 6))]
    assert all(r["metric"] == "accuracy" for r in parity)


def test_method_breakdown_averages_seeds_per_method(count_run):
    rows = {r["question_type"]: r for r in method_breakdown(count_run, "shapes_count", k=4)}
    # dept-transfer: seed 0 as above, seed 1 all right; dept-scratch all wrong
    assert rows["how many: shape"]["dept-transfer"] == pytest.approx(0.75) and rows["how many: all"]["dept-transfer"] == 1.0
    assert rows["(all)"]["dept-transfer"] == pytest.approx(5 / 6) and rows["(all)"]["dept-scratch"] == 0.0
    assert rows["(all)"]["n"] == 6 and rows["(all)"]["k"] == 4 and "pt-transfer" not in rows["(all)"]


def test_captions_are_scored_per_group_not_per_example(tmp_path):
    write_run(tmp_path, "shapes_caption_short", "dept-transfer", 4, 0,
              answers("shapes_caption_short", {0, 1, 2}))
    run = pick_run(tmp_path, "shapes_caption_short")
    items = attach_examples(tmp_path, run)
    assert all(i["correct"] is None for i in items) and items[0]["question"] == "caption: describe the picture in brief."
    rows = breakdown("shapes_caption_short", items, "header_type")
    task = get_task("shapes_caption_short")
    assert rows[-1]["header_type"] == "(all)" and rows[-1]["metric"] == "cider"
    assert rows[-1]["score"] == pytest.approx(task.evaluate([i["prediction"] for i in items], [i["example"] for i in items])["headline"])
    fig = plot_examples_grid(items, n=4, cols=2, path=tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0 and fig is not None


def test_plot_examples_grid_without_images(tmp_path):
    items = [{"id": "x", "image": None, "question": "q", "prediction": "p", "references": ["r"], "correct": True}]
    plot_examples_grid(items, path=tmp_path / "empty.png")
    assert (tmp_path / "empty.png").is_file()

"""The rehearsal's generated data set loads through the real task loaders (VQA v2, COCO captions, Karpathy split)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("vl_rehearsal_data", ROOT / "benchmarks" / "vl_rehearsal_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the process pool's workers find its functions by module name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    gen = _module()
    out = tmp_path_factory.mktemp("rehearsal-data")
    summary = gen.generate(out, images=12, size=(64, 48), questions=3, workers=2, progress=False)
    return gen, out, summary


def test_files_load_through_the_task_loaders(generated):
    from dept_vl.tasks import get_task

    gen, out, summary = generated
    assert (summary["train2014"], summary["val2014"], summary["written"]) == (9, 3, 12)
    vqa, coco = get_task("vqa_v2"), get_task("coco_captions")
    train = vqa.load("train", data_dir=str(out), fmt="default")
    dev, test = vqa.load("dev", data_dir=str(out), fmt="default"), vqa.load("test", data_dir=str(out), fmt="default")
    assert len(train) == 9 * 3 and len(dev) + len(test) == 3 * 3 and dev and test
    assert not {e.image_id for e in dev} & {e.image_id for e in test}
    caps = {s: coco.load(s, data_dir=str(out), fmt="default") for s in ("train", "dev", "test")}
    assert [len(caps[s]) for s in ("train", "dev", "test")] == [10 * 5, 1, 1]  # train + restval per caption; val, test per image


def test_images_are_jpegs_of_the_asked_size(generated):
    from dept_vl.tasks import get_task

    _, out, _ = generated
    examples = get_task("vqa_v2").load("train", data_dir=str(out), fmt="default")
    examples += get_task("coco_captions").load("test", data_dir=str(out), fmt="default")
    for path in {e.image for e in examples}:
        with Image.open(path) as image:
            assert (image.format, image.size) == ("JPEG", (64, 48))


def test_answers_and_captions_round_trip(generated):
    from dept_vl.tasks import get_task

    gen, out, _ = generated
    for example in get_task("vqa_v2").load("train", data_dir=str(out), fmt="default"):
        image_id, number = divmod(int(example.id.rsplit("-", 1)[1]), 1000)
        question, _, answer_type, answers = gen.questions_of(image_id, 0, 3)[number]
        assert example.input_text == f"vqa: {question}" and example.references == answers
        assert example.target_text == Counter(answers).most_common(1)[0][0] and example.meta["answer_type"] == answer_type
        assert example.image_id == f"coco-{image_id}"
    for example in get_task("coco_captions").load("dev", data_dir=str(out), fmt="default"):
        image_id = int(example.image_id.removeprefix("coco-"))
        assert example.references == gen.captions_of(image_id, 0) and example.input_text == "caption:"


def test_a_rerun_keeps_the_images(generated):
    gen, out, _ = generated
    before = {p: p.stat().st_mtime_ns for p in out.glob("*2014/*.jpg")}
    summary = gen.generate(out, images=12, size=(64, 48), questions=3, workers=1, progress=False)
    assert (summary["written"], summary["kept"]) == (0, 12)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*2014/*.jpg")} == before
    assert json.loads((out / "rehearsal_data.json").read_text())["kept"] == 12


def test_the_rehearsal_runs_need_no_caption_metrics():
    """pretrain with data.dev_tasks=[vqa_v2] trains on captions without scoring them; evaluate(score=False) likewise."""
    from dept_vl.config import load_config
    from dept_vl.tasks import get_task
    from dept_vl.train.run import dev_task_names, required_packages

    tasks = {name: get_task(name) for name in ("vqa_v2", "coco_captions")}
    config = load_config(None, ["data.tasks=[vqa_v2,coco_captions]", "data.dev_tasks=[vqa_v2]", "data.data_dir=."])
    assert dev_task_names(config) == ["vqa_v2"]
    assert "pycocoevalcap" not in required_packages(tasks, config, dev_task_names(config))
    assert "pycocoevalcap" not in required_packages(tasks, config, [])
    assert "pycocoevalcap" in required_packages(tasks, config)  # scoring every task needs it
    with pytest.raises(ValueError, match="not in data.tasks"):
        dev_task_names(load_config(None, ["data.tasks=[vqa_v2]", "data.dev_tasks=[gqa]"]))

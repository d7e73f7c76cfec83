"""data.task_options: each task's loader options from a recipe or the command line (the hub or the official
files, image folders), refused when the task does not exist or does not know the option."""

from __future__ import annotations

import pytest

from dept_vl.config import load_config


def test_task_options_reach_the_tasks_loader_and_only_that_task(monkeypatch):
    import dept_vl.tasks  # noqa: F401 - registers the tasks
    from dept_vl.tasks import get_task
    from dept_vl.train.run import Run

    seen = {}
    task = get_task("shapes_color")
    original = task.loader

    def spy(split, data_dir, fmt, **options):
        seen.setdefault(split, []).append(options)
        return original(split, data_dir, fmt, **{k: v for k, v in options.items() if k == "size"})

    monkeypatch.setattr(task, "loader", spy)
    config = load_config(None, ["data.tasks=[shapes_color,shapes_count]", "data.task_options.shapes_color.colour_check=3",
                                "data.feature_cache=false"])
    assert config.data.task_options == {"shapes_color": {"colour_check": 3}}
    run = Run.setup(config, config.data.tasks)
    run.load("shapes_color", "dev", 4)
    run.load("shapes_count", "dev", 4)  # would fail on an option it does not know
    assert seen["dev"] == [{"size": 4, "colour_check": 3}]


def test_task_options_from_a_recipe_and_the_command_line_merge():
    config = load_config(None, ["data.task_options={nlvr2: {source: hub, image_dir: /data/nlvr2}}",
                                "data.task_options.nlvr2.source=files"])
    assert config.data.task_options == {"nlvr2": {"source": "files", "image_dir": "/data/nlvr2"}}


@pytest.mark.parametrize("override, message", [
    ("data.task_options.nlvr3.source=hub", "nlvr3"),
    ("data.task_options.shapes_color=3", "data.task_options.shapes_color=3: must be a mapping"),
])
def test_bad_task_options_are_refused_before_anything_loads(override, message):
    from dept_vl.train.run import Run

    config = load_config(None, ["data.tasks=[shapes_color]", override])
    with pytest.raises(ValueError, match=message):
        Run.setup(config, config.data.tasks)


def test_an_option_the_task_does_not_know_names_the_task_and_the_option(tmp_path):
    from dept_vl.train.run import Run

    config = load_config(None, ["data.tasks=[vqa_v2]", f"data.data_dir={tmp_path}", "data.task_options.vqa_v2.colour=3",
                                "model.preset=tiny", "data.feature_cache=false"])
    run = Run.setup(config, config.data.tasks)
    with pytest.raises(ValueError, match=r"vqa_v2.*unknown options \['colour'\]"):
        run.load("vqa_v2", "dev")


def test_a_hub_source_in_task_options_requires_datasets_before_training(monkeypatch):
    import importlib.util

    from dept_vl.train.run import Run

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    config = load_config(None, ["data.tasks=[nlvr2]", "data.data_dir=/somewhere", "data.task_options.nlvr2.source=hub"])
    with pytest.raises(ValueError, match="the package datasets .*loading nlvr2"):
        Run.setup(config, config.data.tasks)
